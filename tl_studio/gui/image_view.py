"""The large view of one evaluated image: the picture, a Grad-CAM toggle ("where the model looked") and
every class probability as a bar chart.

Decoding the image and computing the Grad-CAM map run in the background (the page's TaskRunner); the
worker returns uint8 arrays and the pixmaps are made here, in the GUI thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QDialog, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout

from tl_studio.gui.sample_grid import pixmap_from_array
from tl_studio.gui.theme import BAD, GOOD, SERIES, configure_pyqtgraph

DISPLAY_PX = 520  # longest side of the picture on screen


@dataclass(frozen=True)
class ImageFacts:
    """What the evaluation knows about the image."""

    path: str
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]
    true_label: int | None = None


class CamProvider:
    """Builds the Grad-CAM network of one model file once (seconds), on first use, in a worker thread."""

    def __init__(self, model_path: Path, metadata: dict, run_dir: Path | None):
        self.model_path, self.metadata, self.run_dir = Path(model_path), metadata, run_dir
        self._cam = None
        self._lock = threading.Lock()

    def get(self):
        from tl_studio.core.gradcam import GradCam, load_network
        from tl_studio.core.preprocess import PreprocessSpec

        with self._lock:
            if self._cam is None:
                network = load_network(self.model_path, self.metadata, self.run_dir)
                from tl_studio.core.export import temperature_of

                self._cam = GradCam(network, PreprocessSpec.from_dict(self.metadata["preprocessing"]),
                                    temperature=temperature_of(self.metadata))
            return self._cam


def load_display_image(path: str, with_cam: CamProvider | None, class_index: int | None) -> dict:
    """Worker side: the picture scaled for display, and the Grad-CAM overlay when asked."""
    from PIL import Image

    from tl_studio.core.images import load_rgb

    image = load_rgb(path)
    shown = image.copy()
    shown.thumbnail((DISPLAY_PX, DISPLAY_PX), Image.BICUBIC)
    result = {"path": path, "image": np.asarray(shown, dtype=np.uint8).copy()}
    if with_cam is not None:
        from tl_studio.core.gradcam import overlay
        from tl_studio.core.preprocess import to_unit_tensor

        cam = with_cam.get()(to_unit_tensor(image), class_index)
        heatmap = np.asarray(Image.fromarray(cam.heatmap.astype(np.float32)).resize(shown.size, Image.BILINEAR))
        scale = shown.width / image.width
        box = tuple(round(v * scale) for v in cam.crop_box)
        result.update(overlay=overlay(result["image"], heatmap, box=box), cam_class=cam.class_index,
                      cam_square=cam.crop_box[2] / min(image.width, image.height))
    return result


class ProbabilityChart(pg.PlotWidget):
    """Horizontal bars, most likely class on top; the prediction and the true class coloured."""

    def __init__(self, parent=None):
        configure_pyqtgraph()
        super().__init__(parent)
        self.setObjectName("probabilityChart")
        item = self.getPlotItem()
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        item.setLabel("bottom", "probability")
        item.showGrid(x=True, alpha=0.25)
        self.bars: pg.BarGraphItem | None = None

    def show_probabilities(self, classes: tuple[str, ...], probabilities: tuple[float, ...],
                           true_label: int | None) -> None:
        item = self.getPlotItem()
        if self.bars is not None:
            item.removeItem(self.bars)
        order = np.argsort(probabilities)[::-1]
        predicted = int(order[0]) if len(order) else -1
        y = np.arange(len(order))[::-1]  # most likely at the top
        brushes = [GOOD if i == true_label == predicted else BAD if i == predicted else
                   GOOD if i == true_label else pg.mkColor(SERIES[0]) for i in order]
        self.bars = pg.BarGraphItem(x0=0, y=y, height=0.7, width=np.asarray(probabilities)[order], brushes=brushes,
                                    pen=pg.mkPen(None))
        item.addItem(self.bars)
        item.getAxis("left").setTicks([[(int(pos), classes[i]) for pos, i in zip(y, order)]])
        item.setXRange(0, 1, padding=0.02)
        item.setYRange(-0.6, len(order) - 0.4, padding=0)
        self.setFixedHeight(min(560, 70 + 34 * len(order)))  # bars of a readable height, not stretched


class ImageDetail(QDialog):
    """Not modal: the user can keep several open and go on working."""

    camFinished = Signal()

    def __init__(self, facts: ImageFacts, runner, cams: CamProvider | None, parent=None):
        super().__init__(parent)
        self.setObjectName("imageDetail")
        self.setAttribute(Qt.WA_DeleteOnClose)
        self.facts, self.runner, self.cams = facts, runner, cams
        self.arrays: dict[str, np.ndarray] = {}
        self.setWindowTitle(Path(facts.path).name)
        self._build()
        self.chart.show_probabilities(facts.classes, facts.probabilities, facts.true_label)
        self._load(with_cam=False)

    def _build(self) -> None:
        self.picture = QLabel("Loading…", alignment=Qt.AlignCenter)
        self.picture.setMinimumSize(DISPLAY_PX // 2, DISPLAY_PX // 2)
        self.picture.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.cam_toggle = QCheckBox("Show where the model looked (Grad-CAM)")
        self.cam_toggle.setObjectName("gradcamToggle")
        self.cam_toggle.setEnabled(self.cams is not None)
        self.cam_toggle.setToolTip("Red: the parts of the image that raised the predicted class most. Areas "
                                   "outside the centre crop the model sees stay uncoloured.")
        self.cam_toggle.toggled.connect(self._toggle_cam)
        self.caption = QLabel(_caption(self.facts))
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextSelectableByMouse)
        left = QVBoxLayout()
        left.addWidget(self.picture, 1)
        left.addWidget(self.cam_toggle)
        left.addWidget(self.caption)
        self.chart = ProbabilityChart()
        right = QVBoxLayout()
        right.addWidget(QLabel("<b>Class probabilities</b>"))
        right.addWidget(self.chart)
        right.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 3)
        layout.addLayout(right, 2)
        self.resize(1000, 620)

    def _load(self, with_cam: bool) -> None:
        path, cams = self.facts.path, self.cams if with_cam else None
        predicted = int(np.argmax(self.facts.probabilities))
        task = self.runner.start(lambda report, cancelled: load_display_image(path, cams, predicted), "image-detail")
        task.succeeded.connect(self._show)
        task.failed.connect(self._failed)

    def _toggle_cam(self, on: bool) -> None:
        if on and "overlay" not in self.arrays:
            self.cam_toggle.setEnabled(False)
            self.caption.setText(_caption(self.facts) + "<br>Computing where the model looked…")
            self._load(with_cam=True)
        else:
            self._show_picture()

    def _show(self, result: dict) -> None:
        self.arrays.update({key: result[key] for key in ("image", "overlay") if key in result})
        if "overlay" in result:
            self.cam_toggle.setEnabled(True)
            cam_class = escape(self.facts.classes[result["cam_class"]])
            # the model never sees the edges outside its centre crop; said here, where the uncoloured border
            # shows, and not only in the toggle's tooltip
            self.caption.setText(_caption(self.facts) + f"<br>Grad-CAM of <b>{cam_class}</b>: the warmer, the more "
                                 "that area raised this class. The model sees only the centre square "
                                 f"({result['cam_square']:.0%} of the shorter side); the uncoloured edges are "
                                 "outside it.")
            self.camFinished.emit()
        self._show_picture()

    def _failed(self, message: str) -> None:
        self.cam_toggle.setEnabled(False)
        self.cam_toggle.setChecked(False)
        self.caption.setText(_caption(self.facts) + f"<br><span style='color:{BAD.name()}'>{escape(message)}</span>")
        self.camFinished.emit()

    def _show_picture(self) -> None:
        key = "overlay" if self.cam_toggle.isChecked() and "overlay" in self.arrays else "image"
        if key in self.arrays:
            self.picture.setPixmap(pixmap_from_array(self.arrays[key]))

    def showing_overlay(self) -> bool:
        return self.cam_toggle.isChecked() and "overlay" in self.arrays

    def relabel(self, path: str, true_label: int | None) -> None:
        """The image was moved (to another class folder, or set aside) while this window showed it: the
        caption, the chart's label and a later Grad-CAM follow it to its new place."""
        self.facts = replace(self.facts, path=path, true_label=true_label)
        self.setWindowTitle(Path(path).name)
        self.caption.setText(_caption(self.facts))
        self.chart.show_probabilities(self.facts.classes, self.facts.probabilities, true_label)


