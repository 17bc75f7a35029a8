"""Colours that follow the system's light or dark palette, for pyqtgraph and custom painting."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

GOOD = QColor(46, 160, 67)
BAD = QColor(218, 54, 51)
SERIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def is_dark() -> bool:
    palette = QApplication.palette()
    return palette.color(QPalette.Window).lightness() < 128


def configure_pyqtgraph() -> None:
    """Plot background and axes from the current palette (set before plots are created)."""
    palette = QApplication.palette()
    pg.setConfigOptions(antialias=True, background=palette.color(QPalette.Base),
                        foreground=palette.color(QPalette.Text))


def muted_text_colour() -> QColor:
    return QApplication.palette().color(QPalette.PlaceholderText)
