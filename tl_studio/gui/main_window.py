"""The main window: a step bar, the pages, menus and the status bar. It composes; the pages and the
session do the work."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QMainWindow, QMessageBox, QProgressDialog, QStackedWidget,
                               QWidget)

from tl_studio import __version__
from tl_studio.core import run_folder
from tl_studio.gui import recent
from tl_studio.gui.session import Session
from tl_studio.gui.steps import STEPS, StepBar


def _placeholder(text: str) -> QWidget:
    label = QLabel(text)
    label.setAlignment(Qt.AlignCenter)
    label.setWordWrap(True)
    return label


class MainWindow(QMainWindow):
    def __init__(self, session: Session | None = None, parent=None):
        super().__init__(parent)
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
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.steps.stepChosen.connect(self.stack.setCurrentIndex)
        self._status = QLabel("Choose a folder of labelled images to begin (File > Open Folder, or drop it here).")
        self.statusBar().addWidget(self._status, 1)
        self.session.statusMessage.connect(self._status.setText)
        for signal in (self.session.datasetChanged, self.session.modelFileChanged, self.session.trainingStateChanged):
            signal.connect(lambda *_: self._update_steps())
        self._build_menus()
        self._update_steps()
        self.steps.go_to("Data")
        self._restore_geometry()
        # torch and the model catalogue load after the window is on screen (start-up time)
        QTimer.singleShot(0, self._after_shown)

    def _make_pages(self) -> dict[str, QWidget]:
        from tl_studio.gui.pages.export_page import ExportPage
        from tl_studio.gui.pages.train_page import TrainPage

        from tl_studio.gui.pages.data_page import DataPage

        return {
            "Data": DataPage(self.session),
            "Model": self._optional_page("model_page", "ModelPage", "Model selection"),
            "Train": TrainPage(self.session),
            "Evaluate": self._optional_page("evaluate_page", "EvaluatePage", "Evaluation of the trained model"),
            "Export": ExportPage(self.session),
            "Predict": self._optional_page("predict_page", "PredictPage", "Predictions on new images"),
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
        starts a run (an import holds Python's GIL for a moment; better now than mid-run)."""
        from tl_studio.gui.libraries import load_libraries
        from tl_studio.gui.tasks import TaskRunner

        self.warm_up = TaskRunner(self)
        self.warm_up.start(lambda report, cancelled: load_libraries(), "load-libraries")
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

        path, _ = QFileDialog.getOpenFileName(self, "Open a trained model", "", "Model files (*.pt2 *.onnx *.ts)")
        if path:
            self.open_model_file(path)

    def open_model_file(self, path: str) -> None:
        """A model trained earlier (or elsewhere): the Evaluate and Predict steps work on it. Its run
        folder, when the file sits in one, also enables Export."""
        path = Path(path)
        run_dir = path.parent if (path.parent / run_folder.BEST_CHECKPOINT).is_file() else None
        self.session.set_run(run_dir, path)
        self.session.say(f"Opened {path.name}.")
        self.steps.go_to("Evaluate")

    def _build_menus(self) -> None:
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
        train_menu = self.menuBar().addMenu("&Train")
        train = self.pages["Train"]
        train_menu.addAction(QAction("&Start Training", self, shortcut=QKeySequence("Ctrl+R"),
                                     triggered=self._start_training))
        train_menu.addAction(QAction("&Pause / Resume", self, shortcut=QKeySequence("Ctrl+P"),
                                     triggered=train.toggle_pause))
        train_menu.addAction(QAction("S&top", self, shortcut=QKeySequence("Ctrl+."), triggered=train.stop))
        train_menu.addAction(QAction("&Resume a Run…", self, triggered=train.choose_run_to_resume))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(QAction("&About TL Studio", self, triggered=self._about))

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = recent.recent_folders()
        if not folders:
            self.recent_menu.addAction("No recent folders").setEnabled(False)
        for folder in folders:
            self.recent_menu.addAction(folder, lambda f=folder: self.open_folder(f))

    def _start_training(self) -> None:
        self.steps.go_to("Train")
        self.pages["Train"].start()

    def _export(self) -> None:
        if self.session.run_dir is None:
            self.session.say("Train a model first; then it can be exported.")
            return
        self.steps.go_to("Export")
        self.pages["Export"].export()

    def _update_steps(self) -> None:
        enabled = {"Data"}
        if self.session.scan is not None:
            enabled |= {"Model", "Train"}
        if self.session.model_file is not None:
            enabled |= {"Evaluate", "Predict"}
        if self.session.run_dir is not None:
            enabled |= {"Export"}
        self.steps.set_enabled_steps(enabled)

    def _about(self) -> None:
        QMessageBox.about(self, "About TL Studio",
                          f"TL Studio {__version__}\nTransfer learning on images: from a folder of labelled "
                          f"images to a trained model file.")

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
        else:
            self.resize(1280, 820)

    def closeEvent(self, event) -> None:
        train = self.pages["Train"]
        if train.running:
            answer = QMessageBox.question(
                self, "Training is running",
                "Stop training and quit? The last finished epoch is kept; you can resume the run later.")
            if answer != QMessageBox.Yes:
                event.ignore()
                return
            self._stop_training_and_wait(train)
        if hasattr(self, "warm_up"):
            self.warm_up.shutdown()
        for page in self.pages.values():
            shutdown = getattr(page, "shutdown", None)
            if shutdown:
                shutdown()
        QSettings().setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)

    def _stop_training_and_wait(self, train) -> None:
        dialog = QProgressDialog("Stopping training after the current batch…", None, 0, 0, self)
        dialog.setWindowModality(Qt.WindowModal)
        dialog.show()
        train.controller.stop_and_wait()
        dialog.close()
