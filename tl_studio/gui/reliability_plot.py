"""The reliability diagram of the Evaluate step (pyqtgraph): for each confidence bin, how often the model
was right against how sure it said it was, with the diagonal of a perfectly calibrated model; and the
caption with the expected calibration error (ECE) of the evaluated images and, when the model file
records a calibration, its ECE before and after on the validation split."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from tl_studio.gui.theme import SERIES, configure_pyqtgraph


def calibration_sentence(metadata: dict | None) -> str:
    """"ECE 0.068 → 0.014 after calibration (T = 0.56)" from tl_studio.json, or "" when it has none (an
    older file, or a calibration record this version cannot read); for an int8 file it says the figures are
    the full-precision model's."""
    from tl_studio.core.calibration import Calibration

    record = (metadata or {}).get("calibration")
    if not record:
        return ""
    try:
        calibration = Calibration.from_dict(record)
    except (KeyError, TypeError, ValueError):
        return ""
    # Said as the training run's own figures: "On the validation split" read as the images on screen,
    # also when another folder was evaluated.
    sentence = (f"When it was trained, on its run's validation images: ECE {calibration.ece_before:.3f} → "
                f"{calibration.ece_after:.3f} after calibration (T = {calibration.temperature:.2f})")
    if (metadata or {}).get("quantization"):
        # an int8 file keeps the fp32 file's metadata, so the recorded figures are not this file's own; the
        # ECE of the evaluated images above is
        return sentence + ", measured on the full-precision model before int8 quantisation."
    return sentence + "."


class ReliabilityPlot(QWidget):
    def __init__(self, parent=None):
        configure_pyqtgraph()
        super().__init__(parent)
        self.setObjectName("reliabilityPlot")
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(220)
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "confidence (top-1 probability)")
        item.setLabel("left", "accuracy")
        item.setXRange(0, 1, padding=0.02)
        item.setYRange(0, 1, padding=0.02)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        item.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen("#888888", width=1, style=pg.QtCore.Qt.DashLine)))
        self.bars: pg.BarGraphItem | None = None
        self.points = pg.ScatterPlotItem(size=7, brush=pg.mkBrush(SERIES[1]), pen=pg.mkPen(None))
        item.addItem(self.points)
        self.caption = QLabel()
        self.caption.setObjectName("reliabilityCaption")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.bins: list = []

    def show_evaluation(self, evaluation, metadata: dict | None) -> None:
        """``evaluation``: a core Evaluation, or None to clear."""
        item = self.plot.getPlotItem()
        if self.bars is not None:
            item.removeItem(self.bars)
            self.bars = None
        self.bins = [b for b in evaluation.reliability() if b.count] if evaluation is not None else []
        if not self.bins:
            self.points.setData([], [])
            self.caption.setText("")
            return
        # a bar per non-empty bin spanning it, as tall as the accuracy there; a dot at the bin's mean
        # confidence: on a calibrated model the bars' tops and the dots follow the diagonal
        lower = np.array([b.lower for b in self.bins])
        upper = np.array([b.upper for b in self.bins])
        accuracy = np.array([b.accuracy for b in self.bins])
        self.bars = pg.BarGraphItem(x0=lower, x1=upper, height=accuracy, brush=pg.mkBrush(SERIES[0] + "99"),
                                    pen=pg.mkPen(SERIES[0]))
        item.addItem(self.bars)
        self.points.setData([b.confidence for b in self.bins], accuracy)
        self.points.setZValue(self.bars.zValue() + 1)
        ece = evaluation.ece
        lines = [f"<b>ECE {ece:.3f}</b> on these {len(evaluation.true)} images (15 bins; 0 is perfectly calibrated)."
                 if not math.isnan(ece) else "No ECE: no image was evaluated."]
        recorded = calibration_sentence(metadata)
        lines.append(recorded or "This model file records no calibration (an older export).")
        lines.append("Bars: the share right in each confidence bin; dots: that share placed at the bin's mean "
                     "confidence; dashed: a perfectly calibrated model (dots on it).")
        self.caption.setText("<br>".join(lines))
