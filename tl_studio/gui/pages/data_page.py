"""The Data step: choose a folder (button, drag and drop, recent folders), scan it in the background,
and show the classes, counts per split, imbalance, every problem file and a thumbnail browser, where a
wrongly labelled photo is fixed in place (gui/data_browser.py)."""

from __future__ import annotations

import threading
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSpinBox, QSplitter, QStackedWidget, QTabWidget, QVBoxLayout, QWidget)

from tl_studio.core.wording import counted
from tl_studio.gui import recent
from tl_studio.gui.choice_box import ChoiceBox
from tl_studio.gui.class_chart import ClassChart
from tl_studio.gui.data_browser import DataBrowser
from tl_studio.gui.literal_text import as_written, never_wider_than_its_room
from tl_studio.gui.problems_view import ProblemsView
from tl_studio.gui.tasks import TaskRunner
from tl_studio.gui.welcome import Welcome


class DataPage(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.tasks = TaskRunner(self)
        self.scan_task = None
        self.verify_task = None
        # Set while a training run is active: the full decode check waits (see verify_images).
        self.verify_hold = threading.Event()
        # The last finished full check: (folder, the files it decoded, the problems it found). After a move
        # only the files with a new path are decoded again.
        self._full_check: tuple | None = None
        self._split_shown: tuple | None = None  # the split the boxes last took from a data set shown
        self._file_changes = 0  # moves and undos so far: a check begun before one of them is stale
        self._say_progress = False  # whether the full check's progress goes to the status line
        self.folder: str | None = None
        self._build()
        session.datasetChanged.connect(self._show_scan)
        session.fixer.filesChanged.connect(self._files_changed)
        session.fixer.rescanned.connect(self._fix_rescanned)
        session.trainingStateChanged.connect(self._training_state_changed)
        # the Train step's Class weighting decides what the imbalance line says
        session.configChanged.connect(lambda _: self._show_imbalance(session.scan) if session.scan else None)

    # ---- layout -------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.choose_button = QPushButton("Choose folder…")
        self.choose_button.setToolTip("A folder with one sub-folder per class (Ctrl+O). You can also drop a folder "
                                      "onto the window.")
        self.choose_button.clicked.connect(self.choose_folder)
        self.recent_box = ChoiceBox()  # a pick opens a folder: never on a passing mouse wheel
        self.recent_box.setPlaceholderText("Recent folders")
        self.recent_box.setMinimumContentsLength(30)
        self.recent_box.activated.connect(lambda i: self.open_folder(self.recent_box.itemText(i)))
        self._fill_recent()
        top = QHBoxLayout()
        top.addWidget(self.choose_button)
        top.addWidget(self.recent_box, 1)
        self.progress = QProgressBar()
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self._cancel_scan)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.summary = QLabel("No dataset yet. Choose a folder that has one sub-folder per class, like\n"
                              "  flowers/daisy/*.jpg, flowers/rose/*.jpg …\nor train/ and val/ folders "
                              "that each hold the class folders.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.warning = never_wider_than_its_room(QLabel())  # it names classes
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("QLabel { background: #fff3cd; color: #664d03; padding: 6px; border-radius: 4px; }")
        self.warning.hide()
        self.chart = ClassChart()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.summary)
        left_layout.addWidget(self.warning)
        left_layout.addWidget(self.chart, 1)
        left_layout.addWidget(self._split_box())
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self._tabs())
        splitter.setSizes([420, 700])
        # Before any data set: a welcome (how to begin, recent folders, an example layout), not an
        # empty chart.
        self.welcome = Welcome()
        self.welcome.chooseFolder.connect(self.choose_folder)
        self.welcome.openFolder.connect(self.open_folder)
        self.body = QStackedWidget()
        self.body.addWidget(self.welcome)
        self.body.addWidget(splitter)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(progress_row)
        layout.addWidget(self.body, 1)

    def _split_box(self) -> QGroupBox:
        self.split_box = QGroupBox("Split (for folders without train/ and val/)")
        form = QFormLayout(self.split_box)
        # Percentages, as the summary shows the split; each row's label gives its range, because a spin
        # box refuses a keystroke that would leave it (typing 60 into the validation box stops at "6").
        self.val_percent = QSpinBox(minimum=5, maximum=50, singleStep=5, value=20, suffix=" %")
        self.val_percent.setToolTip("Share of each class held out for validation (stratified), 5 to 50 %.")
        self.test_percent = QSpinBox(minimum=0, maximum=40, singleStep=5, value=0, suffix=" %")
        self.test_percent.setToolTip("Share held out for a final test, never seen during training, 0 to 40 %.")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.seed.setToolTip("The same seed gives the same split every time.")
        apply = self.apply_split_button = QPushButton("Apply split")
        apply.clicked.connect(self.rescan)
        # typed and not applied: said here, and asked about by Start (training ran on the old split, the
        # boxes saying 15 % over a summary of 30 %)
        self.split_pending_label = QLabel(wordWrap=True)
        self.split_pending_label.setStyleSheet("QLabel { color: #664d03; }")
        self.split_pending_label.hide()
        for box in (self.val_percent, self.test_percent, self.seed):
            box.valueChanged.connect(lambda _: self._show_split_pending())
        form.addRow(f"Validation ({self.val_percent.minimum()}-{self.val_percent.maximum()} %)", self.val_percent)
        form.addRow(f"Test ({self.test_percent.minimum()}-{self.test_percent.maximum()} %)", self.test_percent)
        form.addRow("Seed", self.seed)
        form.addRow(apply)
        form.addRow(self.split_pending_label)
        self.split_box.setEnabled(False)
        return self.split_box

    def _tabs(self) -> QTabWidget:
        self.browser = DataBrowser(self.session, self.tasks)
        self.browser.fixStarted.connect(self._fix_started)
        self.problems = ProblemsView()
        self.problems.excludeRequested.connect(self._exclude_problem_files)
        self.problems.message.connect(self.session.say)
        self.problem_model, self.problem_view = self.problems.model, self.problems.table
        self.tabs = QTabWidget()
        self.tabs.addTab(self.browser, "Images")
        self.tabs.addTab(self.problems, "Problems")
        return self.tabs

    # ---- scanning -----------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        start = self.folder or (recent.recent_folders() or [str(Path.home())])[0]
        folder = QFileDialog.getExistingDirectory(self, "Choose a dataset folder", start)
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str) -> None:
        self.folder = str(folder)
        self.rescan()

    def rescan(self) -> None:
        from tl_studio.core.data import scan_dataset

        if not self.folder:
            return
        self._cancel_scan()
        self.welcome.show_problem(None)  # a reason given for the folder before is not this one's
        folder, seed = self.folder, self.seed.value()
        val, test = self.val_percent.value() / 100, self.test_percent.value() / 100
        self.progress.setRange(0, 0)
        self.progress.setFormat(f"Scanning {folder}…")
        self.progress.show()
        self.cancel_button.show()
        self.session.set_scanning(folder)
        self.session.say(f"Scanning {folder}…")
        self.scan_task = self.tasks.start(
            lambda report, cancelled: scan_dataset(folder, val_fraction=val, test_fraction=test, seed=seed,
                                                   progress=lambda d, t: report((d, t)), cancel=cancelled), "scan")
        task = self.scan_task
        # Only the latest scan reports: an older one, cancelled by this one, must not end it (hide its
        # progress, let Start go ahead) when its own end arrives later.
        def latest(handler):
            return lambda *args: handler(*args) if task is self.scan_task else None

        task.progress.connect(latest(self._on_progress))
        task.succeeded.connect(latest(self._on_scanned))
        task.failed.connect(latest(self._on_failed))
        task.cancelled.connect(latest(lambda: self._scan_ended("Scan cancelled.")))

    def _on_progress(self, progress) -> None:
        done, total = progress
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat(f"Checking files: {done}/{total}")
        else:
            self.progress.setFormat(f"Listing files: {done} found")

    def _on_scanned(self, scan) -> None:
        self._scan_ended(f"Found {len(scan.records)} images in {len(scan.classes)} classes.")
        self.folder = str(scan.root)  # as the recent folders list it
        recent.add_recent_folder(str(scan.root))
        self._fill_recent()
        self.session.set_dataset(scan)
        self._verify(scan)

    def _on_failed(self, message: str) -> None:
        """The folder cannot be used: say so, and say which data set is still loaded (its chart and
        thumbnails stay on screen), so nobody mistakes them for the folder just chosen."""
        failed = self.folder
        loaded = self.session.scan
        self.folder = str(loaded.root) if loaded is not None else None  # Apply split acts on what is shown
        if loaded is None:
            self._scan_ended(message)
            self.summary.setText(as_written(message))  # it may quote the folder's name
            self.welcome.show_problem(f"Could not open {failed}: {message}" if failed not in message else message)
            return
        self._scan_ended(f"Could not open {failed}; still using {loaded.root}.")
        # rich text: the folder names in it are the user's, escaped
        self.summary.setText(f"<b>Could not open {escape(str(failed))}</b>: {escape(message)}<br><br>"
                             f"Still loaded: <b>{escape(str(loaded.root))}</b> "
                             f"({len(loaded.records)} images in {len(loaded.classes)} classes); the other steps "
                             f"use it.")

    def _scan_ended(self, message: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.session.set_scanning(None)
        self.session.say(message)

    def _cancel_scan(self) -> None:
        for task in (self.scan_task, self.verify_task):
            if task is not None and task.running:
                task.cancel()

    def _verify(self, scan, after_fix: bool = False) -> None:
        """The full decode check, after the fast header-level scan, in the background.

        ``after_fix``: ``scan`` is the rescan after a move or an undo. A finished full check of this folder
        still holds for every file at the same path, so only the files with a new path (the moved ones) are
        decoded again, and quietly: the status line keeps "Moved ... Undo with Ctrl+Z"."""
        from dataclasses import replace

        from tl_studio.core.data import verify_images

        known = self._full_check if after_fix and self._full_check and self._full_check[0] == scan.root else None
        if known is None:
            self._full_check = None  # until this check ends, nothing is known to hold
            to_check, carried = scan, []
        else:
            present = {scan.relative(r.path) for r in scan.records}
            carried = [problem for problem in known[2] if problem.path in present]
            to_check = replace(scan, records=tuple(r for r in scan.records if scan.relative(r.path) not in known[1]))
        changes = self._file_changes
        self.verify_task = self.tasks.start(
            lambda report, cancelled: verify_images(to_check, progress=lambda d, t: report((d, t)),
                                                    cancel=cancelled, hold=self.verify_hold),
            "verify")
        if not after_fix:
            # not once the user moves files: "Checking…" would hide what the move said (or why it failed)
            self._say_progress = True
            self.verify_task.progress.connect(
                lambda p: self.session.say(f"Checking every image fully: {p[0]}/{p[1]}")
                if p[1] and self._say_progress and changes == self._file_changes else None)
        self.verify_task.succeeded.connect(
            lambda problems: self._verified(scan, carried + list(problems), changes, quiet=after_fix))

    def _files_changed(self) -> None:
        """A move or an undo in the data set, or a move that found its file gone: a full check still running
        describes files that are no longer where it looked (it would call the moved file missing, or say
        every image decodes after the move's failure was said); it stops, and runs again after the rescan."""
        self._file_changes += 1
        if self.verify_task is not None and self.verify_task.running:
            self.verify_task.cancel()

    def _fix_rescanned(self, scan) -> None:
        """The rescan after a fix (or a fix that failed: a file gone since the scan) replaces the scan any
        running check was for."""
        if self.session.scan is scan and self.folder and Path(scan.root) == Path(self.folder):
            self._files_changed()
            self._verify(scan, after_fix=True)

    def _training_state_changed(self, active: bool) -> None:
        if active:
            self.verify_hold.set()
        else:
            self.verify_hold.clear()

    def _verified(self, scan, problems, changes: int | None = None, quiet: bool = False) -> None:
        if self.session.scan is not scan or changes not in (None, self._file_changes):
            return  # a newer scan replaced it meanwhile, or files moved since the check began
        self._full_check = (scan.root, frozenset(scan.relative(r.path) for r in scan.records), tuple(problems))
        if quiet:  # the re-check after a move: only a problem is news
            if problems:
                self.session.set_dataset(scan.with_problems(problems))
            return
        images = f"{counted(len(scan.records), 'image')} in {counted(len(scan.classes), 'class', 'classes')}"
        if problems:
            self.session.set_dataset(scan.with_problems(problems))
            self.session.say(f"Full check: {counted(len(problems), 'more image')} cannot be used (see Problems).")
        elif scan.problems:  # "Every image decodes" read as "no problems" beside a Problems (4) tab
            from tl_studio.core.problem_summary import files_left_out

            # not every problem is a file left out: a duplicate or a class of one image is kept
            left_out = files_left_out(scan.problems)
            extra = f" ({counted(left_out, 'file')} left out)" if left_out else ""
            self.session.say(f"Full check: the {images} decode; the Problems tab lists "
                             f"{counted(len(scan.problems), 'problem')}{extra}.")
        else:
            self.session.say(f"Every image decodes. {images}.")

    # ---- showing a scan -----------------------------------------------------------------------------
    def _show_scan(self, scan) -> None:
        if scan is None:
            self.body.setCurrentWidget(self.welcome)
            return
        shown_here = self.folder and Path(self.folder).resolve() == Path(scan.root).resolve()
        if self.session.scanning is None and not shown_here:
            # opened on another step (Evaluate's "Move to class" on a resumed run's folder): this step's
            # line still asked for a folder, and its actions must act on the one shown
            self.folder = str(scan.root)
            self._fill_recent()
            self.session.say(f"Opened {scan.root} on another step: {counted(len(scan.records), 'image')} in "
                             f"{counted(len(scan.classes), 'class', 'classes')}.", "Data")
        self.body.setCurrentIndex(1)
        counts = scan.counts()
        totals = {split: sum(counts[split].values()) for split in ("train", "val", "test")}
        total = max(1, sum(totals.values()))
        if scan.presplit:
            layout = "already split into train/val folders: " + ", ".join(
                f"{split} {count}" for split, count in totals.items() if count)
        else:
            # the shares each split got, beside the ones asked: a split is drawn per image from its file,
            # so a small folder lands near the asked shares, not on them ("split 10% / 50% / 40%" above
            # counts of 10% / 38% / 53% read as a miscount)
            asked = (1 - scan.val_fraction - scan.test_fraction, scan.val_fraction, scan.test_fraction)
            layout = ("split " + ", ".join(f"{split} {count} ({count / total:.0%})" for split, count in totals.items()
                                           if count) +
                      f" (asked {' / '.join(f'{share:.0%}' for share in asked)}, seed {scan.seed})")
        # rich text: the folder's name is the user's, escaped
        uneven = f"<br>{escape(note)}" if (note := scan.uneven_split()) else ""
        self.summary.setText(f"<b>{escape(str(scan.root))}</b><br>{counted(len(scan.records), 'image')} in "
                             f"{counted(len(scan.classes), 'class', 'classes')}, {layout}. "
                             f"{counted(len(scan.problems), 'problem')}.{uneven}")
        self._show_imbalance(scan)
        self.chart.show_counts(list(scan.classes), counts)
        self.split_box.setEnabled(not scan.presplit)
        self._show_split_of(scan)
        self._show_problems(scan.problems, scan.root)
        self.browser.fill_classes(scan)

    def _show_split_of(self, scan) -> None:
        """The boxes say the split of the data set shown when it is another split than the last shown (a
        folder opened on another step, with its run's split); the same split shown again (the full check,
        a move) leaves what the user is typing."""
        split = (str(scan.root), round(scan.val_fraction * 100), round(scan.test_fraction * 100), scan.seed)
        if not scan.presplit and split != self._split_shown:
            for box, value in zip((self.val_percent, self.test_percent, self.seed), split[1:]):
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)
        self._split_shown = split
        self._show_split_pending()

    def _show_split_pending(self) -> None:
        scan = self.session.scan
        typed = (self.val_percent.value(), self.test_percent.value(), self.seed.value())
        in_use = ""  # the split the steps use, when the boxes say another
        if scan is not None and not scan.presplit and self.folder and Path(self.folder) == Path(scan.root):
            applied = (round(scan.val_fraction * 100), round(scan.test_fraction * 100), scan.seed)
            if typed != applied:
                in_use = (f"the steps use validation {applied[0]} %, test {applied[1]} %, seed {applied[2]} until "
                          "you press Apply split.")
        self.split_pending_label.setText(f"Not applied: {in_use}" if in_use else "")
        self.split_pending_label.setVisible(bool(in_use))
        self.apply_split_button.setDefault(bool(in_use))
        self.session.split_pending = in_use and (f"The split boxes say validation {typed[0]} %, test {typed[1]} %, "
                                                 f"seed {typed[2]}; {in_use}")

    def _show_imbalance(self, scan) -> None:
        """What the run will do about imbalanced classes, in the words of its own notes (the Train step's
        Class weighting setting decides)."""
        from tl_studio.core.class_weighting import plan_weighting

        counts = [scan.counts()["train"].get(name, 0) for name in scan.classes]
        said = plan_weighting(counts, self.session.config.class_weighting).sentences(scan.classes)
        self.warning.setText(" ".join(said))
        self.warning.setVisible(bool(said))

    def _show_problems(self, problems, root) -> None:
        self.problems.set_problems(problems, Path(root))
        self.tabs.setTabText(1, f"Problems ({len(problems)})")

    def _exclude_problem_files(self, paths: list[str]) -> None:
        """Out of the class folders into _excluded (asked once per data set, never deleted), through the
        session's fixer: the same undo history as the Evaluate step's moves. It rescans, so the file
        leaves the list."""
        self._fix_started()
        self.session.fixer.exclude(paths, self.session.scan)

    def _fix_started(self) -> None:
        self._say_progress = False  # the full check's progress must not hide what the fixer says

    def _fill_recent(self) -> None:
        self.recent_box.blockSignals(True)
        self.recent_box.clear()
        self.recent_box.addItems(recent.recent_folders())
        # the open folder, when it is one of them: the box read "Recent folders" with a folder open
        self.recent_box.setCurrentIndex(self.recent_box.findText(self.folder) if self.folder else -1)
        self.recent_box.blockSignals(False)
        if hasattr(self, "welcome"):
            self.welcome.refresh()

    def shutdown(self) -> None:
        self._cancel_scan()
        self.tasks.shutdown()
        self.browser.shutdown()
