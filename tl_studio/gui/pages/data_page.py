"""The Data step: choose a folder (button, drag and drop, recent folders), scan it in the background,
and show the classes, counts per split, imbalance, every problem file and a thumbnail browser.

In the browser a wrongly labelled photo is fixed in place: double-click shows it larger, right-click
moves the selected images to another class folder, excludes them (into ``_excluded``) or shows their
folder. Moves and excludes go through the session's DataFixer, so Edit > Undo takes them back and the
rescan that follows updates the counts and the chart."""

from __future__ import annotations

import threading
from html import escape
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QMenu, QProgressBar, QPushButton, QSpinBox, QSplitter, QStackedWidget,
                               QTabWidget, QVBoxLayout, QWidget)

from tl_studio.core.wording import counted
from tl_studio.gui import recent
from tl_studio.gui.choice_box import ChoiceBox
from tl_studio.gui.class_chart import ClassChart
from tl_studio.gui.image_view import ImagePreview
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.problems_view import ProblemsView
from tl_studio.gui.tasks import TaskRunner
from tl_studio.gui.thumbnails import ThumbnailModel, thumbnail_view
from tl_studio.gui.welcome import Welcome

ALL = "__all__"


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
        self._file_changes = 0  # moves and undos so far: a check begun before one of them is stale
        self._say_progress = False  # whether the full check's progress goes to the status line
        self.folder: str | None = None
        self._build()
        session.datasetChanged.connect(self._show_scan)
        session.fixer.moved.connect(self._files_changed)
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
        self.warning = QLabel()
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
        apply = QPushButton("Apply split")
        apply.clicked.connect(self.rescan)
        form.addRow(f"Validation ({self.val_percent.minimum()}-{self.val_percent.maximum()} %)", self.val_percent)
        form.addRow(f"Test ({self.test_percent.minimum()}-{self.test_percent.maximum()} %)", self.test_percent)
        form.addRow("Seed", self.seed)
        form.addRow(apply)
        self.split_box.setEnabled(False)
        return self.split_box

    def _tabs(self) -> QTabWidget:
        self.class_box = QComboBox()
        self.class_box.currentIndexChanged.connect(self._show_class)
        self.split_filter = QComboBox()
        for value, text in ((ALL, "all splits"), ("train", "train"), ("val", "validation"), ("test", "test")):
            self.split_filter.addItem(text, value)
        self.split_filter.currentIndexChanged.connect(self._show_class)
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
        browser = QWidget()
        browser_layout = QVBoxLayout(browser)
        row = QHBoxLayout()
        row.addWidget(QLabel("Class"))
        row.addWidget(self.class_box, 1)
        row.addWidget(self.split_filter)
        browser_layout.addLayout(row)
        browser_layout.addWidget(self.thumbnail_view, 1)
        browser_layout.addWidget(self.image_hint)
        self.problems = ProblemsView()
        self.problems.excludeRequested.connect(self._exclude_problem_files)
        self.problems.message.connect(self.session.say)
        self.problem_model, self.problem_view = self.problems.model, self.problems.table
        self.tabs = QTabWidget()
        self.tabs.addTab(browser, "Images")
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

    def _files_changed(self, _move=None) -> None:
        """A move or an undo in the data set: a full check still running describes files that are no longer
        where it looked (it would call the moved file missing); it stops, and runs again after the rescan."""
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
        self._show_problems(scan.problems, scan.root)
        self._fill_classes(scan)

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
        self._say_progress = False
        self.session.fixer.exclude(paths, self.session.scan)

    def _fill_classes(self, scan) -> None:
        totals = scan.class_counts()
        current = self.class_box.currentData()
        self.class_box.blockSignals(True)
        self.class_box.clear()
        self.class_box.addItem(f"All classes ({len(scan.records)})", ALL)
        for label, name in enumerate(scan.classes):
            self.class_box.addItem(f"{name} ({totals[name]})", label)
        index = self.class_box.findData(current)
        self.class_box.setCurrentIndex(index if index >= 0 else 0)
        self.class_box.blockSignals(False)
        self._show_class()

    def _show_class(self) -> None:
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
            self._say_progress = False  # the check's progress must not hide what the fixer says
            self.session.fixer.move(to_move, class_name, scan, errors_in_status=True)

    def exclude_images(self, paths: list[str]) -> None:
        """Out of the class folders into _excluded, as the Problems tab does (the same undo history)."""
        if paths and self.session.scan is not None:
            self._say_progress = False
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

    def _fill_recent(self) -> None:
        self.recent_box.blockSignals(True)
        self.recent_box.clear()
        self.recent_box.addItems(recent.recent_folders())
        self.recent_box.setCurrentIndex(-1)
        self.recent_box.blockSignals(False)
        if hasattr(self, "welcome"):
            self.welcome.refresh()

    def shutdown(self) -> None:
        self._cancel_scan()
        self.tasks.shutdown()
        self.thumbnails.shutdown()


def _menu_text(name: str) -> str:
    """A class name as a menu item shows it: a lone & would be taken as a keyboard accelerator."""
    return name.replace("&", "&&")
