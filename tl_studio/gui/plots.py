"""Live training curves (pyqtgraph). Curve items are created once and fed growing numpy buffers with
``setData``; downsampling and clip-to-view keep long runs cheap (pyqtgraph's scrollingPlots example)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSizePolicy

from tl_studio.gui.theme import SERIES, configure_pyqtgraph

LEGEND_ROW = 4  # PlotItem's grid: title 0, top axis 1, view box 2, bottom axis 3; the legend under them
LEGEND_SPACING = 16  # px between one entry's name and the next entry's line


class GrowingSeries:
    """x/y values in numpy arrays that double when full, so appending is amortised O(1)."""

    def __init__(self, capacity: int = 1024):
        self._x = np.empty(capacity)
        self._y = np.empty(capacity)
        self.size = 0

    def extend(self, xs, ys) -> None:
        count = len(xs)
        while self.size + count > len(self._x):
            self._x = np.resize(self._x, len(self._x) * 2)
            self._y = np.resize(self._y, len(self._y) * 2)
        self._x[self.size:self.size + count] = xs
        self._y[self.size:self.size + count] = ys
        self.size += count

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.size]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.size]

    def clear(self) -> None:
        self.size = 0


def legend_below(item: pg.PlotItem) -> pg.LegendItem:
    """The plot's legend in a row of its own under the x axis, entries side by side, as many to a row as
    the plot's width holds. Inside the view box (PlotItem.addLegend) it covered the curves: a loss falls
    into any corner, and at 1000 x 620 the three loss entries hid a third of the plot. Curves added later
    with a name join it (PlotItem adds them to ``item.legend``)."""
    legend = pg.LegendItem()  # no offset: the plot's layout places it, not an anchor on the view box
    legend.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)  # its entries side by side, not spread out
    item.layout.addItem(legend, LEGEND_ROW, 1, alignment=Qt.AlignHCenter)
    item.legend = legend
    return legend


def fit_legend_columns(legend: pg.LegendItem, width: float) -> None:
    """As many entries to a row as ``width`` holds, so that the legend takes few rows."""
    entries = [sample.boundingRect().width() + label.boundingRect().width() + LEGEND_SPACING
               for sample, label in legend.items]
    if not entries or width <= 0:
        return

    def row_width(columns: int) -> float:  # each column as wide as its widest entry
        return sum(max(entries[column::columns]) for column in range(columns))

    legend.setColumnCount(next((columns for columns in range(len(entries), 1, -1) if row_width(columns) <= width), 1))
    for label_column in range(1, 2 * legend.columnCount, 2):  # each entry is a sample column and a label column
        legend.layout.setColumnSpacing(label_column, LEGEND_SPACING)
    legend.updateGeometry()  # its size changed: the plot's layout places it again


class LegendBelowPlot(pg.PlotWidget):
    """A plot whose legend is under its x axis (legend_below), refitted to the widget's width. Fitted
    to the plot item's width instead, a legend one row wide held the item wider than a narrowed widget,
    which then showed only the curves' left part."""

    def __init__(self, parent=None):
        super().__init__(parent)
        legend_below(self.getPlotItem())

    def fit_legend(self, width: int | None = None) -> None:
        item = self.getPlotItem()
        width = self.viewport().width() if width is None else width
        fit_legend_columns(item.legend, width - item.getAxis("left").width())

    def resizeEvent(self, event) -> None:
        if getattr(self.getPlotItem(), "legend", None) is not None:  # PlotWidget resizes while it is made
            self.fit_legend(event.size().width())  # before the plot's layout follows the new width
        super().resizeEvent(event)


def _plot(object_name: str, y_label: str) -> pg.PlotWidget:
    configure_pyqtgraph()
    widget = LegendBelowPlot()
    widget.setObjectName(object_name)
    item = widget.getPlotItem()
    # No title: the Train step's tab names each plot, and the legend's row under the axis needs the
    # height more (at 1000 x 620 the curves share it with the sample predictions).
    item.setLabel("bottom", "epoch")
    item.getAxis("bottom").enableAutoSIPrefix(False)  # epoch 0.5, not 500 (x0.001), early in a run
    item.setLabel("left", y_label)
    item.getAxis("left").enableAutoSIPrefix(False)  # a loss reads 0.45, not 450 (x0.001)
    item.showGrid(x=True, y=True, alpha=0.25)
    item.setDownsampling(mode="peak")
    item.setClipToView(True)
    widget.setMinimumHeight(180)
    return widget


LINES_ONLY = ("batch", "smooth", "lr")  # the curves drawn without a mark at each point


