"""A word-wrapped label that takes the height of its text up to a few lines, then scrolls: a summary
over a page's main view (the Evaluate step's, with its warnings and problem files) pushed the confusion
matrix into a strip of one and a half rows in a 1024 x 700 window."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea


class CappedText(QScrollArea):
    """Holds ``label``; as tall as its wrapped text, at most ``max_lines`` lines (the rest scrolls)."""

    def __init__(self, label: QLabel, max_lines: int = 7, parent=None):
        super().__init__(parent)
        self.label, self.max_lines = label, max_lines
        label.setWordWrap(True)
        self.setWidget(label)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # it wraps instead
        label.installEventFilter(self)  # a new text changes the height it needs
        self._fit()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.label and event.type() in (QEvent.Resize, QEvent.LayoutRequest, QEvent.FontChange):
            self._fit()
        return False

    def viewportEvent(self, event) -> bool:
        # a new text asks the label's parent, the viewport, for a layout: the label itself hears nothing
        if event.type() in (QEvent.Resize, QEvent.LayoutRequest):
            self._fit()
        return super().viewportEvent(event)

    def _fit(self) -> None:
        if not self.label.text():
            self.setFixedHeight(0)
            return
        cap = self.max_lines * self.label.fontMetrics().lineSpacing()
        width = max(1, self.viewport().width())
        needed = self.label.heightForWidth(width)
        if needed < 0:
            needed = self.label.sizeHint().height()
        self.setFixedHeight(min(needed, cap) + 2 * self.frameWidth())
