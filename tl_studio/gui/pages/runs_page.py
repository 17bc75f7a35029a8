"""The Runs step: every run under the runs folders in one table (sort, filter, star, note, rename,
delete with undo), the selected runs compared (curves, settings that differ, the same validation
images), which run is best, and a run handed on to the other steps.

The page asks; it does not reach into other pages. ``runOpened(folder)`` hands a run with a model file
to Evaluate/Export/Predict, ``resumeRequested(folder, planned_epochs)`` a stopped or failed run to the
Train step (to continue up to the epochs it planned). The edits of runs (star, note, rename, delete and
its undo) are gui/run_edits.py.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QFileDialog, QHBoxLayout, QHeaderView, QInputDialog,
                               QLabel, QLineEdit, QMessageBox, QPushButton, QSplitter, QTableView, QTabWidget,
                               QVBoxLayout, QWidget)

from tl_studio.core.run_folder import export_command
from tl_studio.core.run_history import best_run, summarize_run, summary_diff
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.run_compare import MAX_RUNS, ConfigDiffTable, RunCurves, ValidationCompare
from tl_studio.gui.run_edits import RunEdits
from tl_studio.gui.run_loader import LiveRuns, RunLoader
from tl_studio.gui.runs_folder import add_history_folder, dialog_start_folder, history_folders, remove_history_folder
from tl_studio.gui.runs_table import (ALWAYS_SHOWN, COLUMNS, NAME_COLUMN, NAME_WIDTH_MAX, WIDTHS, KeepTheEnd,
                                      RunsModel, runs_filter, visible_runs)

OPEN_TIP = "Use this run's model in the Evaluate, Export and Predict steps"


class RunsPage(QWidget):
    runOpened = Signal(object)  # Path of a run folder holding model.pt2
    # a run's folder and the epochs it is to reach: a stopped or failed run's planned ones; 0 for a finished
    # run, whose new total the Train step asks for
    resumeRequested = Signal(object, int)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = RunsModel(self)
        self.proxy = runs_filter(self.model, self)
        self.loader = RunLoader(self)
        self.live = LiveRuns(parent=self)
        # The selected runs' folders, watched whatever their state: LiveRuns follows only the runs that were
        # training when the folders were listed, so a finished run trained further (from the Train step or
        # the CLI) kept its old curves while selected.
        self.selected_files = QFileSystemWatcher(self)
        self._reread = QTimer(self, singleShot=True, interval=200)  # an epoch rewrites several files at once
        self.compare_task = None
        self.model_file_task = None  # Open of a run without its model file writes it first
        self._loaded_once = False
        self._offer_resume = False  # Train > Resume a Run…: select a run to continue when the listing ends
        self._build()
        self._connect()
        self._update_actions()

    # ---- layout -------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.folders_label = QLabel()
        self.folders_label.setWordWrap(True)
        self.folders_label.setTextFormat(Qt.PlainText)  # the user's folder names, never markup
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("Also list the runs in another folder (remembered)")
        self.remove_folder_button = QPushButton("Remove folder…")
        self.remove_folder_button.setToolTip("Stop listing a folder you added (nothing is deleted)")
        self.refresh_button = QPushButton("Refresh")
        self.filter_edit = QLineEdit()
        self.filter_edit.setObjectName("runsFilter")
        self.filter_edit.setPlaceholderText("Filter by name, model, data set, status, note…")
        self.filter_edit.setClearButtonEnabled(True)
        self.differ_box = QCheckBox("Only columns that differ")
        self.differ_box.setToolTip("Hide the columns whose values are the same in every run shown")
        self.best_label = QLabel()
        self.best_label.setObjectName("bestRunHint")
        self.best_label.setWordWrap(True)
        self.best_label.setTextFormat(Qt.RichText)  # its link; the run's name in it is escaped
        self.best_label.setStyleSheet("QLabel { background: #e7f1ff; color: #084298; padding: 6px; border-radius: 4px; }")
        self.best_label.hide()

        self.table = QTableView()
        self.table.setObjectName("runsTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn([c.field for c in COLUMNS].index("created"), Qt.DescendingOrder)  # newest first
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setStretchLastSection(True)
        for index, column in enumerate(COLUMNS):
            self.table.setColumnWidth(index, WIDTHS.get(column.field, 100))
        self._fitting_names = False  # the Name column is being widened by _fit_names, not by the user
        self._names_sized_by_user = False
        header.sectionResized.connect(self._on_column_resized)
        self.table.setItemDelegateForColumn([c.field for c in COLUMNS].index("name"), KeepTheEnd(self.table))

        self.open_button = QPushButton("Open")
        self.open_button.setObjectName("openRunButton")
        self.open_button.setToolTip(OPEN_TIP)
        self.resume_button = QPushButton("Resume")  # at once, as it stopped: nothing is asked
        # as wide as its other text: "Train further…" widened it and moved Star, Note… and Rename… under the
        # pointer (a click meant for Note… starred the run)
        self.resume_button.setMinimumWidth(QPushButton("Train further…").sizeHint().width())
        self.resume_button.setToolTip("Continue a stopped or failed run from its last checkpoint, or train a "
                                      "finished one for more epochs (Train step)")
        self.edits = RunEdits(self, self.model, self.selected_runs, self.session.say, self._after_rows_changed,
                              let_go=self._let_go_of_deleted_runs, take_back=self._take_back_restored_runs)
        self._model_of_a_deleted_run = None  # (run folder, model file) the steps used, until an undo gives it back
        # Scoped to the table: Delete in the filter box deletes text, not runs.
        QShortcut(QKeySequence.Delete, self.table, activated=self.edits.delete_button.click,
                  context=Qt.WidgetShortcut)
        actions = QHBoxLayout()
        for button in (self.open_button, self.resume_button, *self.edits.buttons):
            actions.addWidget(button)
        actions.addStretch()
        self.count_label = QLabel()
        actions.addWidget(self.count_label)

        self.curves = RunCurves()
        self.diff_table = ConfigDiffTable()
        self.validation = ValidationCompare()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.curves, "Curves")
        self.tabs.addTab(self.diff_table, "Settings that differ")
        self.tabs.addTab(self.validation, "Same validation images")

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        folders_row = QHBoxLayout()
        folders_row.addWidget(self.folders_label, 1)
        folders_row.addWidget(self.add_folder_button)
        folders_row.addWidget(self.remove_folder_button)
        folders_row.addWidget(self.refresh_button)
        filter_row = QHBoxLayout()
        filter_row.addWidget(self.filter_edit, 1)
        filter_row.addWidget(self.differ_box)
        top_layout.addLayout(folders_row)
        top_layout.addLayout(filter_row)
        top_layout.addWidget(self.best_label)
        top_layout.addWidget(self.table, 1)
        top_layout.addLayout(actions)
        split = QSplitter(Qt.Vertical)
        split.addWidget(top)
        split.addWidget(self.tabs)
        split.setSizes([430, 330])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

    def _connect(self) -> None:
        self.loader.runsRead.connect(self._on_runs_read)
        self.loader.finished.connect(self._on_listing_done)
        self.loader.progress.connect(lambda count: self.count_label.setText(f"Reading run folders… {count}"))
        self.live.changed.connect(self._on_run_changed)
        self.selected_files.fileChanged.connect(lambda _: self._reread.start())
        self.selected_files.directoryChanged.connect(lambda _: self._reread.start())
        self._reread.timeout.connect(self._reread_selected)
        # a selected run's row changed (renamed, read again with new epochs): the comparison follows it
        self.model.dataChanged.connect(self._on_rows_updated)
        self.live.rootsChanged.connect(self.refresh)
        self.add_folder_button.clicked.connect(self.choose_folder)
        self.remove_folder_button.clicked.connect(self.choose_folder_to_remove)
        self.refresh_button.clicked.connect(self.refresh)
        self.filter_edit.textChanged.connect(self._on_filter)
        self.differ_box.toggled.connect(lambda _: self._update_columns())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._on_selection())
        self.table.doubleClicked.connect(lambda _: self.open_selected())
        self.best_label.linkActivated.connect(lambda path: self.select_paths([path]))
        self.open_button.clicked.connect(self.open_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.validation.compareRequested.connect(self._compare_on_validation)
        self.validation.cancelRequested.connect(self._cancel_compare)
        self.session.runDirChanged.connect(lambda _: self.refresh() if self._loaded_once else None)

    # ---- the steps that use a run ------------------------------------------------------------------------
    def _let_go_of_deleted_runs(self, folders: list) -> bool:
        """A deleted run's model is no longer there for Evaluate, Export and Predict: they go back to having
        none (True), and an undo gives it back."""
        session = self.session
        used = [path for path in (session.run_dir, session.model_file) if path is not None]
        if not any(_inside(path, folder) for path in used for folder in folders):
            return False
        self._model_of_a_deleted_run = (session.run_dir, session.model_file)
        session.set_run(None, None)
        return True

    def _take_back_restored_runs(self, folders: list) -> None:
        kept, self._model_of_a_deleted_run = self._model_of_a_deleted_run, None
        if kept is None or self.session.run_dir is not None or self.session.model_file is not None:
            return  # another model was chosen since: it stays
        if any(_inside(path, folder) for path in kept if path is not None for folder in folders):
            self.session.set_run(*kept)

    # ---- loading ------------------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._loaded_once:
            self.refresh()
        self.live.timer.start()

    def hideEvent(self, event) -> None:
        self.live.timer.stop()
        super().hideEvent(event)

    def refresh(self) -> None:
        """Reads every run folder again, in the background; rows already shown are updated in place
        and runs that are gone are removed when the listing ends."""
        self._loaded_once = True
        self._seen: set[str] = set()
        roots = history_folders()
        self.folders_label.setText("Runs in " + ", ".join(str(root) for root in roots))
        self.remove_folder_button.setEnabled(len(roots) > 1)
        self.count_label.setText("Reading run folders…")
        self.live.watch_roots(roots)
        self.loader.load(roots)

    def _on_runs_read(self, runs: list) -> None:
        self._seen.update(run.path for run in runs)
        self.model.add_runs(runs)

    def _on_listing_done(self, count: int) -> None:
        for path in [run.path for run in self.model.runs if run.path not in self._seen]:
            self.model.remove_run(path)
        self.live.follow(self.model.runs)
        self._after_rows_changed()
        self._fit_names()
        if self._offer_resume:
            self._offer_resume = False
            self._select_a_run_to_resume()

    def _fit_names(self) -> None:
        """Widens the Name column to its longest name, up to NAME_WIDTH_MAX, unless the user has sized it:
        an app-made name (data set, model, date and time: about 330 px) was cut in the middle at 250 px
        on a 1400 px screen beside columns with room to spare."""
        wanted = min(NAME_WIDTH_MAX, self.table.sizeHintForColumn(NAME_COLUMN))
        if self._names_sized_by_user or wanted <= self.table.columnWidth(NAME_COLUMN):
            return
        self._fitting_names = True
        try:
            self.table.setColumnWidth(NAME_COLUMN, wanted)
        finally:
            self._fitting_names = False

    def _on_column_resized(self, index: int, _old: int, _new: int) -> None:
        if index == NAME_COLUMN and not self._fitting_names:
            self._names_sized_by_user = True

    def _on_run_changed(self, run) -> None:
        self.model.update_run(run)  # a selected run's comparison follows in _on_rows_updated
        self._after_rows_changed()

    def _on_rows_updated(self, top, bottom, _roles=None) -> None:
        changed = {self.model.run_at(row).path for row in range(top.row(), bottom.row() + 1)}
        if any(run.path in changed for run in self.selected_runs()):
            self._on_selection()

    def _reread_selected(self) -> None:
        """A selected run's files changed: its row (and so its curves) is read again, and LiveRuns
        follows it from now on if it is training."""
        for run in self.selected_runs()[:MAX_RUNS]:
            try:
                self.model.update_run(summarize_run(run.path))
            except OSError:
                continue  # moved away or deleted meanwhile: the next listing drops it
        self.live.follow(self.model.runs)
        self._after_rows_changed()

    def _watch_selected(self, runs) -> None:
        """The folders (new and replaced files) and the files the engine appends to, of the runs shown."""
        if self.selected_files.files() or self.selected_files.directories():
            self.selected_files.removePaths(self.selected_files.files() + self.selected_files.directories())
        paths = []
        for run in runs[:MAX_RUNS]:
            paths.append(run.path)
            paths += [str(Path(run.path) / name) for name in LiveRuns.WATCHED if (Path(run.path) / name).is_file()]
        if paths:
            self.selected_files.addPaths(paths)

    def _after_rows_changed(self) -> None:
        self._show_count()
        self._update_best()
        self._update_columns()
        self._update_actions()

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of runs", str(dialog_start_folder()))
        if folder:
            add_history_folder(Path(folder))
            self.refresh()

    def choose_folder_to_remove(self) -> None:
        added = [str(folder) for folder in history_folders()[1:]]
        if not added:
            return
        folder, ok = QInputDialog.getItem(self, "Remove a folder", "Stop listing the runs in (nothing is deleted):",
                                          added, 0, False)
        if ok and folder:
            remove_history_folder(Path(folder))
            self.refresh()

    # ---- filter, columns, best ----------------------------------------------------------------------
    def _on_filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        self._show_count()
        self._update_columns()

    def _show_count(self) -> None:
        """How many runs, and of them how many the filter shows ("2 runs" stood over one filtered row)."""
        runs = self.model.runs
        running = sum(run.status == "running" for run in runs)
        shown = self.proxy.rowCount()
        total = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
        self.count_label.setText((f"{shown} of {total} shown" if shown < len(runs) else total)
                                 + (f", {running} training now" if running else ""))

    def _update_columns(self) -> None:
        visible = visible_runs(self.proxy, self.model)
        differing = set(summary_diff(visible, [c.field for c in COLUMNS])) if len(visible) >= 2 else None
        for index, column in enumerate(COLUMNS):
            hide = (self.differ_box.isChecked() and differing is not None and column.field not in ALWAYS_SHOWN
                    and column.field not in differing)
            self.table.setColumnHidden(index, hide)

    def _update_best(self) -> None:
        best = best_run(self.model.runs)
        self.best_label.setVisible(best is not None and len(self.model.runs) >= 2)
        if best is not None:
            link = f"<a href=\"{escape(best.run.path)}\">Select it</a>"
            open_it = " and press Open to write its model file from its best epoch" if best.lacks_model_file else ""
            self.best_label.setText(f"Best run: {escape(best.why)} {link}{open_it}.")
            self.best_label.setToolTip("Ranked by val accuracy; within 0.5 points, by val loss, then train time")

    # ---- selection ----------------------------------------------------------------------------------
    def selected_runs(self) -> list:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.model.run_at(self.proxy.mapToSource(self.proxy.index(row, 0)).row()) for row in rows]

    def select_paths(self, paths: list[str]) -> None:
        selection = self.table.selectionModel()
        selection.clearSelection()
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if index.data(RunsModel.PathRole) in paths:
                selection.select(index, QItemSelectionModel.Select | QItemSelectionModel.Rows)
                self.table.scrollTo(index)

    def _on_selection(self) -> None:
        runs = self.selected_runs()
        self._watch_selected(runs)
        self.curves.show_runs(runs)
        self.diff_table.show_runs(runs)
        self.validation.set_runs(runs)
        self._update_actions()

    def _update_actions(self) -> None:
        runs = self.selected_runs()
        one = runs[0] if len(runs) == 1 else None
        # a run stopped at once (a second Ctrl-C, a crash) has epochs but no model file: Open writes it first
        unexported = one is not None and not one.has_model_file and one.status != "running" and one.epochs_done > 0
        self.open_button.setEnabled(one is not None and one.status != "running" and (one.has_model_file or unexported)
                                    and not self.writing_model_file)
        self.open_button.setToolTip(
            "This run has no model file yet (it stopped before writing one): Open writes it from the run's best "
            f"epoch first, as {export_command(one.path)} does." if unexported else OPEN_TIP)
        self.resume_button.setEnabled(one is not None and (one.resumable or one.extendable)
                                      and not self.session.training)
        self.resume_button.setText("Train further…" if one is not None and one.extendable else "Resume")
        self.edits.update(runs)

    # ---- actions on runs ----------------------------------------------------------------------------
    def open_selected(self) -> None:
        runs = self.selected_runs()
        if len(runs) != 1 or runs[0].status == "running" or self.writing_model_file:
            return
        if runs[0].has_model_file:
            self.runOpened.emit(Path(runs[0].path))
        elif runs[0].epochs_done > 0:
            self._write_model_file_then_open(runs[0])

    def _write_model_file_then_open(self, run) -> None:
        """A run without its model file (stopped before writing it) gets one from its best epoch, in a
        child process as the Export step writes files (torch.export would freeze the window), then opens."""
        from tl_studio.core.run_folder import MODEL_FILE
        from tl_studio.gui.processes import export_in_child_process

        folder = Path(run.path)
        self.session.say(f"Writing the model file of {run.name} from its best epoch "
                         f"(epoch {run.best_epoch}) and checking it…")
        task = self._tasks().start(
            lambda report, cancelled: export_in_child_process(folder, "pt2", folder / MODEL_FILE), "model-file")
        self.model_file_task = task
        task.succeeded.connect(lambda report: self._model_file_written(folder, report))
        task.failed.connect(self._model_file_failed)
        task.cancelled.connect(lambda: self._model_file_failed("Writing the model file was cancelled."))
        self._update_actions()

    def _model_file_written(self, folder: Path, report) -> None:
        self.model_file_task = None
        self._reread_selected()  # its row has the model file now
        self.session.say(f"Wrote {report.path.name} for {folder.name}: {report.check.describe()}")
        self.runOpened.emit(folder)

    def _model_file_failed(self, message: str) -> None:
        self.model_file_task = None
        self._update_actions()
        self.session.say(message)
        QMessageBox.warning(self, "No model file", as_written(message))  # it may quote the run folder

    @property
    def writing_model_file(self) -> bool:
        return self.model_file_task is not None and self.model_file_task.running

    def _tasks(self):
        from tl_studio.gui.tasks import TaskRunner

        if not hasattr(self, "tasks"):
            self.tasks = TaskRunner(self)
        return self.tasks

    def resume_selected(self) -> None:
        runs = self.selected_runs()
        if len(runs) == 1 and runs[0].resumable:
            self.resumeRequested.emit(Path(runs[0].path), runs[0].planned_epochs)
        elif len(runs) == 1 and runs[0].extendable:
            self.resumeRequested.emit(Path(runs[0].path), 0)

    def offer_resume(self) -> None:
        """Train > Resume a Run…: the runs are read again and the newest one that stopped before its end
        is selected (else the newest finished one, to train further), with what to press."""
        self._offer_resume = True
        self.refresh()

    def _select_a_run_to_resume(self) -> None:
        runs = self.model.runs
        stopped = [run for run in runs if run.resumable]
        finished = [run for run in runs if run.extendable]
        newest = max(stopped or finished, key=lambda run: run.created or 0.0, default=None)
        if newest is None:
            self.session.say("No run listed here can continue: none stopped after a finished epoch or has its "
                             "last checkpoint. Add folder… lists the runs kept in another folder.")
            return
        self.filter_edit.clear()  # a filter must not hide the run chosen for the user
        self.select_paths([newest.path])
        self.table.setFocus()
        if stopped:
            ended = "failed" if newest.status == "failed" else "stopped"
            self.session.say(f"{newest.name} {ended} after epoch {newest.epochs_done} of {newest.planned_epochs}: "
                             f"press Resume to continue it, or choose another run "
                             f"({len(stopped)} can continue, {len(finished)} finished can train further).")
        else:
            self.session.say(f"No run stopped before its end; {newest.name} is the newest finished one: press "
                             f"Train further… to give it more epochs, or choose another run.")

    # ---- the same validation images ------------------------------------------------------------------
    def _compare_on_validation(self, run_a: str, run_b: str) -> None:
        def work(report, cancelled):
            from tl_studio.core.run_compare import compare_on_validation

            return compare_on_validation(run_a, run_b, report=lambda done, total: report((done, total)),
                                         cancel=cancelled)

        self.validation.set_busy(True)
        task = self._tasks().start(work, "compare-runs")
        task.progress.connect(lambda done_total: self.validation.set_progress(*done_total))
        task.succeeded.connect(self.validation.show_result)
        task.failed.connect(self.validation.show_error)
        task.cancelled.connect(lambda: self.validation.show_error("Comparison cancelled."))
        self.compare_task = task

    def _cancel_compare(self) -> None:
        if self.compare_task is not None and self.compare_task.running:
            self.compare_task.cancel()

    def shutdown(self) -> None:
        self.live.timer.stop()
        self._reread.stop()
        self.loader.shutdown()
        if hasattr(self, "tasks"):
            self.tasks.shutdown()
        self.validation.shutdown()


def _inside(path, folder) -> bool:
    """``path`` is ``folder`` or lies in it (a run's model file in its run folder)."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except OSError:
        return False
