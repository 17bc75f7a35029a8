"""A gallery of evaluated images with the tools to fix the data: move the selected images to another
class folder or out of the dataset (``_excluded``), and undo. The gallery only asks; the page's
data fixer moves the files."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from tl_studio.gui.literal_text import as_written
from tl_studio.gui.thumbnails import ITEM_SIZE, ThumbnailModel, thumbnail_view


@dataclass(frozen=True)
class GalleryItem:
    index: int  # into the evaluation
    path: str  # where the image is now
    caption: str
    tooltip: str
    suggested: str | None = None  # the class "Move to class" offers first (the prediction or suggestion)


class _GalleryModel(ThumbnailModel):
    """Thumbnails with a tooltip of our own (true label, prediction, confidence, path)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tooltips: list[str] = []

    def data(self, index, role=Qt.DisplayRole):
        if role == Qt.ToolTipRole and index.isValid():
            # the full caption first: the view elides long captions in the middle; as written, since
            # tooltips guess markup and the class and file names are the user's
            return as_written(f"{self.captions[index.row()]}\n{self.tooltips[index.row()]}")
        return super().data(index, role)


class Gallery(QWidget):
    openRequested = Signal(int)  # an evaluation index (double-click or Enter)
    moveRequested = Signal(list, str)  # evaluation indices, target class name
    excludeRequested = Signal(list)
    undoRequested = Signal()

    def __init__(self, placeholder: str, parent=None):
        super().__init__(parent)
        self.items: list[GalleryItem] = []
        self.title = QLabel(placeholder)
        self.title.setWordWrap(True)
        self.thumbnails = _GalleryModel(self)
        # room for two caption lines, the label and the prediction: on one line, "ants → bienen ä 63%" lost
        # the middle ("ants → …n ä 63%"), the very class names the gallery is about
        self.view = thumbnail_view(self.thumbnails, item_size=ITEM_SIZE + QSize(0, self.fontMetrics().lineSpacing()))
        self.view.setSelectionMode(QAbstractItemView.ExtendedSelection)
        # One viewer per double-click: "activated" is the platform's own open gesture (a double-click,
        # or a single click where the desktop says so, and Enter); doubleClicked as well opened two.
        self.view.activated.connect(lambda index: self._open(index.row()))
        self.view.selectionModel().selectionChanged.connect(self._update_buttons)
        self.view.selectionModel().selectionChanged.connect(self._suggest_class)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        layout.addLayout(self._toolbar())
        self._update_buttons()

    def _toolbar(self) -> QHBoxLayout:
        self.class_box = QComboBox()
        self.class_box.setToolTip("The class folder to move the selected images to")
        self.move_button = QPushButton("Move to class")
        self.move_button.setToolTip("Move the selected images into this class's folder (nothing is deleted)")
        self.move_button.clicked.connect(lambda: self.moveRequested.emit(self.selected(), self.class_box.currentText()))
        self.exclude_button = QPushButton("Exclude")
        self.exclude_button.setToolTip("Move the selected images out of the dataset, into an _excluded folder "
                                       "beside the class folders (Delete)")
        self.exclude_button.clicked.connect(lambda: self.excludeRequested.emit(self.selected()))
        # Widget-scoped: several galleries live in one window, and a window-wide shortcut would be ambiguous.
        QShortcut(QKeySequence.Delete, self.view, activated=self.exclude_button.click, context=Qt.WidgetShortcut)
        # "Undo", not "Undo move": the history is the data set's, so the last change may be an exclude the
        # Data step made; its tooltip names it (evaluation_galleries._undo_available)
        self.undo_button = QPushButton("Undo")
        # Ctrl+Z itself is Edit > Undo in the main window, so it works wherever the focus is.
        self.undo_button.setToolTip("Move the last moved image back (Ctrl+Z, Edit > Undo)")
        self.undo_button.clicked.connect(self.undoRequested)
        row = QHBoxLayout()
        row.addWidget(self.move_button)
        row.addWidget(self.class_box, 1)
        row.addWidget(self.exclude_button)
        row.addWidget(self.undo_button)
        return row

    def set_classes(self, classes: list[str]) -> None:
        current = self.class_box.currentText()
        self.class_box.clear()
        self.class_box.addItems(classes)
        if current in classes:
            self.class_box.setCurrentText(current)

    def set_items(self, items: list[GalleryItem], title: str | None = None) -> None:
        """Shows these images; the selection is kept for images still shown. ``title`` may be rich text
        (with any names in it escaped)."""
        selected = set(self.selected())
        self.items = list(items)
        self.thumbnails.tooltips = [item.tooltip for item in self.items]
        self.thumbnails.set_paths([item.path for item in self.items], [item.caption for item in self.items])
        selection = self.view.selectionModel()
        for row, item in enumerate(self.items):
            if item.index in selected:
                selection.select(self.thumbnails.index(row), QItemSelectionModel.Select)
        if title is not None:
            self.title.setText(title)
        self._update_buttons()

    def _open(self, row: int) -> None:
        if 0 <= row < len(self.items):
            self.openRequested.emit(self.items[row].index)

    def _suggest_class(self, *_args) -> None:
        """Selecting an image offers its predicted (or suggested) class as the target: the likely fix."""
        rows = sorted(index.row() for index in self.view.selectionModel().selectedIndexes())
        if rows and rows[0] < len(self.items):
            suggested = self.items[rows[0]].suggested
            if suggested and self.class_box.findText(suggested) >= 0:
                self.class_box.setCurrentText(suggested)

    def selected(self) -> list[int]:
        rows = sorted(index.row() for index in self.view.selectionModel().selectedIndexes())
        return [self.items[row].index for row in rows if row < len(self.items)]

    def select_rows(self, rows: list[int]) -> None:
        selection = self.view.selectionModel()
        selection.clearSelection()
        for row in rows:
            selection.select(self.thumbnails.index(row), QItemSelectionModel.Select)

    def set_undo_enabled(self, enabled: bool, tooltip: str | None = None) -> None:
        self.undo_button.setEnabled(enabled)
        if tooltip:
            self.undo_button.setToolTip(as_written(tooltip))  # it names the last moved file

    def _update_buttons(self, *_args) -> None:
        has_selection = bool(self.view.selectionModel().selectedIndexes())
        self.move_button.setEnabled(has_selection and self.class_box.count() > 0)
        self.exclude_button.setEnabled(has_selection)

    def shutdown(self) -> None:
        self.thumbnails.shutdown()
