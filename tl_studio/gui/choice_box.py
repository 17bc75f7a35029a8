"""A drop-down whose choice starts work (evaluating a split, opening a folder): chosen by a click or
the keyboard only. A plain QComboBox also changes its choice under a turning mouse wheel and reports it
as the user's pick (``activated``), so scrolling the page past it started an evaluation per notch and
opened a folder dialog; here the wheel scrolls the page instead."""

from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QComboBox

SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


class ChoiceBox(QComboBox):
    def wheelEvent(self, event) -> None:
        event.ignore()  # passed on to the parent, which scrolls


def offer_splits(box: QComboBox, has_images: Callable[[str], bool], fallback: str) -> None:
    """The items of ``box`` whose data is a split the data set has no image in are greyed out, saying so;
    such a split chosen before (for another folder) gives way to the item whose data is ``fallback``.
    The Evaluate step's Images box and the Data step's split filter."""
    for index in range(box.count()):
        split = box.itemData(index)
        if split not in SPLIT_WORDS:
            continue
        empty = not has_images(split)
        item = box.model().item(index)
        item.setEnabled(not empty)
        item.setToolTip(f"This data set has no {SPLIT_WORDS[split]} images." if empty else "")
        if empty and index == box.currentIndex():
            box.setCurrentIndex(box.findData(fallback))
