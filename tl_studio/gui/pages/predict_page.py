"""The Predict step: classify new images. Drop images or folders onto the page (or pick them); each gets a
row with its thumbnail and the top-3 labels with their confidences, sortable, exportable as CSV.

It uses the session's model (the one just trained or opened) or any model file opened here. Images are
classified in the background, in batches, exactly as ``tl-studio predict`` does (the same plan and
decoding, so the same answers); a file that cannot be read gets a row that says why, and the others go on."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QMessageBox,
                               QProgressBar, QPushButton, QTableView, QVBoxLayout, QWidget)

from tl_studio.core.fileio import file_identity
from tl_studio.core.wording import counted, time_left
from tl_studio.gui.csv_files import ask_and_save_csv, save_text
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.runs_folder import dialog_start_folder, model_caption
from tl_studio.gui.sample_grid import pixmap_from_array
from tl_studio.gui.tasks import TaskRunner
from tl_studio.gui.theme import BAD

TOP_K = 3
THUMB_PX = 64
SORT_ROLE = Qt.UserRole + 1
PATH_ROLE = Qt.UserRole + 2
LABEL_ROLE = Qt.UserRole + 3  # the class name itself, where the cell says "unknown (closest: ...)"
COLUMNS = ["Image", "File", "1st", "%", "2nd", "%", "3rd", "%", "Problem"]
PROBLEM_COLUMN = COLUMNS.index("Problem")


def _item(text: str, sort_value=None) -> QStandardItem:
    item = QStandardItem(text)
    item.setData(_name_order(text) if sort_value is None else sort_value, SORT_ROLE)
    item.setEditable(False)
    return item


def _name_order(text: str) -> str:
    """Sorts as a file manager does: img_2 before img_10 (numbers padded), case ignored."""
    return re.sub(r"\d+", lambda number: number.group().zfill(12), text.casefold())


def _classify(model_path: Path, trusted: bool, cache: dict, inputs: list, listed: set, report, cancelled) -> int:
    """Worker thread: one progress report per image, (Prediction, thumbnail) with the thumbnail as
    (width, height, RGB bytes) or None. Files found twice in ``inputs`` are classified once; those already
    ``listed`` in the table (a folder added again) not again, reported as ("already listed", count)."""
    import torch

    from tl_studio.core.inference import DEFAULT_BATCH_SIZE, plan_for
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.predict import collect_image_paths, predict_paths, unknown_rule_of
    from tl_studio.gui.thumbnails import decode_thumbnail

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # leave the GUI thread a core
    found = list(dict.fromkeys(collect_image_paths(inputs)))  # a file given alone and inside its folder: once
    paths = [path for path in found if str(path) not in listed]
    if len(paths) < len(found):
        report(("already listed", len(found) - len(paths)))
    report(("total", len(paths)))
    key = file_identity(model_path)  # a file written again under the same name (another keep share) is reloaded
    if key not in cache:
        cache.clear()
        model = load_model_file(model_path, trust_torchscript=trusted)
        # in batches, decoded as `tl-studio predict` decodes: the same answers (to float rounding)
        cache[key] = model, plan_for(model, DEFAULT_BATCH_SIZE)
    model, plan = cache[key]
    count = 0
    rule = unknown_rule_of(model.metadata)
    for count, prediction in enumerate(predict_paths(model.predict, model.classes, paths, TOP_K, cancelled, rule,
                                                     plan=plan), 1):
        report((prediction, decode_thumbnail(prediction.path, THUMB_PX)))
    return count


class PredictPage(QWidget):
    predictionsFinished = Signal(int)  # images classified in the last batch

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.tasks = TaskRunner(self)
        self.task = None
        self.model_path: Path | None = None
        self.model_identity: tuple | None = None  # file_identity of the model the rows are from
        self.models: dict[tuple, tuple] = {}  # the loaded model file and its inference plan, reused
        self.pending: list[str] = []  # dropped while a batch was running
        self.chosen_from: str | None = None  # the folder the last images were chosen in (the dialogs open there)
        self.batch_inputs: list[str] = []  # what the running batch classifies
        self.batch_started = time.monotonic()
        self.total = 0
        self.batch_failed = self.already_listed = 0  # of the batch being classified
        self.setAcceptDrops(True)
        self._unsaid = ""  # the status line of work done while the step was hidden (_say)
        self._build()
        session.modelFileChanged.connect(self.set_model)
        self.set_model(session.model_file)

    def _build(self) -> None:
        self.model_label = QLabel()
        # A line of its own: beside six buttons at 1000 px a run's name had a third of the width, and one
        # without spaces ("hymenoptera-efficientnet_lite0-20261203-215417") was cut off
        self.model_label.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for text, slot in (("Open model file…", self.choose_model), ("Add images…", self.choose_images),
                           ("Add folder…", self.choose_folder)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected images off the list (Delete)")
        self.remove_button.setShortcut(QKeySequence.Delete)
        self.remove_button.clicked.connect(self.remove_selected)
        buttons.addWidget(self.remove_button)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setEnabled(False)  # nothing to clear yet
        self.clear_button.clicked.connect(self.clear)
        buttons.addWidget(self.clear_button)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)  # an empty list wrote a header alone
        self.export_button.clicked.connect(self.choose_export_file)
        buttons.addWidget(self.export_button)
        self.hint = QLabel("Drop images or folders here, or use Add images… or Add folder…")
        self.progress = QProgressBar()
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.table_model = QStandardItemModel(0, len(COLUMNS), self)
        self.table_model.setHorizontalHeaderLabels(COLUMNS)
        self.table_model.setSortRole(SORT_ROLE)
        for signal in (self.table_model.rowsInserted, self.table_model.rowsRemoved, self.table_model.modelReset):
            signal.connect(self._follow_the_rows)
        self.table = QTableView()
        self.table.setObjectName("predictionsTable")
        self.table.setModel(self.table_model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self._selection_changed()
        self.table.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.table.verticalHeader().setDefaultSectionSize(THUMB_PX + 6)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(PROBLEM_COLUMN, QHeaderView.Stretch)
        self.table.setColumnWidth(0, THUMB_PX + 12)
        self.table.setColumnWidth(1, 220)
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_label)
        layout.addLayout(buttons)
        layout.addWidget(self.hint)
        layout.addLayout(progress_row)
        layout.addWidget(self.table, 1)

    # ---- the model ----------------------------------------------------------------------------------
    def set_model(self, path) -> None:
        """Another model (or the same file written again): the rows listed are the old model's answers,
        so the same images are classified again with this one, never left standing under its name."""
        from tl_studio.core.model_file import peek_class_count

        self.model_path = Path(path) if path else None
        self.model_label.setText(model_caption(self.model_path) if self.model_path else
                                 "No model yet: train one, or open a model file.")
        self.model_label.setToolTip(as_written(str(self.model_path or "")))  # tooltips guess markup
        identity, self.model_identity = self.model_identity, file_identity(self.model_path)
        if self.model_path is not None and not self.table_model.rowCount():
            # before its first answer: a two-class model's empty third-guess columns stood until then
            self._show_ranks(peek_class_count(self.model_path) or TOP_K)
        if self.model_path is None or identity in (None, self.model_identity):
            return
        listed = [self.table_model.item(row, 0).data(PATH_ROLE) for row in range(self.table_model.rowCount())]
        again = list(dict.fromkeys(listed + (self.batch_inputs if self.running else []) + self.pending))
        if not again:
            return
        self.table_model.removeRows(0, self.table_model.rowCount())
        self.pending = again
        if self.running:
            self.task.cancel()  # its end starts the pending batch (_batch_ended), with this model
        else:
            self._start_next()
        self._say(f"Classifying {counted(len(listed), 'listed image')} again with {self.model_path.name}…"
                         if listed else f"Classifying with {self.model_path.name}…")

    def choose_model(self) -> None:
        from tl_studio.core.export_formats import open_dialog_filter
        from tl_studio.gui.model_trust import open_for_the_app

        path, _ = QFileDialog.getOpenFileName(self, "Open a trained model", str(dialog_start_folder()),
                                              open_dialog_filter())
        if path:  # the model of every step, as File > Open Model File (the session hands it to set_model)
            open_for_the_app(self, self.session, path)

    # ---- adding images ------------------------------------------------------------------------------
    def choose_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Choose images to classify", self._dialog_folder(),
                                                "Images (*.jpg *.jpeg *.png *.bmp *.gif *.tif *.tiff *.webp *.avif);;"
                                                "All files (*)")
        if paths:
            self.chosen_from = str(Path(paths[0]).parent)
        self.add_paths(paths)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of images to classify", self._dialog_folder())
        if folder:
            self.chosen_from = str(Path(folder).parent)  # the next folder is often beside this one
            self.add_paths([folder])

    def _dialog_folder(self) -> str:
        """Where the image dialogs open: where images were last chosen from, else the Data step's folder,
        else the home folder; never the folder the app happened to be started from."""
        if self.chosen_from:
            return self.chosen_from
        return str(self.session.scan.root) if self.session.scan is not None else str(Path.home())

    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.add_paths([url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()])

    def add_paths(self, paths: list) -> None:
        """Classify these files and folders (folders searched recursively), after any running batch."""
        if not paths:
            return
        if self.model_path is None:
            QMessageBox.information(self, "No model", "Train a model first, or open a model file "
                                                      "(Open model file…).")
            return
        self.pending += [str(p) for p in paths]
        if not self.running:
            self._start_next()

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def _start_next(self) -> None:
        inputs, self.pending = self.pending, []
        self.batch_inputs, self.total = inputs, 0
        from tl_studio.gui.model_trust import is_trusted

        model_path, cache = self.model_path, self.models
        trusted = is_trusted(self.session, model_path)
        listed = {self.table_model.item(row, 0).data(PATH_ROLE) for row in range(self.table_model.rowCount())}
        self.batch_failed = self.already_listed = 0
        self._say("Classifying…")  # not the last batch's outcome while this one runs
        self.progress.setRange(0, 0)
        self.progress.setFormat("Loading the model…")
        self.progress.show()
        self.cancel_button.show()
        self.task = self.tasks.start(lambda report, cancelled: _classify(model_path, trusted, cache, inputs, listed,
                                                                          report, cancelled), "predict")
        self.task.progress.connect(self._on_progress)
        self.task.succeeded.connect(self._on_finished)
        self.task.failed.connect(self._on_failed)
        self.task.cancelled.connect(lambda: self._batch_ended(self._cancelled_text()))

    def _on_progress(self, payload) -> None:
        if payload[0] == "already listed":
            self.already_listed = payload[1]
            return
        if payload[0] == "total":
            self.total = payload[1]
            self.progress.setRange(0, max(1, self.total))
            self.progress.setValue(0)
            self.batch_started = time.monotonic()  # the model is loaded: the rate counts from here
            return
        prediction, thumbnail = payload
        self.batch_failed += not prediction.ok
        self._add_row(prediction, thumbnail)
        done = self.progress.value() + 1
        self.progress.setValue(done)
        elapsed = time.monotonic() - self.batch_started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else math.inf
        self.progress.setFormat(f"Classifying: {done}/{self.total} · {rate:.1f} img/s · {time_left(left)} left")

    def _add_row(self, prediction, thumbnail) -> None:
        import numpy as np

        image = _item("", _name_order(Path(prediction.path).name))  # the picture only; sorts by file name
        if thumbnail is not None:
            width, height, data = thumbnail
            array = np.frombuffer(data, np.uint8).reshape(height, width, 3)
        else:  # unreadable: a muted red tile, as in the Data step's browser
            array = np.full((THUMB_PX, THUMB_PX, 3), (222, 160, 160), dtype=np.uint8)
        image.setData(pixmap_from_array(array), Qt.DecorationRole)
        image.setData(prediction.path, PATH_ROLE)
        image.setToolTip(as_written(prediction.path))
        name = _item(Path(prediction.path).name)
        name.setToolTip(as_written(prediction.path))  # two folders may each hold an img_001.jpg
        row = [image, name]
        for rank in range(TOP_K):
            if rank < len(prediction.labels):
                probability = prediction.probs[rank]
                label = _item(prediction.labels[rank])
                label.setData(prediction.labels[rank], LABEL_ROLE)
                if rank == 0 and prediction.unknown:  # the model's unknown rule rejects this image
                    # the confidence is in the next column: "closest: ants 50%" stood beside "50.2%"
                    label.setText(f"unknown (closest: {prediction.labels[0]})")
                    label.setForeground(BAD)
                    label.setToolTip("The model is not sure: its confidence is below the threshold of the unknown "
                                     "rule stored in the model file.")
                row += [label, _item(f"{probability:.1%}", probability)]
            else:
                row += [_item(""), _item("", -1.0)]
        problem = _item(prediction.error or "")
        if prediction.error:
            problem.setForeground(BAD)
        row.append(problem)
        self.table_model.appendRow(row)

    def _hide_unused_ranks(self) -> None:
        """A two-class model has no third guess: its columns go."""
        ranks = max((len(row["labels"]) for row in self.rows()), default=0)
        if not ranks:  # nothing classified (an empty list, only unreadable files): the columns stay as they are
            return
        self._show_ranks(ranks)

    def _show_ranks(self, ranks: int) -> None:
        for rank in range(TOP_K):
            for column in (2 + 2 * rank, 3 + 2 * rank):
                self.table.setColumnHidden(column, rank >= ranks)

    def _on_finished(self, count: int) -> None:
        self._hide_unused_ranks()
        self._batch_ended(self._outcome(count))
        self.predictionsFinished.emit(count)

    def _outcome(self, count: int) -> str:
        listed = f" ({counted(self.already_listed, 'file')} already in the list)" if self.already_listed else ""
        if not count:
            return f"Nothing new to classify{listed}." if listed else "No images found there."
        if not self.batch_failed:
            return f"Classified {counted(count, 'image')}{listed}."
        return (f"Classified {counted(count - self.batch_failed, 'image')}; {counted(self.batch_failed, 'file')} "
                f"could not be read (see Problem){listed}.")

    def _cancelled_text(self) -> str:
        if self.pending:  # stopped for another model (set_model): the same images follow at once
            return f"Classifying again with {self.model_path.name}…"
        done = self.progress.value() if self.progress.maximum() > 0 else 0
        return (f"Prediction cancelled after {done} of {counted(self.total, 'image')}; the rows listed stay."
                if self.total else "Prediction cancelled.")

    def _on_failed(self, message: str) -> None:
        self._batch_ended(message)
        QMessageBox.warning(self, "Could not classify", as_written(message))  # it may quote a file

    def _batch_ended(self, message: str) -> None:
        self._say(message)
        if self.pending:
            self._start_next()
            return
        self.progress.hide()
        self.cancel_button.hide()

    def _say(self, message: str) -> None:
        """The status line, while the step is shown. A model trained or opened elsewhere classifies the
        listed images again in the background: its "Classified 9 images; 1 file could not be read" took
        the Train step's line where the run's result stood. Held until the step is shown instead."""
        if self.isVisible():
            self.session.say(message)
            self._unsaid = ""
        else:
            self._unsaid = message

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._unsaid:
            self.session.say(self._unsaid)
            self._unsaid = ""

    def cancel(self) -> None:
        self.pending = []
        if self.running:
            self.task.cancel()

    def clear(self) -> None:
        self.cancel()
        rows = self.table_model.rowCount()
        self.table_model.removeRows(0, rows)
        if rows:  # the last batch's "Classified 9 images." stood over the empty table
            self.session.say(f"Cleared the list ({counted(rows, 'image')}).")

    def remove_selected(self) -> None:
        for row in sorted((index.row() for index in self.table.selectionModel().selectedRows()), reverse=True):
            self.table_model.removeRow(row)

    def _selection_changed(self, *_) -> None:
        self.remove_button.setEnabled(self.table.selectionModel().hasSelection())

    # ---- reading the table --------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """The table as shown (in its current sort order): path, top labels and probabilities, problem."""
        result = []
        for row in range(self.table_model.rowCount()):
            cell = lambda column: self.table_model.item(row, column)  # noqa: E731
            labels = [cell(2 + 2 * k).data(LABEL_ROLE) for k in range(TOP_K) if cell(2 + 2 * k).text()]
            probs = [float(cell(3 + 2 * k).data(SORT_ROLE)) for k in range(len(labels))]
            result.append({"path": cell(0).data(PATH_ROLE), "labels": labels, "probs": probs,
                           "unknown": cell(2).text().startswith("unknown (closest"),
                           "error": cell(PROBLEM_COLUMN).text()})
        return result

    def _follow_the_rows(self, *_) -> None:
        listed = self.table_model.rowCount() > 0
        self.export_button.setEnabled(listed)  # an empty list wrote a header alone
        self.clear_button.setEnabled(listed)

    def csv_text(self) -> str:
        from tl_studio.core.predict import CSV_LINE_END, csv_cells, csv_header

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=CSV_LINE_END)  # the file `tl-studio predict --csv` writes
        rows = self.rows()
        top_k = max((len(row["labels"]) for row in rows), default=0) or TOP_K  # a 2-class model: 2 ranks
        writer.writerow(csv_header(top_k))
        for row in rows:
            writer.writerow(csv_cells(row["path"], row["labels"], row["probs"], row["unknown"], row["error"], top_k))
        return buffer.getvalue()

    def choose_export_file(self) -> None:
        rows = self.table_model.rowCount()
        if path := ask_and_save_csv(self, "Export predictions", "predictions.csv", self.csv_text):
            self.session.say(f"Saved {counted(rows, 'row')} to {path}.")  # the write had no word of its own

    def export(self, path: str) -> None:
        save_text(self, path, self.csv_text())

    def shutdown(self) -> None:
        self.cancel()
        self.tasks.shutdown()