class TrainingCurves:
    """The three plots of the Train step and the series behind them."""

    SMOOTHING = 0.9  # exponential moving average of the batch loss, as fastai and TensorBoard show it

    def __init__(self):
        self.loss_plot = _plot("lossPlot", "loss")
        self.accuracy_plot = _plot("accuracyPlot", "accuracy")
        self.lr_plot = _plot("lrPlot", "learning rate")
        self.accuracy_plot.getPlotItem().setYRange(0, 1)
        self.series = {name: GrowingSeries() for name in ("batch", "smooth", "val_loss", "train_acc", "val_acc", "lr")}
        pen = lambda colour, width=2: pg.mkPen(colour, width=width)
        self.curves = {
            "batch": self.loss_plot.plot(name="train (batch)", pen=pg.mkPen(SERIES[0] + "55", width=1)),
            "smooth": self.loss_plot.plot(name="train (smoothed)", pen=pen(SERIES[0])),
            "val_loss": self.loss_plot.plot(name="val", pen=pen(SERIES[1]), symbol="o", symbolSize=7,
                                            symbolBrush=SERIES[1]),
            "train_acc": self.accuracy_plot.plot(name="train", pen=pen(SERIES[0]), symbol="o", symbolSize=6,
                                                 symbolBrush=SERIES[0]),
            "val_acc": self.accuracy_plot.plot(name="val", pen=pen(SERIES[1]), symbol="o", symbolSize=7,
                                               symbolBrush=SERIES[1]),
            "lr": self.lr_plot.plot(name="learning rate", pen=pen(SERIES[2])),
        }
        for plot in (self.loss_plot, self.accuracy_plot, self.lr_plot):
            plot.fit_legend()  # the entries are in: fit them to the width now
        self._ema = None
        self._framed: set[str] = set()  # batch curves whose lone first point this class framed by hand

    def clear(self) -> None:
        for series in self.series.values():
            series.clear()
        self._ema = None
        self._framed.clear()
        self._redraw(self.series)
        # empty plots keep the view they had: a run that failed in its set-up showed the last run's epochs
        for plot in (self.loss_plot, self.accuracy_plot, self.lr_plot):
            item = plot.getPlotItem()
            item.setXRange(0, 1, padding=0)
            item.enableAutoRange(axis="x")  # the next run's points set it again
            if plot is not self.accuracy_plot:  # accuracy stays 0-1
                item.setYRange(0, 1, padding=0)
                item.enableAutoRange(axis="y")

    def add_batches(self, batches) -> None:
        xs = np.array([b.epoch - 1 + b.batch / b.num_batches for b in batches])
        losses = np.array([b.loss for b in batches])
        smoothed = np.empty_like(losses)
        for i, loss in enumerate(losses):
            self._ema = loss if self._ema is None else self.SMOOTHING * self._ema + (1 - self.SMOOTHING) * loss
            smoothed[i] = self._ema
        self.series["batch"].extend(xs, losses)
        self.series["smooth"].extend(xs, smoothed)
        self.series["lr"].extend(xs, np.array([b.lr for b in batches]))
        self._redraw(("batch", "smooth", "lr"))

    def add_epoch(self, epoch) -> None:
        x = [float(epoch.epoch)]
        self.series["val_loss"].extend(x, [epoch.val_loss])
        self.series["train_acc"].extend(x, [epoch.train_acc])
        self.series["val_acc"].extend(x, [epoch.val_acc])
        self._redraw(("val_loss", "train_acc", "val_acc"))

    def _redraw(self, names) -> None:
        for name in names:
            series, curve = self.series[name], self.curves[name]
            if name in LINES_ONLY:  # one point makes no line: after the first batch the plot showed nothing
                colour = pg.mkPen(curve.opts["pen"]).color()
                curve.setSymbolPen(colour)
                curve.setSymbolBrush(colour)
                curve.setSymbol("o" if series.size == 1 else None)
            curve.setData(series.x, series.y)
        self._frame_a_lone_point(names)

    def _frame_a_lone_point(self, names) -> None:
        """After a run's first batch pyqtgraph centres a box one unit wide on the lone point: epochs -0.4 to
        0.6 and a learning rate of -0.4 to 0.4, with nothing drawn. Until a second point comes, the plot
        shows the first epoch and zero to twice the value instead; then it fits its curves again."""
        for plot, name in ((self.loss_plot, "smooth"), (self.lr_plot, "lr")):
            if name not in names:
                continue
            item, series = plot.getPlotItem(), self.series[name]
            if series.size == 1:
                item.setRange(xRange=(0, 1), yRange=(0, 2 * max(float(series.y[0]), 1e-12)), padding=0)
                self._framed.add(name)
            elif name in self._framed:  # framed by this method, not zoomed by the user: fit the curves
                self._framed.discard(name)
                item.enableAutoRange()

    def point_counts(self) -> dict[str, int]:
        return {name: series.size for name, series in self.series.items()}
