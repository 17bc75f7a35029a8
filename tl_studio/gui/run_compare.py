"""Comparing the selected runs: their curves overlaid (one colour per run, a legend by run name), the
settings that differ, and the two runs' models on the same validation images."""

from __future__ import annotations

from html import escape

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from tl_studio.core.run_folder import RunFolder
from tl_studio.core.run_history import RunSummary, config_diff, read_metrics, resolved_lr
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.plots import fit_legend_columns
from tl_studio.gui.runs_table import SCHEDULE_WORDS, freeze_words
from tl_studio.gui.theme import configure_pyqtgraph

# Enough distinct colours for a comparison someone can still read (tab10).
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
MAX_RUNS = len(RUN_COLOURS)


class _WholeEpochAxis(pg.AxisItem):
    """Ticks at whole epochs only: every point of a run is at a whole epoch, and "1.5" is none."""

    def tickValues(self, minVal, maxVal, size):
        levels = []
        for spacing, values in super().tickValues(minVal, maxVal, size):
            whole = [value for value in values if abs(value - round(value)) < 1e-6]
            if whole:
                levels.append((max(spacing, 1.0), whole))
        return levels


def _plot(name: str, title: str, y_label: str) -> pg.PlotWidget:
    configure_pyqtgraph()
    widget = pg.PlotWidget(axisItems={"bottom": _WholeEpochAxis(orientation="bottom")})
    widget.setObjectName(name)
    item = widget.getPlotItem()
    item.setTitle(title)
    item.setLabel("bottom", "epoch")
    item.getAxis("bottom").enableAutoSIPrefix(False)  # epoch 0.5, not 500 (x0.001), early in a run
    item.setLabel("left", y_label)
    item.getAxis("left").enableAutoSIPrefix(False)
    item.showGrid(x=True, y=True, alpha=0.25)
    item.layout.setContentsMargins(0, 0, 12, 0)  # the last epoch's point off the frame of the pane
    widget.setMinimumHeight(160)
    return widget


