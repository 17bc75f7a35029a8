"""The run table: a model over RunSummary rows (core/run_history.py) and a proxy that sorts by the
values, not their text, and filters by any text in a row.

(Not a QStandardItemModel: with PySide6 6.12 on Python 3.11 every call of a Qt method that returns
nothing drops a reference to None, and a table of items is filled by tens of thousands of such calls.)

The model holds plain summaries; the page replaces or updates rows as run folders are read or change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QStyledItemDelegate

from tl_studio.core.run_folder import NO_MODEL_FILE_YET
from tl_studio.core.run_history import RunSummary, format_age
from tl_studio.core.wording import counted
from tl_studio.gui.literal_text import as_written

SORT_ROLE = int(Qt.UserRole) + 1
SEARCH_ROLE = int(Qt.UserRole) + 3  # every column's text of a row, for the filter
STATUS_COLOURS = {"running": "#1f77b4", "done": "#2ca02c", "stopped": "#b8860b", "failed": "#d62728"}


@dataclass(frozen=True)
class Column:
    title: str
    field: str  # the RunSummary attribute compared by "only columns that differ"
    text: Callable[[RunSummary], str]
    sort: Callable[[RunSummary], object]
    numeric: bool = False


def _pct(value) -> str:
    return f"{value:.1%}" if value is not None else "–"


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60:02d}s"


def _status(run: RunSummary) -> str:
    if run.status == "running":
        where = f" · {run.progress}" if run.progress else ""
        return f"running ({run.epochs_done}/{run.planned_epochs or '?'}{where})"
    if run.status not in ("failed", "stopped") or not run.reason:
        return run.status
    reason = run.reason
    if NO_MODEL_FILE_YET in reason:  # not the command the CLI was given
        reason = f"{reason.split(NO_MODEL_FILE_YET)[0]}{NO_MODEL_FILE_YET}Open writes it from the best epoch."
    # "Stopped after epoch 9 of 20. Best ..." says the state itself: "stopped: Stopped after" said it twice
    return reason if reason.lower().startswith(run.status) else f"{run.status}: {reason}"


# the Train step's names for them (the table said "onecycle" beside its "One-cycle"), short for the column
SCHEDULE_WORDS = {"onecycle": "One-cycle", "cosine": "Cosine", "fine-tune": "Two-phase"}


def freeze_words(value) -> str:
    """A freeze depth under the heading Freeze: "3" beside "all" read as a count of something unnamed."""
    value = str(value)
    if value.isdigit():
        return f"first {counted(int(value), 'stage')}"
    return {"all": "backbone", "none": "nothing"}.get(value, value)


def _number(value) -> float:
    """A sort key Qt compares as a number (in C++); an unknown value sorts below every known one."""
    return float("-inf") if value is None else float(value)


COLUMNS: tuple[Column, ...] = (
    Column("★", "starred", lambda r: "★" if r.starred else "", lambda r: int(r.starred)),
    Column("Name", "name", lambda r: r.name, lambda r: r.name.lower()),
    # the figures runs are compared by, before the settings: at 1000 px they were past the right edge
    Column("Val acc", "best_val_acc", lambda r: _pct(r.best_val_acc), lambda r: _number(r.best_val_acc), True),
    Column("Val loss", "best_val_loss", lambda r: f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "–",
           lambda r: _number(r.best_val_loss), True),
    Column("Status", "status", _status, lambda r: r.status),
    Column("Date", "created", lambda r: format_age(r.created), lambda r: r.created or 0.0),
    Column("Data set", "data_set", lambda r: r.data_set, lambda r: r.data_set.lower()),
    Column("Model", "model", lambda r: r.model, lambda r: r.model),
    Column("Freeze", "freeze", lambda r: freeze_words(r.freeze), lambda r: r.freeze),
    Column("Schedule", "schedule", lambda r: SCHEDULE_WORDS.get(r.schedule, r.schedule), lambda r: r.schedule),
    Column("LR", "lr", lambda r: f"{r.lr:.2g}" if r.lr is not None else "–", lambda r: _number(r.lr), True),
    Column("Epochs", "epochs_done", lambda r: f"{r.epochs_done}/{r.planned_epochs or '?'}",
           lambda r: r.epochs_done + r.planned_epochs / 1e6, True),
    Column("Train time", "train_seconds", lambda r: _duration(r.train_seconds),
           lambda r: _number(r.train_seconds), True),
    Column("Images/s", "images_per_s", lambda r: f"{r.images_per_s:.0f}" if r.images_per_s else "–",
           lambda r: _number(r.images_per_s), True),
    Column("Device", "device", lambda r: r.device, lambda r: r.device),
    Column("Note", "note", lambda r: r.note, lambda r: r.note.lower()),
)
NAME_COLUMN = 1
# Starting widths in pixels (the user can drag them); the last column (Note) takes what is left.
WIDTHS = {"starred": 26, "name": 250, "status": 130, "created": 118, "data_set": 80, "model": 130, "freeze": 96,
          "schedule": 76, "lr": 58, "epochs_done": 58, "best_val_acc": 64, "best_val_loss": 66, "train_seconds": 76,
          "images_per_s": 66, "device": 160}
NAME_WIDTH_MAX = 420  # the Name column grows to its longest name up to this (runs_page._fit_names)
STATUS_COLUMN = [column.field for column in COLUMNS].index("status")
# Always shown, even under "only columns that differ": without them a row cannot be told apart.
ALWAYS_SHOWN = {"starred", "name"}


class RunsModel(QAbstractTableModel):
    """RunSummary rows. Each row's cells (text, sort value, colours) are worked out once when the row
    is set, so ``data()``, which the view, the sort and the filter call thousands of times from
    C++, is a lookup."""

    PathRole = int(Qt.UserRole) + 2

    def __init__(self, parent=None):
        super().__init__(parent)
        self.runs: list[RunSummary] = []
        self._cells: list[list[dict]] = []
        self._rows: dict[str, int] = {}

    # ---- changing the rows ------------------------------------------------------------------------
    def clear(self) -> None:
        self.beginResetModel()
        self.runs, self._cells, self._rows = [], [], {}
        self.endResetModel()

    def add_runs(self, runs: list[RunSummary]) -> None:
        """New runs are appended; runs already shown are updated in place."""
        fresh = []
        for run in runs:
            if run.path in self._rows:
                self.update_run(run)
            else:
                fresh.append(run)
        if not fresh:
            return
        first = len(self.runs)
        self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
        for offset, run in enumerate(fresh):
            self._rows[run.path] = first + offset
            self.runs.append(run)
            self._cells.append(_cells(run))
        self.endInsertRows()

    def update_run(self, run: RunSummary) -> None:
        row = self._rows.get(run.path)
        if row is None:
            self.add_runs([run])
            return
        self.runs[row] = run
        self._cells[row] = _cells(run)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def remove_run(self, path: str) -> None:
        row = self._rows.get(path)
        if row is None:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self.runs[row]
        del self._cells[row]
        self._rows = {run.path: i for i, run in enumerate(self.runs)}
        self.endRemoveRows()

    def run_at(self, row: int) -> RunSummary:
        return self.runs[row]

    def run_for(self, path: str) -> RunSummary | None:
        row = self._rows.get(path)
        return None if row is None else self.runs[row]

    # ---- Qt's model interface ---------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.runs)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return COLUMNS[section].title
        if orientation == Qt.Horizontal and role == Qt.ToolTipRole and section == 0:
            return "Starred runs"
        return None

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        try:
            return self._cells[index.row()][index.column()].get(role)
        except IndexError:
            return None


# Looked up once: attribute access on Qt's enums costs microseconds, and a row has 16 cells.
_DISPLAY, _TOOLTIP, _ALIGN, _FOREGROUND = Qt.DisplayRole, Qt.ToolTipRole, Qt.TextAlignmentRole, Qt.ForegroundRole
_PATH = int(Qt.UserRole) + 2
_RIGHT = int(Qt.AlignRight | Qt.AlignVCenter)
_STATUS_BRUSHES = {state: QColor(colour) for state, colour in STATUS_COLOURS.items()}
_OTHER_STATUS, _STAR = QColor("#666666"), QColor("#e0a800")


def _cells(run: RunSummary) -> list[dict]:
    tooltip = _tooltip(run)
    texts = [column.text(run) for column in COLUMNS]
    cells = []
    for column, text in zip(COLUMNS, texts):
        cell = {_DISPLAY: text, SORT_ROLE: column.sort(run), _PATH: run.path, _TOOLTIP: tooltip}
        if column.numeric:
            cell[_ALIGN] = _RIGHT
        cells.append(cell)
    cells[0][_FOREGROUND] = _STAR
    cells[STATUS_COLUMN][_FOREGROUND] = _STATUS_BRUSHES.get(run.status, _OTHER_STATUS)
    cells[NAME_COLUMN][SEARCH_ROLE] = "\n".join(texts)
    return cells


def _tooltip(run: RunSummary) -> str:
    """As written: a tooltip guesses markup, and the folder and the note are the user's."""
    lines = [run.path, f"Status: {_status(run)}"]
    if run.best_epoch is not None:
        lines.append(f"Best epoch {run.best_epoch}: val accuracy {_pct(run.best_val_acc)}")
    if run.note:
        lines.append(f"Note: {run.note}")
    if run.created:
        lines.append(f"Started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.created))}")
    return as_written("\n".join(lines))


class KeepTheEnd(QStyledItemDelegate):
    """Shortens a cell's text in the middle: run names made for the same data and model differ only in
    their time at the end (hymenoptera-efficientnet_lite0-20261203-160345), which an ellipsis at the end
    would hide."""

    def initStyleOption(self, option, index) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.ElideMiddle


def runs_filter(model: RunsModel, parent=None) -> QSortFilterProxyModel:
    """Sorts by each column's value (SORT_ROLE), and keeps the rows whose text contains the filter
    text in any column (case-insensitive). A plain Qt proxy: comparing and matching run in C++."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    proxy.setFilterRole(SEARCH_ROLE)
    proxy.setFilterKeyColumn(NAME_COLUMN)
    proxy.setFilterCaseSensitivity(Qt.CaseInsensitive)
    proxy.setDynamicSortFilter(True)
    return proxy


def visible_runs(proxy: QSortFilterProxyModel, model: RunsModel) -> list[RunSummary]:
    """The runs the filter lets through, in the table's order."""
    return [model.run_at(proxy.mapToSource(proxy.index(row, 0)).row()) for row in range(proxy.rowCount())]
