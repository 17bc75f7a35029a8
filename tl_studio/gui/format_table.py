"""The Export step's format report as a table: for each format, file size, latency at batch 1, images/s at
batch 32, validation accuracy and top-1 agreement with the app (core/format_report.py)."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from tl_studio.core.wording import MB
from tl_studio.gui.literal_text import as_written

COLUMNS = ("Format", "Size (MB)", "Latency (ms, batch 1)", "Images/s (batch 32)", "Val accuracy", "Agreement")
FORMAT_NAMES = {"pt2": "PyTorch program (.pt2)", "onnx": "ONNX", "onnx-int8": "int8 ONNX",
                "torchscript": "TorchScript (.ts)"}


def row_texts(row) -> list[str]:
    """One FormatFigures as the table's cells; a format that could not be measured shows why instead."""
    name = FORMAT_NAMES.get(row.format, row.format)
    if row.error:
        return [name, row.error]
    return [name, f"{row.file_bytes / MB:.1f}", _number(row.latency_ms, "{:.1f}"),
            _number(row.images_per_s, "{:.0f}"), _number(row.val_accuracy, "{:.1%}"), _number(row.agreement, "{:.1%}")]


def _number(value: float, pattern: str) -> str:
    return "—" if value is None or math.isnan(value) else pattern.format(value)


class FormatTable(QTableWidget):
    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("formatTable")
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        # the figures share the width evenly: a stretched last column alone would push its numbers far right
        header.setSectionResizeMode(QHeaderView.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.setMinimumHeight(150)

    def show_report(self, report) -> None:
        """``report``: a FormatReport, or None to clear."""
        self.clearSpans()
        rows = report.rows if report is not None else ()
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            texts = row_texts(row)
            for c, text in enumerate(texts):
                item = QTableWidgetItem(text)
                if c > 0 and not row.error:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.setItem(r, c, item)
            if row.error:  # the reason, across the figures' columns
                self.setSpan(r, 1, 1, len(COLUMNS) - 1)
                self.item(r, 1).setToolTip(as_written(row.error))  # it may quote a path

    def cell_text(self, row: int, column: int) -> str:
        item = self.item(row, column)
        return item.text() if item is not None else ""