class RunCurves(QWidget):
    """Val loss and val accuracy per epoch of each selected run (train values dashed), and one legend
    for both plots under them."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = _plot("runsLossPlot", "Loss", "loss")
        self.accuracy_plot = _plot("runsAccuracyPlot", "Accuracy", "accuracy")
        # The legend has a row of its own under the plots: inside them, no corner stays free of the data
        # (a run that over-fits turns its loss up and its accuracy down at the right), and at 1000 x 620
        # the run names covered half of each plot. Both plots draw the same runs in the same colours, so
        # it is shown once; the accuracy plot's named curves fill it (PlotItem adds them to its legend).
        self.legend_view = pg.GraphicsLayoutWidget()
        self.legend_view.setObjectName("runsLegend")
        self.legend_view.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)  # the plots set the width
        self.legend_view.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.legend_view.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.legend_view.setFrameShape(QFrame.NoFrame)
        self.legend_view.ci.setContentsMargins(0, 0, 0, 0)
        self.legend = pg.LegendItem()
        self.legend.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)  # its entries side by side, not spread out
        self.legend_view.addItem(self.legend)
        self.accuracy_plot.getPlotItem().legend = self.legend
        self.hint = QLabel()
        self.hint.setAlignment(Qt.AlignCenter)
        self.shown: list[str] = []  # run names, in legend order
        self._drawn: list | None = None  # what the plots show: each run's folder, name and metrics rows
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.accuracy_plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.hint)
        layout.addLayout(plots, 1)
        layout.addWidget(self.legend_view)
        self.show_runs([])

    def show_runs(self, runs: list[RunSummary]) -> None:
        """Draws the runs' curves from their metrics.csv as it is now; called again when a selected run
        is renamed or has new epochs (drawn again only if something it shows changed)."""
        runs = runs[:MAX_RUNS]
        metrics = [read_metrics(RunFolder(run.path)) for run in runs]
        drawn = [(run.path, run.name, rows) for run, rows in zip(runs, metrics)]
        if drawn != self._drawn:
            self._draw(runs, metrics)
            self._drawn = drawn
        if runs and not any(metrics):
            self.hint.setText("No epoch has finished yet: the curves appear after the first one.")
        elif len(runs) >= 2:
            self.hint.setText("Solid: validation; dashed: training.")
        elif runs:
            self.hint.setText("Solid: validation; dashed: training. Ctrl+click or Shift+click more runs to "
                              "overlay their curves.")
        else:
            self.hint.setText("Select runs to see their curves (Ctrl+click or Shift+click to overlay several).")

    def _draw(self, runs: list[RunSummary], metrics: list[list[dict]]) -> None:
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.getPlotItem().clear()  # also empties the legend
            if any(metrics):
                plot.enableAutoRange()
            else:  # nothing to draw: plain axes, not the last runs' ranges over an empty plot
                plot.setRange(xRange=(0.5, 2.5), yRange=(0, 1), padding=0)
        self.shown = []
        for colour, run, rows in zip(RUN_COLOURS, runs, metrics):
            epochs = [row["epoch"] for row in rows]
            solid, dashed = pg.mkPen(colour, width=2), pg.mkPen(colour, width=1, style=Qt.DashLine)
            # a dashed line of one point is nothing: a one-epoch run showed its val dot alone, so its
            # training figures get a hollow mark of their own
            lone = dict(symbol="o", symbolSize=6, symbolPen=colour, symbolBrush=None) if len(rows) == 1 else {}
            self.loss_plot.plot(epochs, [_value(r, "val_loss") for r in rows], pen=solid, symbol="o", symbolSize=5,
                                symbolBrush=colour)
            self.loss_plot.plot(epochs, [_value(r, "train_loss") for r in rows], pen=dashed, **lone)
            self.accuracy_plot.plot(epochs, [_value(r, "val_acc") for r in rows], pen=solid, symbol="o",
                                    symbolSize=5, symbolBrush=colour,
                                    name=escape(run.name))  # pyqtgraph's legend shows its names as HTML
            self.accuracy_plot.plot(epochs, [_value(r, "train_acc") for r in rows], pen=dashed, **lone)
            self.shown.append(run.name)
        self.legend_view.setVisible(bool(runs))
        self._fit_legend()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_legend()

    def _fit_legend(self) -> None:
        """As many names side by side as the width holds (plots.fit_legend_columns), then the strip's
        height to its rows."""
        fit_legend_columns(self.legend, self.width())
        self.legend.layout.activate()
        self.legend_view.setFixedHeight(int(self.legend.layout.preferredHeight()) + 2)


def _value(row: dict, key: str) -> float:
    value = row.get(key)
    return float("nan") if value is None else value


class ConfigDiffTable(QTableWidget):
    """One row per setting whose values differ between the selected runs, one column per run."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("configDiff")
        self.setEditTriggers(QTableWidget.NoEditTriggers)
        self.verticalHeader().setDefaultSectionSize(22)
        self.differences: dict[str, list] = {}

    def show_runs(self, runs: list[RunSummary]) -> None:
        self.differences = config_diff([run.config for run in runs]) if len(runs) >= 2 else {}
        self.clear()
        # a sentence instead of a table: one column without a header (it sat under the first run's name)
        self.setColumnCount(len(runs) if len(runs) >= 2 and self.differences else 1)
        self.setHorizontalHeaderLabels([run.name for run in runs] if len(runs) >= 2 and self.differences else [""])
        if len(runs) < 2:
            self.setRowCount(1)
            self.setVerticalHeaderLabels([""])
            self.setItem(0, 0, QTableWidgetItem("Select two or more runs to see the settings that differ."))
        elif not self.differences:
            self.setRowCount(1)
            self.setVerticalHeaderLabels([""])
            self.setItem(0, 0, QTableWidgetItem("These runs used the same settings."))
        else:
            self.setRowCount(len(self.differences))
            self.setVerticalHeaderLabels(list(self.differences))
            for row, values in enumerate(self.differences.values()):
                key = list(self.differences)[row]
                for column, value in enumerate(values):
                    if key == "lr" and value is None:  # the default that suits the run's freeze depth
                        text = f"{resolved_lr(runs[column].config):.2g} (default)"
                    elif key == "schedule":  # as the table beside it and the Train step name it
                        text = SCHEDULE_WORDS.get(value, _text(value))
                    elif key == "freeze" and value is not None:
                        text = freeze_words(value)
                    else:
                        text = _text(value)
                    self.setItem(row, column, QTableWidgetItem(text))
        self.resizeColumnsToContents()


def _text(value) -> str:
    if value is None:
        return "(default)"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


