"""The main window: a step bar, the pages, menus and the status bar. It composes; the pages and the
session do the work."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QProgressDialog,
                               QScrollArea, QStackedWidget, QWidget)

from tl_studio.gui.about_dialog import add_help_actions
from tl_studio.gui import recent
from tl_studio.gui.collector import collect_in_gui_thread
from tl_studio.gui.session import Session
from tl_studio.gui.status_line import StepStatusLine
from tl_studio.gui.steps import ALWAYS_ENABLED, STEPS, WAITS_FOR, StepBar

log = logging.getLogger(__name__)


class _PageArea(QScrollArea):
    """The pages in an area that scrolls only when the window is smaller than the page shown needs: the
    window's own minimum was the largest page's (809 x 537 at 1x), so at 2x scaling on a 1600 x 1000
    screen it overhung the screen, with Start training and the status line beyond its edge. The page
    is sized here rather than by widgetResizable, which lays a page out at its preferred height (the
    Train step's 704 px) whenever a word-wrapped label gives it a height-for-width, and so scrolled
    pages that fit squeezed to their minimum."""

    def __init__(self, stack: QStackedWidget):
        super().__init__()
        self.setFrameShape(QFrame.NoFrame)
        self.setFocusPolicy(Qt.NoFocus)  # not a stop of its own when Tab goes through the step's controls
        self.setWidget(stack)
        stack.currentChanged.connect(lambda _: self._fit())
        stack.installEventFilter(self)  # a page whose minimum changes (a model evaluated, a longer text)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.widget() and event.type() == QEvent.LayoutRequest:
            self._fit()
        return False

    def viewportEvent(self, event) -> bool:
        if event.type() == QEvent.Resize:  # the window resized, or a scroll bar came or went
            self._fit()
        return super().viewportEvent(event)

    def _fit(self) -> None:
        stack = self.widget()
        page = stack.currentWidget()
        if page is None:
            return
        needed = page.minimumSizeHint().expandedTo(page.minimumSize())
        stack.resize(self.viewport().size().expandedTo(needed))


def _placeholder(text: str) -> QWidget:
    label = QLabel(text)
    label.setAlignment(Qt.AlignCenter)
    label.setWordWrap(True)
    return label


FIRST_SIZE = (1280, 820)  # the window at a first start, in device-independent pixels


class MainWindow(QMainWindow):
    def __init__(self, session: Session | None = None, parent=None):
        super().__init__(parent)
        # A window made without app.main (tests, an embedding app) needs it too: a garbage collection
        # in a background thread would destroy Qt objects there and can deadlock (see collector.py).
        collect_in_gui_thread()
        self.setObjectName("MainWindow")
        self.setWindowTitle("TL Studio")
        # A closed window is gone (scripts that look for "MainWindow" never find a stale one).
        self.setAttribute(Qt.WA_DeleteOnClose)
        self.setAcceptDrops(True)
        self.session = session or Session(self)
        self.steps = StepBar()
        self.stack = QStackedWidget()
        self.pages = self._make_pages()
        for name in STEPS:
            self.stack.addWidget(self.pages[name])
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.steps)
        self.page_area = _PageArea(self.stack)
        layout.addWidget(self.page_area, 1)
        self.setCentralWidget(central)
        self.steps.stepChosen.connect(self.stack.setCurrentIndex)
        runs = self.pages["Runs"]
        runs.runOpened.connect(lambda folder: self.open_model_file(str(folder / "model.pt2")))
        runs.resumeRequested.connect(self._resume_from_runs)
        self.pages["Train"].resumeChosen.connect(self._choose_run_to_resume)
        self._status = StepStatusLine(
            self.stack, "Choose a folder of labelled images to begin (File > Open Folder, or drop it here).")
        self.statusBar().addWidget(self._status, 1)
        self.session.said.connect(lambda message, step: self._status.say(message, STEPS.index(step) if step else None))
        for signal in (self.session.datasetChanged, self.session.modelFileChanged, self.session.trainingStateChanged):
            signal.connect(lambda *_: self._update_steps())
        self._build_menus()
        self._update_steps()
        self.steps.go_to("Data")
        self._restore_geometry()
        self._closing = False
        # torch and the model catalogue load after the window is on screen (start-up time)
        QTimer.singleShot(0, self._after_shown)

    def _make_pages(self) -> dict[str, QWidget]:
        from tl_studio.gui.pages.export_page import ExportPage
        from tl_studio.gui.pages.runs_page import RunsPage
        from tl_studio.gui.pages.train_page import TrainPage

        from tl_studio.gui.pages.data_page import DataPage

        return {
            "Data": DataPage(self.session),
            "Model": self._optional_page("model_page", "ModelPage", "Model selection"),
            "Train": TrainPage(self.session),
            "Evaluate": self._optional_page("evaluate_page", "EvaluatePage", "Evaluation of the trained model"),
            "Export": ExportPage(self.session),
            "Predict": self._optional_page("predict_page", "PredictPage", "Predictions on new images"),
            "Runs": RunsPage(self.session),
        }

    def _optional_page(self, module: str, cls: str, title: str) -> QWidget:
        """Pages under construction show a placeholder until their module exists."""
        import importlib

        try:
            page_class = getattr(importlib.import_module(f"tl_studio.gui.pages.{module}"), cls)
        except ImportError:
            return _placeholder(title)
        return page_class(self.session)

    def _after_shown(self) -> None:
        """torch and the engine load now, in the background, so they are ready before the user
        starts a run (an import holds Python's GIL for a moment; better now than mid-run), and the
        fork server that starts the runs' child processes starts beside them (gui/processes.py)."""
        from tl_studio.gui.libraries import load_libraries
        from tl_studio.gui.tasks import TaskRunner

        if self._closing:  # closed before the event loop got here: start nothing
            return

        def load_in_the_background(report, cancelled):
            from tl_studio.gui.processes import start_child_process_server

            try:
                start_child_process_server()  # its own process imports torch while this one does
            except Exception:  # only a head start: the first run starts the server (and reports) itself
                log.exception("the fork server for child processes did not start early")
            load_libraries()

        self.warm_up = TaskRunner(self)
        self.warm_up.start(load_in_the_background, "load-libraries")
        for page in self.pages.values():
            warm_up = getattr(page, "after_window_shown", None)
            if warm_up:
                warm_up()

    # ---- actions ------------------------------------------------------------------------------------
    def open_folder(self, path: str) -> None:
        self.steps.go_to("Data")
        self.pages["Data"].open_folder(str(path))

    def choose_folder(self) -> None:
        self.steps.go_to("Data")
        self.pages["Data"].choose_folder()

    def choose_model_file(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        from tl_studio.core.export_formats import open_dialog_filter
        from tl_studio.gui.runs_folder import dialog_start_folder

        path, _ = QFileDialog.getOpenFileName(self, "Open a trained model", str(dialog_start_folder()),
                                              open_dialog_filter())
        if path:
            self.open_model_file(path)

    def open_model_file(self, path: str) -> None:
        """A model trained earlier (or elsewhere): the Evaluate and Predict steps work on it. Its run
        folder, when the file sits in one, also enables Export. The file is checked first (a model file
        never runs code; TorchScript needs the user's confirmation)."""
        from tl_studio.gui.model_trust import open_for_the_app

        if open_for_the_app(self, self.session, path):
            self.steps.go_to("Evaluate")

    def _build_menus(self) -> None:
        self._build_file_menu()
        self._build_edit_menu()
        self._build_go_menu()
        self._build_train_menu()
        self._build_help_menu()

    def _build_file_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(QAction("&Open Folder…", self, shortcut=QKeySequence.Open, triggered=self.choose_folder))
        file_menu.addAction(QAction("Open &Model File…", self, shortcut=QKeySequence("Ctrl+Shift+O"),
                                    triggered=self.choose_model_file))
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(QAction("&Export Model…", self, shortcut=QKeySequence("Ctrl+E"), triggered=self._export))
        file_menu.addSeparator()
        file_menu.addAction(QAction("&Quit", self, shortcut=QKeySequence.Quit, triggered=self.close))

    def _build_edit_menu(self) -> None:
        """Undo of the data set's moves and excludes (the Evaluate step's galleries, the Data step's
        Problems tab: one history): window-wide, so Ctrl+Z works wherever the focus is (a text field
        still undoes its own typing first), and named after what it will undo. On the Runs step it
        undoes the last delete of runs first, as that step's Undo delete button does."""
        edit_menu = self.menuBar().addMenu("&Edit")
        self.undo_action = QAction("Undo", self, shortcut=QKeySequence.Undo, triggered=self._undo)
        self.undo_action.setEnabled(False)
        edit_menu.addAction(self.undo_action)
        fixer = self.session.fixer
        fixer.undoAvailable.connect(lambda *_: self._update_undo())
        fixer.moved.connect(lambda *_: self._update_undo())
        self.pages["Runs"].edits.undoChanged.connect(self._update_undo)
        self.stack.currentChanged.connect(lambda *_: self._update_undo())
        self._update_undo()

    def _run_delete_to_undo(self):
        """The Runs step's edits when that step is shown and its last delete can be undone, else None."""
        edits = self.pages["Runs"].edits
        return edits if self.stack.currentWidget() is self.pages["Runs"] and edits.trashed else None

    def _update_undo(self) -> None:
        fixer, runs = self.session.fixer, self._run_delete_to_undo()
        self.undo_action.setEnabled(runs is not None or fixer.can_undo)
        self.undo_action.setText(_menu_text((runs or fixer).undo_text()))

    def _undo(self) -> None:
        runs = self._run_delete_to_undo()
        if runs is not None:
            runs.undo_delete()
        else:
            self.session.fixer.undo()
        self._update_undo()

    def _build_go_menu(self) -> None:
        go_menu = self.menuBar().addMenu("&Go")
        self.go_actions = {}  # enabled as the step bar's items are (_update_steps)
        for number, name in enumerate(STEPS, start=1):
            self.go_actions[name] = QAction(f"&{number} {name}", self, shortcut=QKeySequence(f"Ctrl+{number}"),
                                            triggered=lambda _=False, n=name: self._go_to(n))
            go_menu.addAction(self.go_actions[name])

    def _go_to(self, name: str) -> None:
        row = STEPS.index(name)
        if self.steps.item(row).flags() & Qt.ItemIsEnabled:
            self.steps.go_to(name)
        else:
            self.session.say(f"{name} is not available yet: {WAITS_FOR[name]}.")

    def _build_train_menu(self) -> None:
        train_menu = self.menuBar().addMenu("&Train")
        train = self.pages["Train"]
        start = QAction("&Start Training", self, shortcut=QKeySequence("Ctrl+R"), triggered=self._start_training)
        train_menu.addAction(start)
        # offered while a run is active, as the Train step's own buttons are
        self.run_actions = [QAction("&Pause / Continue", self, shortcut=QKeySequence("Ctrl+P"),
                                    triggered=train.toggle_pause),
                            QAction("S&top", self, shortcut=QKeySequence("Ctrl+."), triggered=train.stop)]
        for action in self.run_actions:
            action.setEnabled(False)
            train_menu.addAction(action)
        self.session.trainingStateChanged.connect(self._offer_run_actions)
        resume = QAction("&Resume a Run…", self, shortcut=QKeySequence("Ctrl+Shift+R"),
                         triggered=self._choose_run_to_resume)
        train_menu.addAction(resume)
        self.start_actions = [start, resume]  # greyed out while a run is active, as the step's buttons are

    def _choose_run_to_resume(self) -> None:
        """From the Runs step's list, where each run says its state, epochs and accuracy: a folder
        dialog showed folder names only, and any folder, run or not."""
        self._go_to("Runs")
        self.pages["Runs"].offer_resume()

    def _offer_run_actions(self, active: bool) -> None:
        for action in self.run_actions:
            action.setEnabled(active)
        for action in self.start_actions:
            action.setEnabled(not active)

    def _build_help_menu(self) -> None:
        """The Help menu in one place (other Help entries hook in here)."""
        self.help_menu = self.menuBar().addMenu("&Help")
        self.help_menu.addAction(QAction("&Getting Started", self, shortcut=QKeySequence.HelpContents,
                                         triggered=self.show_getting_started))
        self.help_menu.addSeparator()
        add_help_actions(self.help_menu, self)  # About, Copy Diagnostics, the first-run check

    def show_getting_started(self):
        from tl_studio.gui.getting_started import GettingStartedDialog

        dialog = GettingStartedDialog(self.menuBar(), self)
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = recent.recent_folders()
        if not folders:
            self.recent_menu.addAction("No recent folders").setEnabled(False)
        for folder in folders:
            self.recent_menu.addAction(_menu_text(folder), lambda f=folder: self.open_folder(f))

    def _start_training(self) -> None:
        if self.session.scan is None and not self.session.scanning:
            # a message box, then the greyed-out Train step shown with no step highlighted in the list
            self.steps.go_to("Data")
            self.session.say("Choose a folder of labelled images first; then Start Training (Ctrl+R) trains on it.")
            return
        self.steps.go_to("Train")
        self.pages["Train"].start()

    def _export(self) -> None:
        if self.session.run_dir is None:
            self.session.say("Train a model first; then it can be exported.")
            return
        self.steps.go_to("Export")
        self.pages["Export"].export_as()

    def _resume_from_runs(self, folder, epochs) -> None:
        """The Train step is shown once the run trains: before, with no data folder open, it was still
        greyed out, and the bar showed no step while the Train step's curves ran."""
        self.pages["Train"].resume_run(folder, epochs or None)
        if self.session.training:
            self.steps.go_to("Train")

    def _update_steps(self) -> None:
        enabled = {"Data"}
        if self.session.scan is not None:
            enabled |= {"Model", "Train"}
        if self.session.training:  # a run resumed from the Runs step trains without a data folder open
            enabled |= {"Train"}
        if self.session.model_file is not None:
            enabled |= {"Evaluate", "Predict"}
        if self.session.run_dir is not None:
            enabled |= {"Export"}
        self.steps.set_enabled_steps(enabled)
        for name, action in self.go_actions.items():
            action.setEnabled(name in enabled or name in ALWAYS_ENABLED)

    # ---- drag and drop ------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile() and Path(urls[0].toLocalFile()).is_dir():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.open_folder(event.mimeData().urls()[0].toLocalFile())

    # ---- window state -------------------------------------------------------------------------------
    def _restore_geometry(self) -> None:
        geometry = QSettings().value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:  # a first start: 1280 x 820, or the screen's room when it is smaller (a 1024 x 768 laptop, 2x scaling)
            room = self.screen().availableGeometry()
            self.resize(min(FIRST_SIZE[0], room.width()), min(FIRST_SIZE[1], room.height()))

    def closeEvent(self, event) -> None:
        """Closing is safe at any moment: a run stops after its current batch (its last finished
        epoch is kept), then every background task is cancelled and joined before the window goes.
        A QThread still running when its object is destroyed would abort the whole process."""
        if self._closing:
            event.accept()
            return
        train = self.pages["Train"]
        if train.running:
            if ask_to_quit_while_training(self, train) != QMessageBox.Yes:
                event.ignore()
                return
            self._closing = True
            if train.running:  # it may have ended while the question waited
                stop_run_showing_progress(self, train)
        self._closing = True
        QSettings().setValue("window/geometry", self.saveGeometry())
        self.hide()  # the user sees the window go at once; joining the tasks below takes a moment
        if hasattr(self, "warm_up"):
            self.warm_up.shutdown()
        for page in self.pages.values():
            shutdown = getattr(page, "shutdown", None)
            if shutdown:
                shutdown()
        self.session.shutdown()
        super().closeEvent(event)


def _menu_text(name: str) -> str:
    """A name as a menu entry shows it: a menu takes "&" for its keyboard shortcut (the folder ants&bees
    was "antsbees" with the b underlined), "&&" for an "&"."""
    return name.replace("&", "&&")


def _quit_question(train) -> tuple[str, str]:
    """The title and text of the question before quitting, as the run stands now."""
    if not train.running:
        return "Training has ended", "The run has ended and its results are saved. Quit?"
    if train.writing_model_file:  # "Stop training and quit?" of a run that had finished training
        return "Writing the model file", ("The run has finished training and is writing its model file (this can "
                                          "take a minute on a CPU). Quit once it is written?")
    kept = ("The last finished epoch is kept; you can resume the run later." if train.epoch_finished else
            "No epoch has finished yet, so nothing of this run is kept.")
    return "Training is running", f"Stop training and quit? {kept}"


def ask_to_quit_while_training(parent, train) -> int:
    """Asks before quitting, in words that follow the run while the question waits: asked in the first
    epoch, it said "nothing of this run is kept" after epochs had finished and been saved."""
    box = QMessageBox(QMessageBox.Question, *_quit_question(train), QMessageBox.Yes | QMessageBox.No, parent)
    box.setDefaultButton(QMessageBox.No)

    def follow(*_) -> None:
        title, text = _quit_question(train)
        # the box never shrinks under the pointer: a shorter question moved Yes and No 100 px, and a click
        # meant for No landed beside it
        label = box.findChild(QLabel, "qt_msgbox_label")
        if label is not None and box.isVisible():
            label.setMinimumSize(label.size())
        box.setWindowTitle(title)
        box.setText(text)

    controller = train.controller
    for signal in (controller.epochEnded, controller.finished, train.runFinished):
        signal.connect(follow)
    try:
        return box.exec()
    finally:
        for signal in (controller.epochEnded, controller.finished, train.runFinished):
            signal.disconnect(follow)
        box.deleteLater()


def stop_run_showing_progress(parent, train) -> None:
    """Stops the run and waits for it in a nested event loop, so the dialog paints and counts the
    seconds (a blocking wait would leave a blank dialog). The engine stops within one batch and keeps
    the last finished epoch's checkpoint."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop

    writing = train.writing_model_file  # training has finished: the model file is written, then the app quits
    doing = "Writing the run's model file…" if writing else "Stopping training after the current batch…"
    dialog = QProgressDialog(doing, None, 0, 0, parent)
    dialog.setWindowTitle("Quitting")
    dialog.setWindowModality(Qt.ApplicationModal)
    dialog.setMinimumDuration(0)
    loop = QEventLoop()
    clock = QElapsedTimer()
    clock.start()
    ticker = QTimer(dialog)
    kept = ("The app quits once it is written." if writing else
            "The last finished epoch is kept; Train > Resume a Run… continues it later." if train.epoch_finished
            else "No epoch had finished: nothing of this run is kept.")
    ticker.timeout.connect(lambda: dialog.setLabelText(f"{doing} {clock.elapsed() // 1000} s\n{kept}"))
    ticker.start(250)
    train.controller.finished.connect(loop.quit)
    if not writing:
        train.controller.stop(quitting=True)  # no model-file export on the way out: the checkpoints are kept
    dialog.show()
    if train.running:
        loop.exec()
    ticker.stop()
    dialog.close()
    train.controller.finished.disconnect(loop.quit)
