"""The sample predictions grid: validation thumbnails with true label, prediction and confidence,
framed green (right) or red (wrong), refreshed every epoch. The grid reflows to the width it is given
and its scroll area scrolls it by whole rows."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from tl_studio.gui.literal_text import as_written
from tl_studio.gui.theme import BAD, GOOD

THUMBNAIL_PX = 112  # the engine's thumbnails (core/samples.py): shown whole where the height allows
SMALLEST_PX = 64  # smaller, a thumbnail says little: below one row of these, the rows scroll instead


def pixmap_from_array(array) -> QPixmap:
    """H x W x 3 uint8 -> QPixmap (made in the GUI thread, as Qt requires)."""
    height, width, _ = array.shape
    image = QImage(array.tobytes(), width, height, 3 * width, QImage.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class SampleTile(QFrame):
    def __init__(self, parent=None, thumbnail_px: int = THUMBNAIL_PX):
        super().__init__(parent)
        self.setFrameShape(QFrame.Box)
        self.setLineWidth(3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.image = QLabel(alignment=Qt.AlignCenter)
        self.caption = QLabel(alignment=Qt.AlignCenter)
        self.caption.setWordWrap(True)
        layout.addWidget(self.image, 0, Qt.AlignHCenter)
        layout.addWidget(self.caption)
        self.correct: bool | None = None
        self.pixmap: QPixmap | None = None  # as the run sent it; shown scaled down to the tile's size
        self.set_thumbnail_size(thumbnail_px)

    def set_thumbnail_size(self, px: int) -> None:
        self.thumbnail_px = px
        self.image.setFixedSize(px, px)
        if self.pixmap is not None:
            self._show_pixmap()

    def _show_pixmap(self) -> None:
        pixmap, px = self.pixmap, self.thumbnail_px
        if pixmap.width() > px or pixmap.height() > px:
            pixmap = pixmap.scaled(px, px, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        self.image.setPixmap(pixmap)

    def show_sample(self, sample, classes) -> None:
        self.pixmap = pixmap_from_array(sample.thumbnail)
        self._show_pixmap()
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

    def chrome_height(self) -> int:
        """The tile's height less its thumbnail: the caption, margins and frame."""
        return self.sizeHint().height() - self.thumbnail_px