class ImagePreview(QDialog):
    """The large view of one image of the data set (the Data step's double-click): the picture, its file
    name as the window title, its class, split and path underneath. Not modal, like ImageDetail. The
    decode runs in the background (``runner``, a TaskRunner); the pixmap is made here."""

    loaded = Signal()  # the picture, or why there is none, is shown

    def __init__(self, path: str, where: str, runner, parent=None):
        super().__init__(parent)
        self.setObjectName("imagePreview")
        self.setAttribute(Qt.WA_DeleteOnClose)
        self.path = str(path)
        self.setWindowTitle(Path(self.path).name)
        self.picture = QLabel("Loading…", alignment=Qt.AlignCenter)
        self.picture.setMinimumSize(DISPLAY_PX, DISPLAY_PX * 3 // 4)
        self.picture.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        # rich text: the file, class and folder names are the user's, escaped
        self._caption = (f"<b>{escape(Path(self.path).name)}</b>" + (f" · {escape(where)}" if where else ""),
                         f"<br><small>{escape(self.path)}</small>")
        self.caption = QLabel("".join(self._caption))
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.caption)
        path = self.path
        task = runner.start(lambda report, cancelled: _load_preview(path), "image-preview")
        # bound methods, not lambdas: Qt drops the connection when the window is closed before the decode ends
        task.succeeded.connect(self._show)
        task.failed.connect(self._failed)
        self.resize(DISPLAY_PX + 80, DISPLAY_PX + 120)

    def _show(self, result: dict) -> None:
        pixmap = pixmap_from_array(result["image"])
        if max(pixmap.width(), pixmap.height()) < DISPLAY_PX:
            # a small photo enlarged to the view (the point of a larger view), its real size said below
            pixmap = pixmap.scaled(DISPLAY_PX, DISPLAY_PX, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        self.picture.setPixmap(pixmap)
        width, height = result["size"]
        self.caption.setText(self._caption[0] + f" · {width} × {height} px" + self._caption[1])
        self.loaded.emit()

    def _failed(self, message: str) -> None:
        # a file removed or broken since the scan: one sentence where the picture would be
        self.picture.setTextFormat(Qt.PlainText)  # it names the user's file, never markup
        self.picture.setText(message)
        self.loaded.emit()


def _load_preview(path: str) -> dict:
    """Worker side of ImagePreview: the reason an image cannot be shown is a sentence for the user, not
    an unexpected failure with a traceback in the log."""
    from tl_studio.core.errors import UserError
    from tl_studio.core.images import ImageLoadError

    try:
        result = load_display_image(path, None, None)
    except ImageLoadError as error:
        raise UserError(f"{Path(path).name} cannot be shown: {error.reason}") from None
    from PIL import Image

    with Image.open(path) as image:  # the header only: its size as stored, for the caption
        result["size"] = image.size
    return result


def _caption(facts: ImageFacts) -> str:
    """Rich text; the class names (the model's) and the file's path are escaped."""
    predicted = int(np.argmax(facts.probabilities))
    text = f"<b>{escape(facts.classes[predicted])}</b> {facts.probabilities[predicted]:.1%}"
    if facts.true_label is not None:
        verdict = "right" if predicted == facts.true_label else "wrong"
        text += f" · labelled <b>{escape(facts.classes[facts.true_label])}</b> ({verdict})"
    return text + f"<br><small>{escape(facts.path)}</small>"
