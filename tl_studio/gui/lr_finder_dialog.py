"""The learning-rate finder dialog of the Train step: runs core.lr_finder in the background with a
progress bar and Cancel, plots the smoothed loss against the rate (log axis) with the suggestion
marked, and "Use this value" puts the chosen rate into the session's config.

The marker is a draggable line: the suggestion is where it starts, and a user who prefers another
point of the curve drags it there. The Train step opens the dialog and calls ``start()``.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from tl_studio.gui.cpu_share import share_the_cpu_with_the_window
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.tasks import TaskRunner
from tl_studio.gui.theme import SERIES, configure_pyqtgraph



PREPARING = "Preparing the model…"

class _LearningRateAxis(pg.AxisItem):
    """Learning rates written as the suggestion is ("1e-04", "9.1e-04"). pyqtgraph's own log axis scaled
    them by an SI prefix ("learning rate (x0.001)") and wrote 0.001, 0.01, 0.1, 1, then 10¹ and 10²."""

    def logTickStrings(self, values, scale, spacing):
        return [f"{10.0 ** value:.0e}" for value in values]


def _plot() -> pg.PlotWidget:
    configure_pyqtgraph()
    axis = _LearningRateAxis(orientation="bottom")
    axis.enableAutoSIPrefix(False)
    widget = pg.PlotWidget(axisItems={"bottom": axis})
    widget.setObjectName("lrFinderPlot")
    item = widget.getPlotItem()
    item.setLogMode(x=True, y=False)
    item.setLabel("bottom", "learning rate")
    item.setLabel("left", "training loss (smoothed)")
    item.showGrid(x=True, y=True, alpha=0.25)
    item.getAxis("left").enableAutoSIPrefix(False)  # losses read as 0.45, not 450 (x0.001)
    item.addLegend(offset=(-10, 10))
    widget.setMinimumSize(520, 300)
    return widget


class LrFinderDialog(QDialog):
    resultReady = Signal(object)  # LrFindResult
    failed = Signal(str)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Find a learning rate")
        self.setObjectName("lrFinderDialog")
        self.session = session
        self.tasks = TaskRunner(self)
        self.task = None
        self.sweep_result = None
        self.chosen_lr: float | None = None
        self._close_with: int | None = None  # the dialog's result, when it was closed while a sweep ran
        self._build()
        self._set_running(False)

    # ---- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.plot = _plot()
        self.raw_curve = self.plot.plot(name="loss per step", pen=pg.mkPen(SERIES[0] + "44", width=1))
        self.curve = self.plot.plot(name="smoothed loss", pen=pg.mkPen(SERIES[0], width=2))
        self.point = self.plot.plot(pen=None, symbol="o", symbolSize=10, symbolBrush=SERIES[1])
        self.marker = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen(SERIES[1], width=2),
                                      hoverPen=pg.mkPen(SERIES[1], width=3),
                                      label="", labelOpts={"position": 0.92, "color": SERIES[1]})
        self.marker.setVisible(False)
        self.marker.sigPositionChanged.connect(self._marker_moved)
        self.plot.addItem(self.marker)
        self.plot.getPlotItem().setXRange(-7, 1)  # the default sweep, 1e-7 to 10, until a result is shown
        self.progress = QProgressBar(objectName="lrFinderProgress")
        self.progress.setTextVisible(True)
        self.message = QLabel(objectName="lrFinderMessage")
        self.message.setWordWrap(True)
        self.message.setMinimumHeight(3 * self.message.fontMetrics().lineSpacing())
        self.message.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.run_button = QPushButton("Run the finder", objectName="lrFinderRun")
        self.cancel_button = QPushButton("Cancel", objectName="lrFinderCancel")
        self.use_button = QPushButton("Use this value", objectName="lrFinderUse")
        self.use_button.setDefault(True)
        close = QPushButton("Close")
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_value)
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        for button in (self.run_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        self._describe_config()

    def _describe_config(self) -> None:
        config = self.session.config
        what = ("the new head on cached features (a few seconds)" if config.freeze == "all" and config.feature_cache
                else f"{config.model} with freeze depth {config.freeze} on image batches (this can take minutes "
                     f"on a CPU)")
        self.intro.setText(f"A short training run whose learning rate grows every step: it trains {what}. "
                           f"Pick a rate where the loss falls fastest, before it turns up. Nothing is saved and "
                           f"the model you will train is not changed.")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.run_button.setText("Run again" if self.sweep_result is not None else "Run the finder")
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running)
        self.use_button.setEnabled(not running and self.chosen_lr is not None)

    # ---- running ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def start(self) -> None:
        if self.running:
            return
        if self.session.scan is None and not self.session.config.data_dir:
            self.message.setText("Open a dataset folder first (the Data step).")
            return
        config, scan = self.session.config, self.session.scan
        self._describe_config()

        def sweep(report, cancelled):
            from tl_studio.core.lr_finder import find_lr

            share_the_cpu_with_the_window()
            # loader processes start with "spawn": forking a process that runs Qt threads is unsafe
            return find_lr(config, scan, progress=report, cancel=cancelled, mp_context="spawn")

        self.message.setText(PREPARING)
        self.progress.setRange(0, 0)
        self.task = self.tasks.start(sweep, "lr-finder")
        self.task.progress.connect(self._on_progress)
        self.task.succeeded.connect(self._on_succeeded)
        self.task.failed.connect(self._on_failed)
        self.task.cancelled.connect(self._on_cancelled)
        self._set_running(True)

    def cancel(self) -> None:
        if self.running:
            self.task.cancel()
            self.message.setText("Cancelling…")

    def _on_progress(self, event) -> None:
        if self.message.text() == PREPARING:  # the sweep runs: "Preparing the model…" stood under it to the end
            self.message.setText("Trying learning rates from small to large; the plot appears when the sweep ends.")
        self.progress.setRange(0, max(1, event.total))
        self.progress.setValue(event.done)
        self.progress.setFormat(event.text)

    def _on_succeeded(self, result) -> None:
        # The result arrives just before the task's thread ends, while it destroys its worker object;
        # creating or connecting Qt objects meanwhile can deadlock PySide (both take Qt's connection
        # lock and the GIL, in opposite orders), so let the thread end first (a few milliseconds).
        self.task.wait(10_000)
        if self._close_with is not None:  # closed meanwhile: the sweep ended before the cancel reached it
            self._set_running(False)
            self.done(self._close_with)
            return
        self.show_result(result)

    def _on_failed(self, message: str) -> None:
        self.message.setText(as_written(message))  # it may quote an image file
        self._set_running(False)
        self.failed.emit(message)
        if self._close_with is not None:
            self.done(self._close_with)

    def _on_cancelled(self) -> None:
        self.message.setText("Cancelled; nothing was changed.")
        self._set_running(False)
        if self._close_with is not None:  # Close or Escape pressed while the sweep ran
            self.done(self._close_with)

    # ---- the result ---------------------------------------------------------------------------------
    def show_result(self, result) -> None:
        """Draws a finished sweep (public so a saved result can be shown too)."""
        self.sweep_result = result
        lrs = np.asarray(result.lrs, dtype=float)
        smoothed = np.asarray(result.losses, dtype=float)
        raw = np.asarray([np.nan if v is None else v for v in result.raw_losses], dtype=float)
        self.raw_curve.setData(lrs, raw, connect="finite")
        self.curve.setData(lrs, smoothed)
        self._fit_view(lrs, smoothed)
        self.chosen_lr = result.suggested_lr
        if result.suggested_index is not None:
            self.marker.setValue(math.log10(result.suggested_lr))
            self.marker.setVisible(True)
        else:
            self.marker.setVisible(False)
            self.point.setData([], [])
        self._show_choice()
        self._set_running(False)
        self.resultReady.emit(result)

    def _fit_view(self, lrs: np.ndarray, smoothed: np.ndarray) -> None:
        """The whole sweep across, and the loss from its lowest point to a little above where it began:
        the divergence at the end would otherwise squash the part that matters."""
        if not len(lrs):
            return
        lowest = int(np.argmin(smoothed))
        top = max(float(smoothed[: lowest + 1].max()), float(smoothed[0])) * 1.15
        bottom = float(smoothed[lowest])
        margin = 0.05 * max(top - bottom, 1e-6)
        self.plot.getPlotItem().setXRange(math.log10(lrs[0]), math.log10(lrs[-1]), padding=0.02)
        self.plot.getPlotItem().setYRange(bottom - margin, top, padding=0)

    def _marker_moved(self) -> None:
        if self.sweep_result is None or not self.sweep_result.lrs:
            return
        low, high = self.sweep_result.lrs[0], self.sweep_result.lrs[-1]
        self.chosen_lr = float(min(high, max(low, 10 ** self.marker.value())))
        self._show_choice()

    def _show_choice(self) -> None:
        result = self.sweep_result
        if self.chosen_lr is None:
            self.message.setText(escape(result.message) + _problems_line(result))
            self.use_button.setEnabled(False)
            return
        index = int(np.argmin(np.abs(np.log10(result.lrs) - math.log10(self.chosen_lr))))
        self.point.setData([result.lrs[index]], [result.losses[index]])
        self.marker.label.setFormat(f"{self.chosen_lr:.1e}")
        suggested = result.suggested_lr
        if suggested is not None and math.isclose(self.chosen_lr, suggested, rel_tol=1e-6):
            text = f"Suggested learning rate: <b>{suggested:.1e}</b>. {result.message}"
        else:
            text = f"Chosen learning rate: <b>{self.chosen_lr:.1e}</b> (suggested {suggested:.1e})."
        self.message.setText(f"{text} <i>({len(result.lrs)} steps in {result.seconds:.1f} s.)</i>"
                             + _problems_line(result))
        self.use_button.setEnabled(not self.running)

    def use_value(self) -> None:
        if self.chosen_lr is None:
            return
        value = float(f"{self.chosen_lr:.2g}")  # two significant digits: what a person would type
        self.session.update_config(lr=value)
        if hasattr(self.session, "say"):
            self.session.say(f"Learning rate set to {value:g} from the learning-rate finder.")
        self.accept()

    # ---- closing ------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancels a running sweep and waits for its thread (closing the dialog or the window)."""
        self.tasks.shutdown()

    def done(self, code: int) -> None:
        if self.running:
            # the sweep stops after its current step, which on a CPU can take 20 s when the whole network
            # trains: waiting for it here held the window with no word; the dialog says so and closes then
            self._close_with = code
            self.cancel()
            return
        self.shutdown()
        super().done(code)


def _problems_line(result) -> str:
    """Rich text: what the scan left out of the sweep, on a line of its own; the file names are escaped."""
    return f"<br>{escape(result.dataset_problems)}" if result.dataset_problems else ""
