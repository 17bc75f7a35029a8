"""A diagram of a model's stages from input to output: frozen stages greyed, trainable ones in
colour, the new head highlighted. Box widths follow each stage's share of the parameters."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from tl_studio.gui.theme import SERIES, is_dark


class StageDiagram(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("stageDiagram")
        self.stages: list[tuple[str, int]] = []  # (name, parameters)
        self.head_params = 0
        self.frozen = 0
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(500, 78)

    def set_stages(self, stages: list[tuple[str, int]], head_params: int) -> None:
        self.stages, self.head_params = list(stages), head_params
        self.update()

    def set_frozen(self, count: int) -> None:
        self.frozen = count
        self.update()

    def _weights(self) -> list[float]:
        # sqrt keeps small stages visible next to huge ones
        sizes = [p for _, p in self.stages] + [self.head_params]
        return [math.sqrt(max(p, 1)) + 0.15 * math.sqrt(max(sizes) or 1) for p in sizes]

    def _boxes(self) -> list[tuple[QRectF, str, int, bool]]:
        """(rectangle, name, parameters, is the head) of every box, input first."""
        weights = self._weights()
        gap, height = 4.0, self.height() - 28.0
        usable = self.width() - gap * (len(weights) - 1) - 2
        boxes, x = [], 1.0
        for index, weight in enumerate(weights):
            width = usable * weight / sum(weights)
            is_head = index == len(self.stages)
            name, params = ("head", self.head_params) if is_head else self.stages[index]
            boxes.append((QRectF(x, 4, width, height), name, params, is_head))
            x += width + gap
        return boxes

    def event(self, event) -> bool:
        """A box's whole name and what it does on hover: a narrow box shows "s" or "s1" of "stem", "stage1"."""
        if event.type() == QEvent.ToolTip and self.stages:
            point = QPointF(event.pos())
            for index, (rect, name, params, is_head) in enumerate(self._boxes()):
                if rect.contains(point):
                    state = ("the new head, trained" if is_head else
                             "frozen" if index < self.frozen else "trained")
                    QToolTip.showText(event.globalPos(), f"{name}: {params:,} parameters, {state}", self)
                    return True
            QToolTip.hideText()
            event.ignore()
            return True
        return super().event(event)

    def paintEvent(self, event) -> None:
        if not self.stages:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        for index, (rect, name, _params, is_head) in enumerate(self._boxes()):
            self._box(painter, rect, name, is_head, index < self.frozen)
        height = self.height() - 28.0
        painter.setPen(self.palette().text().color())
        painter.drawText(QRectF(0, height + 8, self.width(), 16), Qt.AlignLeft, "input →")
        painter.drawText(QRectF(0, height + 8, self.width(), 16), Qt.AlignRight, "→ classes")
        painter.end()

    def _box(self, painter: QPainter, rect: QRectF, name: str, is_head: bool, frozen: bool) -> None:
        if frozen:
            fill = QColor(90, 90, 90) if is_dark() else QColor(205, 205, 205)
            text = QColor(150, 150, 150) if is_dark() else QColor(110, 110, 110)
        else:
            fill = QColor(SERIES[1] if is_head else SERIES[0])
            text = QColor("white")
        painter.setPen(QPen(fill.darker(130), 1))
        painter.setBrush(fill)
        painter.drawRoundedRect(rect, 4, 4)
        painter.setPen(text)
        label = next((text for text in _labels(name) if painter.fontMetrics().horizontalAdvance(text) < rect.width() - 4),
                     "")
        painter.drawText(rect, Qt.AlignCenter, label)


def _labels(name: str) -> list[str]:
    """The stage name, then shorter forms for narrow boxes: "stage1" -> "s1" -> "1"."""
    digits = name[len(name.rstrip("0123456789")):]
    return [name, name[:1] + digits, digits or name[:1]]
