"""The Data step's thumbnail browser: the images of one class (or all) and split, and fixing a wrongly
labelled photo in place: double-click shows it larger, right-click moves the selected images to another
class folder, excludes them (into ``_excluded``) or shows their folder. Moves and excludes go through the
session's DataFixer, so Edit > Undo takes them back and the rescan that follows updates the counts."""

from __future__ import annotations

from collections import Counter

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QMenu, QVBoxLayout, QWidget

from tl_studio.gui.choice_box import offer_splits
from tl_studio.gui.image_view import ImagePreview
from tl_studio.gui.thumbnails import ThumbnailModel, thumbnail_view

ALL = "__all__"  # the class box's and split filter's "all" entry


class DataBrowser(QWidget):
    fixStarted = Signal()  # a move or an exclude begins: what the fixer says next must stay readable

    def __init__(self, session, tasks, parent=None):
        super().__init__(parent)
        self.session, self.tasks = session, tasks  # tasks: the page's TaskRunner (the larger view decodes there)
        self.class_box = QComboBox()
        self.class_box.currentIndexChanged.connect(self.show_class)
        self.split_filter = QComboBox()
        # "val" as the thumbnails' captions and the chart say it
        for value, text in ((ALL, "all splits"), ("train", "train"), ("val", "val"), ("test", "test")):
            self.split_filter.addItem(text, value)
        # the class counts are those of the split shown ("All classes (245)" stood over 28 test images)
        self.split_filter.currentIndexChanged.connect(lambda _: self.fill_classes(self.session.scan))
        self.thumbnails = ThumbnailModel(self)
        self.thumbnail_view = thumbnail_view(self.thumbnails)
        self.thumbnail_view.setObjectName("thumbnailView")
        self.thumbnail_view.setSelectionMode(QAbstractItemView.ExtendedSelection)  # fix several labels at once
        self.thumbnail_view.setContextMenuPolicy(Qt.CustomContextMenu)
        self.thumbnail_view.customContextMenuRequested.connect(self._thumbnail_menu_requested)
        # "activated" is the platform's open gesture (double-click, or Enter); doubleClicked too opened two
        self.thumbnail_view.activated.connect(self.open_image)
        # widget-scoped, as in the Evaluate step's galleries: Delete elsewhere must not exclude images
        QShortcut(QKeySequence.Delete, self.thumbnail_view, context=Qt.WidgetShortcut,
                  activated=lambda: self.exclude_images(self.selected_image_paths()))
        self.image_hint = QLabel("Double-click an image to see it larger; right-click to move it to another class "
                                 "or exclude it (Edit > Undo takes it back).")
        self.image_hint.setWordWrap(True)
        self.image_hint.setStyleSheet("QLabel { color: palette(placeholder-text); }")
        self._shown_labels: list[int] = []  # the class of each thumbnail shown, row by row
        self._shown: tuple | None = None  # (class, split, folder) shown in the browser
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Class"))
        row.addWidget(self.class_box, 1)
        row.addWidget(self.split_filter)
        layout.addLayout(row)
        layout.addWidget(self.thumbnail_view, 1)
        layout.addWidget(self.image_hint)

    def fill_classes(self, scan) -> None:
        if scan is None:
            return
        another_folder = self._shown is not None and self._shown[2] != str(scan.root)
        if another_folder:  # a class picked in the folder before is a number here: another class, or none
            self.split_filter.blockSignals(True)
            self.split_filter.setCurrentIndex(self.split_filter.findData(ALL))
            self.split_filter.blockSignals(False)
        self._offer_splits(scan)
        split = self.split_filter.currentData()
        shown = [record for record in scan.records if split == ALL or record.split == split]
        totals = Counter(record.label for record in shown)
        current = ALL if another_folder else self.class_box.currentData()
        self.class_box.blockSignals(True)
        self.class_box.clear()
        self.class_box.addItem(f"All classes ({len(shown)})", ALL)
        for label, name in enumerate(scan.classes):
            self.class_box.addItem(f"{name} ({totals[label]})", label)
        index = self.class_box.findData(current)
        self.class_box.setCurrentIndex(index if index >= 0 else 0)
        self.class_box.blockSignals(False)
        self.show_class()

    def _offer_splits(self, scan) -> None:
        """Splits the data set has no image in are greyed out; one chosen for the folder shown before goes back
        to all splits (a "test" filter carried to a folder without a test split showed an empty grid)."""
        present = {record.split for record in scan.records}
        self.split_filter.blockSignals(True)
        offer_splits(self.split_filter, present.__contains__, ALL)
        self.split_filter.blockSignals(False)

    def show_class(self) -> None:
        scan = self.session.scan
        if scan is None:
            return
        label, split = self.class_box.currentData(), self.split_filter.currentData()
        records = [r for r in scan.records if (label == ALL or r.label == label) and (split == ALL or r.split == split)]
        captions = [f"{scan.classes[r.label]} · {r.split}" if label == ALL else Path(r.path).name for r in records]
        # After a move the same class is shown again: keep the place the user was sorting at, not the top.
        shown = (label, split, str(scan.root))
        keep = self.thumbnail_view.verticalScrollBar().value() if shown == self._shown else 0
        self._shown = shown
        self._shown_labels = [r.label for r in records]
        self.thumbnails.set_paths([r.path for r in records], captions)
        if keep:
            self.thumbnail_view.doItemsLayout()  # the batched layout would leave the scroll range short
            self.thumbnail_view.verticalScrollBar().setValue(keep)

    # ---- fixing labels in the thumbnail browser ------------------------------------------------------
    def selected_image_paths(self) -> list[str]:
        rows = sorted(index.row() for index in self.thumbnail_view.selectionModel().selectedIndexes())
        return [self.thumbnails.paths[row] for row in rows if row < len(self.thumbnails.paths)]

    def _thumbnail_menu_requested(self, position: QPoint) -> None:
        menu = self.thumbnail_menu(self.thumbnail_view.indexAt(position))
        if menu is not None:
            menu.exec(self.thumbnail_view.viewport().mapToGlobal(position))
            menu.deleteLater()

    def thumbnail_menu(self, index: QModelIndex) -> QMenu | None:
        """The right-click menu of the thumbnail at ``index``, acting on every selected thumbnail. A
        right-click on an image outside the selection selects that image alone first, as file managers do,
        so the menu never acts on images the user is not pointing at."""
        scan = self.session.scan
        if scan is None or not index.isValid():
            return None
        selection = self.thumbnail_view.selectionModel()
        if not selection.isSelected(index):
            selection.select(index, QItemSelectionModel.ClearAndSelect)
        selection.setCurrentIndex(index, QItemSelectionModel.NoUpdate)
        paths = self.selected_image_paths()
        rows = sorted(i.row() for i in selection.selectedIndexes())
        labels = {self._shown_labels[row] for row in rows if row < len(self._shown_labels)}
        many = f" {len(paths)} images" if len(paths) > 1 else ""
        menu = QMenu(self)
        menu.setObjectName("thumbnailMenu")
        move_menu = menu.addMenu(f"Move{many} to class")
        for label, name in enumerate(scan.classes):
            if labels == {label}:
                continue  # where they already are
            move_menu.addAction(_menu_text(name), lambda n=name: self.move_images(paths, n))
        move_menu.setEnabled(not move_menu.isEmpty())
        exclude = menu.addAction(f"Exclude{many} from the data set", lambda: self.exclude_images(paths))
        exclude.setShortcut(QKeySequence.Delete)  # shown in the menu; the view's own shortcut does it
        menu.addSeparator()
        menu.addAction("Show in folder", lambda: self.show_in_folder(self.thumbnails.paths[index.row()]))
        menu.addSeparator()
        menu.addAction("View larger", lambda: self.open_image(index))
        return menu

    def move_images(self, paths: list[str], class_name: str) -> None:
        """Into ``class_name``'s folder (within its split folder when the data set has train/ and val/),
        under a free name; an image already in that class stays. Undoable; the rescan updates the counts."""
        scan = self.session.scan
        if scan is None or not paths:
            return
        label = {str(r.path): r.label for r in scan.records}
        target = list(scan.classes).index(class_name) if class_name in scan.classes else None
        to_move = [p for p in paths if label.get(p) != target]
        if to_move:
            self.fixStarted.emit()
            self.session.fixer.move(to_move, class_name, scan, errors_in_status=True)

    def exclude_images(self, paths: list[str]) -> None:
        """Out of the class folders into _excluded, as the Problems tab does (the same undo history)."""
        if paths and self.session.scan is not None:
            self.fixStarted.emit()
            self.session.fixer.exclude(paths, self.session.scan, errors_in_status=True)

    def show_in_folder(self, path: str) -> None:
        folder = Path(path).parent
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            # no file manager (a bare desktop, a remote session): the click must not just do nothing
            self.session.say(f"No file manager could open {folder}; the file is {Path(path).name} there.")

    def open_image(self, index: QModelIndex) -> ImagePreview | None:
        """The larger view of the image at ``index`` (not modal: several can stay open)."""
        scan = self.session.scan
        if scan is None or not index.isValid() or index.row() >= len(self._shown_labels):
            return None
        path = self.thumbnails.paths[index.row()]
        record = next((r for r in scan.records if str(r.path) == path), None)
        where = f"{scan.classes[record.label]} · {record.split}" if record is not None else ""
        preview = ImagePreview(path, where, self.tasks, self)
        preview.show()
        return preview

    def shutdown(self) -> None:
        self.thumbnails.shutdown()


def _menu_text(name: str) -> str:
    """A class name as a menu item shows it: a lone & would be taken as a keyboard accelerator."""
    return name.replace("&", "&&")
