"""The sample predictions grid: validation thumbnails with true label, prediction and confidence,
framed green (right) or red (wrong), refreshed every epoch."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from tl_studio.gui.literal_text import as_written
from tl_studio.gui.theme import BAD, GOOD


def pixmap_from_array(array) -> QPixmap:
    """H x W x 3 uint8 -> QPixmap (made in the GUI thread, as Qt requires)."""
    height, width, _ = array.shape
    image = QImage(array.tobytes(), width, height, 3 * width, QImage.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class SampleTile(QFrame):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Box)
        self.setLineWidth(3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.image = QLabel(alignment=Qt.AlignCenter)
        self.image.setFixedSize(112, 112)
        self.caption = QLabel(alignment=Qt.AlignCenter)
        self.caption.setWordWrap(True)
        layout.addWidget(self.image, 0, Qt.AlignHCenter)
        layout.addWidget(self.caption)
        self.correct: bool | None = None

    def show_sample(self, sample, classes) -> None:
        self.image.setPixmap(pixmap_from_array(sample.thumbnail))
        predicted = classes[sample.top_labels[0]]
        truth = classes[sample.true_label]
        self.correct = sample.top_labels[0] == sample.true_label
        colour = GOOD if self.correct else BAD
        self.setStyleSheet(f"SampleTile {{ border: 3px solid {colour.name()}; border-radius: 4px; }}")
        # the class names are the user's class folders: escaped in the rich caption, as written in the tooltip
        self.caption.setText(f"<b>{escape(predicted)}</b> {sample.top_probs[0]:.0%}<br><small>true: "
                             f"{escape(truth)}</small>")
        ranked = "\n".join(f"{classes[i]}: {p:.1%}" for i, p in zip(sample.top_labels, sample.top_probs))
        self.setToolTip(as_written(f"{sample.path}\ntrue: {truth}\n{ranked}"))


class SampleGrid(QWidget):
    COLUMNS = 4

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("samplePredictions")
        self.grid = QGridLayout(self)
        self.grid.setSpacing(6)
        self.tiles: list[SampleTile] = []
        self.placeholder = QLabel("Sample predictions on validation images appear here after the first epoch.")
        self.placeholder.setWordWrap(True)
        self.grid.addWidget(self.placeholder, 0, 0, 1, self.COLUMNS)
        self.epoch = 0

    def show_predictions(self, event) -> None:
        self.placeholder.hide()
        self.epoch = event.epoch
        while len(self.tiles) < len(event.samples):
            tile = SampleTile(self)
            self.grid.addWidget(tile, 1 + len(self.tiles) // self.COLUMNS, len(self.tiles) % self.COLUMNS)
            self.tiles.append(tile)
        for tile, sample in zip(self.tiles, event.samples):
            tile.show_sample(sample, event.classes)
            tile.show()
        for tile in self.tiles[len(event.samples):]:
            tile.hide()

    def clear(self) -> None:
        for tile in self.tiles:
            tile.hide()
        self.placeholder.show()
        self.epoch = 0

    def shown_count(self) -> int:
        return sum(1 for tile in self.tiles if tile.isVisibleTo(self))
