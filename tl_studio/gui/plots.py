"""Live training curves (pyqtgraph). Curve items are created once and fed growing numpy buffers with
``setData``; downsampling and clip-to-view keep long runs cheap (pyqtgraph's scrollingPlots example)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from tl_studio.gui.theme import SERIES, configure_pyqtgraph


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


def _plot(object_name: str, title: str, y_label: str) -> pg.PlotWidget:
    configure_pyqtgraph()
    widget = pg.PlotWidget()
    widget.setObjectName(object_name)
    item = widget.getPlotItem()
    item.setTitle(title)
    item.setLabel("bottom", "epoch")
    item.getAxis("bottom").enableAutoSIPrefix(False)  # epoch 0.5, not 500 (x0.001), early in a run
    item.setLabel("left", y_label)
    item.getAxis("left").enableAutoSIPrefix(False)  # a loss reads 0.45, not 450 (x0.001)
    item.showGrid(x=True, y=True, alpha=0.25)
    item.addLegend(offset=(-10, 10))
    item.setDownsampling(mode="peak")
    item.setClipToView(True)
    widget.setMinimumHeight(180)
    return widget


class TrainingCurves:
    """The three plots of the Train step and the series behind them."""

    SMOOTHING = 0.9  # exponential moving average of the batch loss, as fastai and TensorBoard show it

    def __init__(self):
        self.loss_plot = _plot("lossPlot", "Loss", "loss")
        self.accuracy_plot = _plot("accuracyPlot", "Accuracy", "accuracy")
        self.lr_plot = _plot("lrPlot", "Learning rate", "learning rate")
        self.accuracy_plot.getPlotItem().setYRange(0, 1)
        self.series = {name: GrowingSeries() for name in ("batch", "smooth", "val_loss", "train_acc", "val_acc", "lr")}
        pen = lambda colour, width=2: pg.mkPen(colour, width=width)
        self.curves = {
            "batch": self.loss_plot.plot(name="train loss (batch)", pen=pg.mkPen(SERIES[0] + "55", width=1)),
            "smooth": self.loss_plot.plot(name="train loss (smoothed)", pen=pen(SERIES[0])),
            "val_loss": self.loss_plot.plot(name="val loss", pen=pen(SERIES[1]), symbol="o", symbolSize=7,
                                            symbolBrush=SERIES[1]),
            "train_acc": self.accuracy_plot.plot(name="train", pen=pen(SERIES[0]), symbol="o", symbolSize=6,
                                                 symbolBrush=SERIES[0]),
            "val_acc": self.accuracy_plot.plot(name="val", pen=pen(SERIES[1]), symbol="o", symbolSize=7,
                                               symbolBrush=SERIES[1]),
            "lr": self.lr_plot.plot(name="learning rate", pen=pen(SERIES[2])),
        }
        self._ema = None

    def clear(self) -> None:
        for series in self.series.values():
            series.clear()
        self._ema = None
        self._redraw(self.series)

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
            self.curves[name].setData(self.series[name].x, self.series[name].y)

    def point_counts(self) -> dict[str, int]:
        return {name: series.size for name, series in self.series.items()}
