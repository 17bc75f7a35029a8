"""The Data step's Problems tab: every file the scan cannot use, with its reason, a preview of the
selected file (or why there is none), and what to do about it: open the containing folder, or
exclude the file from the data set (moved into ``_excluded``, never deleted, undoable)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImageReader, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QHeaderView, QLabel, QPushButton, QSplitter, QTableView, QVBoxLayout,
                               QWidget)

from tl_studio.gui.literal_text import as_written

PREVIEW_PX = 220
FILE_COLUMN_MAX_PX = 260  # one long file name must not push the Problem column out of sight
ROWS_FITTED_TO_TEXT = 500  # rows up to this many grow to their reason's lines; more keep one height each


def preview_pixmap(path: str) -> QPixmap | None:
    """A small preview, or None when Qt cannot decode the file (which is often why it is listed)."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and size.width() > 0 and size.height() > 0:
        reader.setScaledSize(size.scaled(QSize(PREVIEW_PX, PREVIEW_PX), Qt.KeepAspectRatio))
    image = reader.read()
    return None if image.isNull() else QPixmap.fromImage(image)


class ProblemsView(QWidget):
    excludeRequested = Signal(list)  # paths
    message = Signal(str)  # one sentence for the status line

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = QStandardItemModel(0, 2, self)
        self.model.setHorizontalHeaderLabels(["File", "Problem"])
        self.table = QTableView()
        self.table.setObjectName("problemsView")
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableView.NoEditTriggers)
        self.table.setSelectionBehavior(QTableView.SelectRows)
        self.table.setTextElideMode(Qt.ElideMiddle)  # a long name keeps its folder and its end; whole in the tooltip
        # The reasons wrap onto as many lines as they need: two lines with their middle cut out ("the file ends
        # before the im…ta does") said nothing. The rows follow the Problem column's width: when the user drags
        # a column, and when the table is resized or first shown (the stretched column then changes without a
        # signal; rows fitted while the tab was hidden and narrow stayed three times too tall). A very long list
        # keeps one height per row: laying out every row's text is slow.
        self.table.setWordWrap(True)
        self.table.horizontalHeader().sectionResized.connect(lambda *_: self._fit_rows())
        self.table.viewport().installEventFilter(self)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.preview = QLabel("Select a file to see it here.")
        self.preview.setObjectName("problemPreview")
        self.preview.setAlignment(Qt.AlignCenter)
        self.preview.setWordWrap(True)
        self.preview.setTextFormat(Qt.PlainText)  # the reason names the user's files, never markup
        self.preview.setMinimumSize(PREVIEW_PX, PREVIEW_PX)
        self.open_folder_button = QPushButton("Open containing folder")
        self.open_folder_button.clicked.connect(self.open_containing_folder)
        self.exclude_button = QPushButton("Exclude from the data set")
        self.exclude_button.setToolTip("Move the selected files into an _excluded folder beside the class folders "
                                       "(nothing is deleted; Ctrl+Z or Edit > Undo moves it back)")
        self.exclude_button.clicked.connect(lambda: self.excludeRequested.emit(self.selected_paths()))
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.preview, 1)
        # one above the other: side by side they made the preview column so wide that the table (and its
        # Problem column) got half the room
        side_layout.addWidget(self.open_folder_button)
        side_layout.addWidget(self.exclude_button)
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(side)
        splitter.setSizes([480, 260])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._selection_changed()

    def set_problems(self, problems, root: Path | None = None) -> None:
        """``problems`` name their files as the scan does (relative to ``root`` or absolute)."""
        self.model.removeRows(0, self.model.rowCount())
        for problem in problems:
            full = str(Path(root, problem.path)) if root is not None else problem.path
            file_item = QStandardItem(problem.path)
            file_item.setData(full, Qt.UserRole)
            file_item.setToolTip(as_written(full))  # tooltips guess markup; a file may be named <b>x.jpg
            reason_item = QStandardItem(problem.reason)
            reason_item.setToolTip(as_written(problem.reason))
            self.model.appendRow([file_item, reason_item])
        self.table.resizeColumnToContents(0)
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), FILE_COLUMN_MAX_PX))
        self._fit_rows()
        self._selection_changed()

    def _fit_rows(self) -> None:
        if self.model.rowCount() <= ROWS_FITTED_TO_TEXT:
            self.table.resizeRowsToContents()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.table.viewport() and event.type() == QEvent.Resize:
            QTimer.singleShot(0, self._fit_rows)  # once the header has stretched the Problem column to the new width
        return super().eventFilter(watched, event)

    def selected_paths(self) -> list[str]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.model.item(row, 0).data(Qt.UserRole) for row in rows]

    def _selection_changed(self, *_args) -> None:
        paths = self.selected_paths()
        self.open_folder_button.setEnabled(len(paths) == 1)
        self.exclude_button.setEnabled(bool(paths) and all(Path(p).is_file() for p in paths))
        if len(paths) != 1:
            self.preview.setPixmap(QPixmap())
            self.preview.setText("Select a file to see it here." if not paths else f"{len(paths)} files selected.")
            return
        row = sorted({index.row() for index in self.table.selectionModel().selectedRows()})[0]
        reason = self.model.item(row, 1).text()
        pixmap = preview_pixmap(paths[0]) if Path(paths[0]).is_file() else None
        if pixmap is None:
            self.preview.setPixmap(QPixmap())
            self.preview.setText(f"No preview: {reason}")
        else:
            self.preview.setPixmap(pixmap)
        self.preview.setToolTip(as_written(f"{paths[0]}\n{reason}"))

    def open_containing_folder(self) -> None:
        paths = self.selected_paths()
        if not paths:
            return
        folder = Path(paths[0]).parent
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            # no file manager (a bare desktop, a remote session): the click must not just do nothing
            self.message.emit(f"No file manager could open {folder}; the file is {Path(paths[0]).name} there.")
