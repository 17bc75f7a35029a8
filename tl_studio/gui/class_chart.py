"""Images per class and split as a stacked bar chart (pyqtgraph)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from tl_studio.gui.theme import SERIES, configure_pyqtgraph

SPLIT_COLOURS = {"train": SERIES[0], "val": SERIES[1], "test": SERIES[2]}


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

    def show_counts(self, classes: list[str], counts: dict[str, dict[str, int]]) -> None:
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
        step = max(1, len(classes) // 20)  # keep labels legible with many classes
        ticks = [(i, _short(name)) for i, name in enumerate(classes) if i % step == 0]
        item.getAxis("bottom").setTicks([ticks])
        item.setXRange(-0.6, len(classes) - 0.4, padding=0)
        item.setYRange(0, max(1.0, float(bottom.max()) * 1.3) if len(classes) else 1.0, padding=0)


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
