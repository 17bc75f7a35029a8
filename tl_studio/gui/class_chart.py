"""Images per class and split as a stacked bar chart (pyqtgraph)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFontMetrics

from tl_studio.gui.theme import SERIES, configure_pyqtgraph

SPLIT_COLOURS = {"train": SERIES[0], "val": SERIES[1], "test": SERIES[2]}
LABEL_GAP_PX = 8  # between two class names under the bars


class ClassChart(pg.PlotWidget):
    def __init__(self, parent=None):
        configure_pyqtgraph()
        super().__init__(parent)
        self.setObjectName("classChart")
        self.setMinimumHeight(200)
        item = self.getPlotItem()
        item.setLabel("left", "images")
        item.showGrid(y=True, alpha=0.25)
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        self.legend = item.addLegend(offset=(-10, 5), colCount=3)  # one row: little height over the bars
        self.bars: list[pg.BarGraphItem] = []
        self.classes: list[str] = []

    def show_counts(self, classes: list[str], counts: dict[str, dict[str, int]]) -> None:
        self.classes = list(classes)
        item = self.getPlotItem()
        for bar in self.bars:
            item.removeItem(bar)
        self.legend.clear()
        self.bars = []
        x = np.arange(len(classes))
        bottom = np.zeros(len(classes))
        for split in ("train", "val", "test"):
            heights = np.array([counts.get(split, {}).get(name, 0) for name in classes], dtype=float)
            if not heights.any():
                continue
            bar = pg.BarGraphItem(x=x, height=heights, y0=bottom, width=0.7, brush=SPLIT_COLOURS[split],
                                  pen=pg.mkPen(None), name=split)
            item.addItem(bar)  # the legend picks the bar up by its name
            self.bars.append(bar)
            bottom = bottom + heights
        self._label_classes()
        item.setXRange(-0.6, len(classes) - 0.4, padding=0)
        item.setYRange(0, max(1.0, float(bottom.max()) * 1.3) if len(classes) else 1.0, padding=0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._label_classes()

    def _label_classes(self) -> None:
        """Every class named under its bar when the names fit side by side, else every second, third…
        one: with many classes the names would print over each other."""
        names = [_short(name) for name in getattr(self, "classes", ())]  # resized before __init__ ends
        if not names:
            return
        axis = self.getPlotItem().getAxis("bottom")
        metrics = QFontMetrics(axis.style.get("tickFont") or self.font())
        widest = max(metrics.horizontalAdvance(name) for name in names) + LABEL_GAP_PX
        # the axis may still have its size from before this resize: never more than the widget's
        room = max(1.0, min(axis.width() or self.width(), self.width()))
        step = max(1, math.ceil(widest * len(names) / room))
        axis.setTicks([[(i, name) for i, name in enumerate(names) if i % step == 0]])


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
