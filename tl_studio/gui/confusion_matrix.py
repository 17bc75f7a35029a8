"""The confusion matrix as a clickable heatmap: counts and row-normalised percentages in each cell,
rows = true class, columns = predicted class. Right answers (the diagonal) are shaded green, mistakes
red, by the share of the true class they hold, so the worst confusions stand out at a glance."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPalette, QPen
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHeaderView, QStyle, QStyledItemDelegate,
                               QStyleOptionViewItem, QTableView)

from tl_studio.core.wording import counted
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.theme import BAD, GOOD

# Cells grow with the space there is (few classes) and shrink to these (many classes, then it scrolls).
CELL_WIDTH = (64, 220)
CELL_HEIGHT = (42, 160)
# The height the matrix asks for at most: more classes than fit scroll, and the room below stays for the
# per-class metrics.
PREFERRED_HEIGHT = 520


def _blend(colour: QColor, strength: float) -> QColor:
    """``colour`` over white: 0 = white, 1 = the full colour."""
    strength = max(0.0, min(1.0, strength))
    mix = [round(255 + (c - 255) * strength) for c in (colour.red(), colour.green(), colour.blue())]
    return QColor(*mix)


def _strength(row: int, column: int, share: float) -> float:
    """How much colour a cell gets: any mistake is visible (a floor), the diagonal a little paler."""
    if row == column:
        return 0.85 * share
    return 0.2 + 1.6 * share if share > 0 else 0.0


class _CellDelegate(QStyledItemDelegate):
    """Paints the chosen cell with a frame instead of the selection colour, so its heat stays visible."""

    def paint(self, painter, option, index) -> None:
        selected = bool(option.state & QStyle.State_Selected)
        plain = QStyleOptionViewItem(option)
        plain.state &= ~QStyle.State_Selected
        plain.state &= ~QStyle.State_HasFocus
        super().paint(painter, plain, index)
        if selected:
            painter.save()
            painter.setPen(QPen(option.palette.color(QPalette.Highlight), 3))
            painter.drawRect(option.rect.adjusted(1, 1, -2, -2))
            painter.restore()


class ConfusionModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.classes: list[str] = []
        self.counts = np.zeros((0, 0), dtype=np.int64)
        self.shares = np.zeros((0, 0))

    def set_matrix(self, matrix: np.ndarray, classes: list[str]) -> None:
        self.beginResetModel()
        self.classes = list(classes)
        self.counts = np.asarray(matrix, dtype=np.int64)
        totals = self.counts.sum(axis=1, keepdims=True)
        self.shares = np.divide(self.counts, totals, out=np.zeros(self.counts.shape), where=totals > 0)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        count, share = int(self.counts[row, column]), float(self.shares[row, column])
        if role == Qt.DisplayRole:
            return f"{count}\n{share:.0%}" if count else "0"
        if role == Qt.BackgroundRole:
            return _blend(GOOD if row == column else BAD, _strength(row, column, share))
        if role == Qt.ForegroundRole:
            return QColor("white") if _strength(row, column, share) > 0.55 else QColor(30, 30, 30)
        if role == Qt.TextAlignmentRole:
            return int(Qt.AlignCenter)
        if role == Qt.ToolTipRole:
            truth, predicted = self.classes[row], self.classes[column]
            verb = "correctly predicted" if row == column else f"predicted as {predicted}"
            # as written: tooltips guess markup, and the class names are the model's
            return as_written(f"{counted(count, 'image')} of {truth} ({share:.1%}) {verb}. Click to see them.")
        return None

    def headerData(self, section: int, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and 0 <= section < len(self.classes):
            return self.classes[section]
        if role == Qt.ToolTipRole and 0 <= section < len(self.classes):
            kind = "true class" if orientation == Qt.Vertical else "predicted class"
            return as_written(f"{kind}: {self.classes[section]}")
        return None


class ConfusionMatrixView(QTableView):
    """Emits ``cellChosen(true_class, predicted_class)`` when a cell is clicked."""

    cellChosen = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("confusionMatrix")
        self.matrix_model = ConfusionModel(self)
        self.setModel(self.matrix_model)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setWordWrap(True)
        self.setCornerButtonEnabled(False)
        self.setItemDelegate(_CellDelegate(self))
        self.setFrameShape(QFrame.NoFrame)
        self.viewport().setBackgroundRole(QPalette.Window)
        for header in (self.horizontalHeader(), self.verticalHeader()):
            header.setSectionResizeMode(QHeaderView.Fixed)
            header.setMinimumSectionSize(8)
        self.horizontalHeader().setToolTip("Predicted class")
        self.verticalHeader().setToolTip("True class")
        font = QFont(self.font())
        font.setBold(True)
        self.horizontalHeader().setFont(font)
        self.verticalHeader().setFont(font)
        self.clicked.connect(lambda index: self.cellChosen.emit(index.row(), index.column()))

    def set_matrix(self, matrix: np.ndarray, classes: list[str]) -> None:
        self.matrix_model.set_matrix(matrix, classes)
        self.clearSelection()
        self.updateGeometry()  # the size hint follows the number of classes
        self._fit_cells()

    def sizeHint(self) -> QSize:
        """As tall as its classes' cells at full height (up to PREFERRED_HEIGHT), so a layout gives a
        small matrix no more than it fills."""
        hint = super().sizeHint()
        cells = max(1, len(self.matrix_model.classes)) * CELL_HEIGHT[1]
        height = self.horizontalHeader().sizeHint().height() + cells + 2 * self.frameWidth() + 4
        return QSize(hint.width(), min(height, PREFERRED_HEIGHT))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_cells()

    def _fit_cells(self) -> None:
        count = max(1, len(self.matrix_model.classes))
        width = (self.width() - self.verticalHeader().sizeHint().width() - 4) / count
        height = (self.height() - self.horizontalHeader().sizeHint().height() - 4) / count
        self.horizontalHeader().setDefaultSectionSize(int(min(max(width, CELL_WIDTH[0]), CELL_WIDTH[1])))
        self.verticalHeader().setDefaultSectionSize(int(min(max(height, CELL_HEIGHT[0]), CELL_HEIGHT[1])))

    def cell_text(self, row: int, column: int) -> str:
        return self.matrix_model.data(self.matrix_model.index(row, column))

    def choose_cell(self, row: int, column: int) -> None:
        """As if the user clicked the cell (keyboard users and tests)."""
        index = self.matrix_model.index(row, column)
        self.setCurrentIndex(index)
        self.cellChosen.emit(row, column)
