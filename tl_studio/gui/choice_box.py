"""A drop-down whose choice starts work (evaluating a split, opening a folder): chosen by a click or
the keyboard only. A plain QComboBox also changes its choice under a turning mouse wheel and reports it
as the user's pick (``activated``), so scrolling the page past it started an evaluation per notch and
opened a folder dialog; here the wheel scrolls the page instead."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox


class ChoiceBox(QComboBox):
    def wheelEvent(self, event) -> None:
        event.ignore()  # passed on to the parent, which scrolls
