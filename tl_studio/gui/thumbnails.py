"""A thumbnail browser that stays smooth on tens of thousands of images.

``ThumbnailModel`` is a list model over image paths. A view only asks for the rows it shows; the first
request for a row queues a decode on a thread pool (Pillow's JPEG draft mode decodes at a fraction of
the size), and the finished thumbnail comes back as bytes to the GUI thread, where the QPixmap is made
and cached (least recently used first out). Nothing decodes images up front.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QRunnable, QSize, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QListView

from tl_studio.gui.literal_text import as_written

THUMB_PX = 96
SPACING_PX = 4
# Every item is this size, wider than its thumbnail, so that a caption like "ants → bees 100%" or
# "cardboard · train" shows whole; longer ones are elided in the middle, with the full text as the
# tooltip. (With uniform item sizes the view would otherwise size every item like one of them, and
# cut every longer caption to that item's width.)
ITEM_SIZE = QSize(THUMB_PX + 22, THUMB_PX + 22)  # no wider than needed: rows keep as many images
CACHE_LIMIT = 3000  # pixmaps kept (about 100 MB at 96 px)


def decode_thumbnail(path: str, size: int = THUMB_PX) -> tuple[int, int, bytes] | None:
    """(width, height, RGB bytes) of a thumbnail, or None when the file cannot be read."""
    from tl_studio.core.images import load_rgb

    try:
        # the decode training uses, so a tile shows what the model sees: a 16-bit PNG scaled (a plain
        # convert("RGB") showed it white), transparency on white (it showed pink); a JPEG is decoded
        # at a reduced scale, as with draft()
        rgb = load_rgb(path, min_side=size * 2)
        rgb.thumbnail((size, size))
        return rgb.width, rgb.height, rgb.tobytes()
    except Exception:  # any unreadable file: a grey tile instead (the scan report names the reason)
        return None


class _Signals(QObject):
    loaded = Signal(int, str, object)  # generation, path, (w, h, bytes) | None


class _DecodeJob(QRunnable):
    def __init__(self, generation: int, path: str, signals: _Signals):
        super().__init__()
        self.generation, self.path, self.signals = generation, path, signals

    def run(self) -> None:
        self.signals.loaded.emit(self.generation, self.path, decode_thumbnail(self.path))


class ThumbnailModel(QAbstractListModel):
    PathRole = Qt.UserRole + 1

    def __init__(self, parent=None):
        super().__init__(parent)
        self.paths: list[str] = []
        self.captions: list[str] = []
        self._rows: dict[str, int] = {}
        self._cache: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: set[str] = set()
        self._generation = 0
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self._placeholder = QPixmap(THUMB_PX, THUMB_PX)
        self._placeholder.fill(QColor(128, 128, 128, 60))
        self.item_size = ITEM_SIZE  # thumbnail_view sets it with the view's grid

    def set_paths(self, paths: list, captions: list[str] | None = None) -> None:
        self.beginResetModel()
        self._generation += 1  # results of decodes queued for the old list are ignored
        self.pool.clear()
        self._pending.clear()
        self.paths = [str(p) for p in paths]
        self.captions = captions or [Path(p).name for p in self.paths]
        self._rows = {p: i for i, p in enumerate(self.paths)}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.paths)

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        path = self.paths[index.row()]
        if role == Qt.DecorationRole:
            return self._pixmap(path)
        if role == Qt.DisplayRole:
            return self.captions[index.row()]
        if role == Qt.ToolTipRole:  # the full caption (the view elides it in the middle) and the file
            caption = self.captions[index.row()]
            return as_written(  # tooltips guess markup; class and file names are the user's
                path if caption == Path(path).name else f"{caption}\n{path}")
        if role == self.PathRole:
            return path
        if role == Qt.SizeHintRole:
            return self.item_size
        return None

    def _pixmap(self, path: str) -> QPixmap:
        pixmap = self._cache.get(path)
        if pixmap is not None:
            self._cache.move_to_end(path)
            return pixmap
        if path not in self._pending:
            self._pending.add(path)
            self.pool.start(_DecodeJob(self._generation, path, self._signals))
        return self._placeholder

    @Slot(int, str, object)
    def _on_loaded(self, generation: int, path: str, result) -> None:
        self._pending.discard(path)
        if generation != self._generation:
            return
        if result is None:
            pixmap = QPixmap(THUMB_PX, THUMB_PX)
            pixmap.fill(QColor(200, 60, 60, 90))
        else:
            width, height, data = result
            pixmap = _centred_in_square(QImage(data, width, height, 3 * width, QImage.Format_RGB888))
        self._cache[path] = pixmap
        while len(self._cache) > CACHE_LIMIT:
            self._cache.popitem(last=False)
        row = self._rows.get(path)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.DecorationRole])

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(5000)


def thumbnail_view(model: ThumbnailModel, parent=None, item_size: QSize = ITEM_SIZE) -> QListView:
    """A grid of ``model``'s thumbnails, every item ``item_size`` (room for a thumbnail and its caption)."""
    view = QListView(parent)
    view.setViewMode(QListView.IconMode)
    view.setResizeMode(QListView.Adjust)
    view.setMovement(QListView.Static)
    view.setUniformItemSizes(True)  # lets the view lay out 20,000 items without asking each one
    view.setLayoutMode(QListView.Batched)
    view.setIconSize(QSize(THUMB_PX, THUMB_PX))
    model.item_size = item_size
    view.setGridSize(item_size + QSize(2 * SPACING_PX, 2 * SPACING_PX))
    view.setSpacing(SPACING_PX)
    view.setWordWrap(False)
    view.setTextElideMode(Qt.ElideMiddle)
    view.setModel(model)
    return view


def _centred_in_square(image: QImage) -> QPixmap:
    """Every thumbnail the same square size: the view lays items out from the first one's size
    (uniform sizes, for speed), so a portrait image taller than that one would cover its caption."""
    pixmap = QPixmap(THUMB_PX, THUMB_PX)
    pixmap.fill(Qt.transparent)
    painter = QPainter(pixmap)
    painter.drawImage((THUMB_PX - image.width()) // 2, (THUMB_PX - image.height()) // 2, image)
    painter.end()
    return pixmap
