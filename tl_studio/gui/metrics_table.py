"""Per-class precision, recall, F1 and support in a sortable table, with the overall accuracy and
macro-F1, copied to the clipboard or saved as CSV."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableView,
                               QVBoxLayout, QWidget)

from tl_studio.core.wording import counted
from tl_studio.gui.csv_files import ask_and_save_csv, save_text
from tl_studio.gui.theme import BAD

SORT_ROLE = Qt.UserRole + 1
COLUMNS = ("Class", "Precision", "Recall", "F1", "Support")
NONE = "—"  # a figure that has no meaning for the row
WEAK_F1 = 0.7  # F1 below this is shown in red: the classes to look at first
COPIED_MS = 2000  # how long Copy as CSV says "Copied"


def _number_item(value: float, text: str) -> QStandardItem:
    item = QStandardItem(text)
    item.setData(value, SORT_ROLE)
    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
    return item


class MetricsTable(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.evaluation = None
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.model.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setObjectName("metricsTable")
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        for column in range(1, len(COLUMNS)):  # "0.944" needs a third of the default 100 px: all five fit
            self.table.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeToContents)
        # never narrower than a figure: the F1 column was sized to its header (41 px, 1 px short of "0.958"
        # with its margins) when the rows came in while the step was hidden, and showed "0.9…"
        self.table.horizontalHeader().setMinimumSectionSize(self.table.fontMetrics().horizontalAdvance("0.000") + 16)
        self.overall = QLabel()
        self.overall.setWordWrap(True)  # unwrapped it held the Evaluate step, and so the window, 40 px wider
        self.copy_button = QPushButton("Copy as CSV")
        self.copy_button.clicked.connect(self.copy)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.choose_export_file)
        buttons = QHBoxLayout()
        buttons.addWidget(self.overall, 1)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.set_evaluation(None)

    def set_evaluation(self, evaluation) -> None:
        self.evaluation = evaluation
        self.model.removeRows(0, self.model.rowCount())
        self.copy_button.setEnabled(evaluation is not None)
        self.export_button.setEnabled(evaluation is not None)
        if evaluation is None:
            self.overall.setText("")
            return
        for metrics in evaluation.per_class():
            name = QStandardItem(metrics.name)
            name.setData(metrics.name.casefold(), SORT_ROLE)
            # a class no image has: no recall or F1 to speak of ("0.000" read as a class the model misses);
            # a class nothing was answered as: no precision
            precision = f"{metrics.precision:.3f}" if metrics.predicted else NONE
            row = [name, _number_item(metrics.precision, precision)] + [
                _number_item(v, f"{v:.3f}" if metrics.support else NONE) for v in (metrics.recall, metrics.f1)]
            row.append(_number_item(metrics.support, str(metrics.support)))
            if metrics.support and metrics.f1 < WEAK_F1:
                row[3].setForeground(BAD)
            self.model.appendRow(row)
        note = f" {html.escape(left_out)}" if (left_out := evaluation.macro_f1_note()) else ""
        # a share as the summary over the matrix gives it (96.1%, not 0.961 beside it)
        self.overall.setText(f"Accuracy <b>{evaluation.accuracy:.1%}</b> · macro-F1 <b>{evaluation.macro_f1:.3f}</b>"
                             f"{note} · {counted(len(evaluation.paths), 'image')}")
        self.table.sortByColumn(-1, Qt.AscendingOrder)  # the model's class order until the user sorts

    def csv_text(self) -> str:
        return self.evaluation.metrics_csv() if self.evaluation is not None else ""

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.csv_text())
        # nothing else shows that it worked: the button says so for a moment
        self.copy_button.setText("Copied")
        QTimer.singleShot(COPIED_MS, self.copy_button, lambda: self.copy_button.setText("Copy as CSV"))

    def choose_export_file(self) -> None:
        ask_and_save_csv(self, "Export per-class metrics", "metrics.csv", self.csv_text)

    def export(self, path: str) -> None:
        save_text(self, path, self.csv_text())