COMPARE_HINT = ("Select exactly two runs with a model file, then compare them on the validation images of the "
                "data set they share.")


class ValidationCompare(QWidget):
    """Accuracy of two runs on the same validation images and a gallery of the images on which they
    disagree, each with both predictions. The page runs the comparison in the background."""

    compareRequested = Signal(str, str)  # run A's folder, run B's folder
    cancelRequested = Signal()

    def __init__(self, parent=None):
        from tl_studio.gui.thumbnails import THUMB_PX, ThumbnailModel, thumbnail_view

        super().__init__(parent)
        self.pair: tuple[RunSummary, RunSummary] | None = None
        self.result = None
        self.summary = QLabel(COMPARE_HINT)
        self.summary.setWordWrap(True)
        self.compare_button = QPushButton("Compare on validation images")
        self.compare_button.setObjectName("compareButton")
        self.compare_button.clicked.connect(self._request)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.progress = QProgressBar()
        self.progress.hide()
        self.cancel_button.hide()
        self.thumbnails = ThumbnailModel(self)
        # three caption lines (the true class, A's and B's answer) under each thumbnail
        self.gallery = thumbnail_view(self.thumbnails, item_size=QSize(THUMB_PX + 40, THUMB_PX + 54))
        self.gallery.setObjectName("disagreementGallery")
        self.gallery.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.compare_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        row.addStretch()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        layout.addWidget(self.gallery, 1)
        self.set_runs([])

    def set_runs(self, runs: list[RunSummary]) -> None:
        pair = tuple(runs) if len(runs) == 2 else None
        if _models(pair) != _models(self.pair):
            self.pair = pair
            self.show_result(None)
        elif pair != self.pair:  # the same two models, renamed, starred or noted: keep the result, new names
            self.pair = pair
            if self.result is not None:
                self.show_result(self.result)
        ready = pair is not None and all(run.has_model_file for run in pair)
        self.compare_button.setEnabled(ready and self.progress.isHidden())
        if pair is None:
            self.compare_button.setToolTip("Select exactly two runs")
        elif not ready:
            self.compare_button.setToolTip("Both runs need a model file (model.pt2)")
        else:
            self.compare_button.setToolTip(as_written(f"Run {pair[0].name} (A) and {pair[1].name} (B) on the same "
                                                      "images"))

    def _request(self) -> None:
        if self.pair:
            self.compareRequested.emit(self.pair[0].path, self.pair[1].path)

    def set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.progress.setRange(0, 0)
        self.compare_button.setEnabled(not busy and self.pair is not None)
        if busy:
            self.summary.setText("Loading both models and answering every validation image…")

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def show_error(self, message: str) -> None:
        self.set_busy(False)
        self.summary.setText(as_written(message))  # it may quote a run folder

    def show_result(self, result) -> None:
        self.result = result
        if result is None:  # another pair, or none: the last pair's figures went with its gallery
            self.thumbnails.set_paths([], [])
            if self.progress.isHidden():
                self.summary.setText(COMPARE_HINT)
            return
        self.set_busy(False)
        a, b = self.pair
        # rich text: the run names are the user's, escaped
        text = (f"On {result.images} validation images: <b>A</b> {escape(a.name)} {result.accuracy_a:.1%}, "
                f"<b>B</b> {escape(b.name)} {result.accuracy_b:.1%}. They disagree on {len(result.disagreements)} "
                f"image{'s' if len(result.disagreements) != 1 else ''}"
                + (":" if result.disagreements else "."))
        if result.note:
            text += f"<br><i>{escape(result.note)}</i>"
        self.summary.setText(text)
        # which of the two was right is what a disagreement is looked at for: the true class heads it
        captions = [f"true: {d.true_label}\nA: {d.label_a} {d.prob_a:.0%}\nB: {d.label_b} {d.prob_b:.0%}"
                    for d in result.disagreements]
        self.thumbnails.set_paths([d.path for d in result.disagreements], captions)

    def shutdown(self) -> None:
        self.thumbnails.shutdown()


def _models(pair: tuple[RunSummary, RunSummary] | None) -> tuple | None:
    """What a comparison on the validation images depends on: which runs, and how far each trained."""
    return None if pair is None else tuple((run.path, run.epochs_done, run.has_model_file) for run in pair)