class SampleGrid(QWidget):
    """As many tiles to a row as the width holds, thumbnails as large as one row's height allows
    (fit, called by SampleScroll): with four fixed columns of 112 px thumbnails the grid at 1000 x 620
    was wider than its place and taller than the height left under the curves, and showed the tops of
    three images without their labels."""

    tilesChanged = Signal()  # tiles were added or shown: the scroll area fits the grid again

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("samplePredictions")
        self.grid = QGridLayout(self)
        self.grid.setSpacing(6)
        self.tiles: list[SampleTile] = []
        self.columns = 4
        self.thumbnail_px = THUMBNAIL_PX
        self.placeholder = QLabel("Sample predictions on validation images appear here as each epoch ends.")
        self.placeholder.setWordWrap(True)
        self.grid.addWidget(self.placeholder, 0, 0, 1, -1)
        probe = SampleTile()  # a caption of two short lines, for the size of a row before any sample came
        probe.caption.setText("<b>a</b> 0%<br><small>true: a</small>")
        self.nominal_chrome = probe.chrome_height()
        probe.deleteLater()
        self.epoch = 0

    def show_predictions(self, event) -> None:
        self.placeholder.hide()
        self.epoch = event.epoch
        while len(self.tiles) < len(event.samples):
            self.tiles.append(SampleTile(self, self.thumbnail_px))
        for tile, sample in zip(self.tiles, event.samples):
            tile.show_sample(sample, event.classes)
            tile.show()
        for tile in self.tiles[len(event.samples):]:
            tile.hide()
        self._place()
        self.tilesChanged.emit()

    def clear(self) -> None:
        for tile in self.tiles:
            tile.hide()
        self.placeholder.show()
        self.epoch = 0

    def shown_count(self) -> int:
        return sum(1 for tile in self.tiles if tile.isVisibleTo(self))

    # ---- fitting the tiles to the space -------------------------------------------------------------
    def _shown_tiles(self) -> list[SampleTile]:
        return [tile for tile in self.tiles if tile.isVisibleTo(self)]

    def _chrome(self) -> int:
        return max([self.nominal_chrome] + [tile.chrome_height() for tile in self._shown_tiles()])

    def _margins(self) -> tuple[int, int]:
        margins = self.grid.contentsMargins()
        return margins.left() + margins.right(), margins.top() + margins.bottom()

    def row_height(self, px: int | None = None) -> int:
        """One row of tiles with thumbnails of ``px`` (the current size if not given)."""
        return (self.thumbnail_px if px is None else px) + self._chrome()

    def minimum_height(self) -> int:
        """One whole row of the smallest thumbnails, with their captions."""
        return self.row_height(SMALLEST_PX) + self._margins()[1]

    def fit(self, size: QSize) -> None:
        """Thumbnails as large as the height holds one whole row of (between SMALLEST_PX and
        THUMBNAIL_PX), then as many tiles to a row as the width holds."""
        horizontal, vertical = self._margins()
        px = max(SMALLEST_PX, min(THUMBNAIL_PX, size.height() - vertical - self._chrome()))
        if px != self.thumbnail_px:
            self.thumbnail_px = px
            for tile in self.tiles:
                tile.set_thumbnail_size(px)
        shown = self._shown_tiles()
        # a caption's longest word can make a tile wider than its thumbnail
        tile_width = max([px + 2 * 7] + [tile.minimumSizeHint().width() for tile in shown])
        spacing = self.grid.horizontalSpacing()
        columns = max(1, (size.width() - horizontal + spacing) // (tile_width + spacing))
        if columns != self.columns:
            self.columns = columns
            self._place()

    def _place(self) -> None:
        for index, tile in enumerate(self.tiles):
            self.grid.removeWidget(tile)
            self.grid.addWidget(tile, 1 + index // self.columns, index % self.columns)
        for column in range(self.grid.columnCount()):  # the columns of a wider fit no longer take a share
            self.grid.setColumnStretch(column, 1 if column < self.columns else 0)
        rows = 1 + (len(self.tiles) + self.columns - 1) // self.columns
        for row in range(self.grid.rowCount()):  # the rows keep their height at the top; the rest is left empty
            self.grid.setRowStretch(row, 1 if row >= rows else 0)
        self.grid.setRowStretch(rows, 1)


class SampleScroll(QScrollArea):
    """The sample grid's scroll area: fits the grid to its viewport (SampleGrid.fit), never scrolls
    sideways, is never shorter than one whole row, and scrolls by rows: a wheel step or an arrow moves
    one row, and a row is never left half shown by a scroll."""

    def __init__(self, grid: SampleGrid, parent=None):
        super().__init__(parent)
        self.grid = grid
        self.setObjectName("samplePredictionsScroll")
        self.setWidget(grid)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # the grid reflows to the width instead
        grid.tilesChanged.connect(self._fit)
        self._wheel = 0  # wheel angle not yet turned into a row (touchpads send small steps)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(hint.width(), self.grid.minimum_height() + 2 * self.frameWidth())

    def viewportEvent(self, event) -> bool:
        if event.type() == QEvent.Resize:
            self._fit()
        return super().viewportEvent(event)

    def _fit(self) -> None:
        self.grid.fit(self.viewport().size())
        self.verticalScrollBar().setSingleStep(self.row_pitch())

    def row_pitch(self) -> int:
        return self.grid.row_height() + self.grid.grid.verticalSpacing()

    def wheelEvent(self, event) -> None:
        self._wheel += event.angleDelta().y()
        rows = int(self._wheel / 120)
        if rows:
            self._wheel -= rows * 120
            bar = self.verticalScrollBar()
            top_row = round(bar.value() / self.row_pitch())
            bar.setValue((top_row - rows) * self.row_pitch())
        event.accept()
