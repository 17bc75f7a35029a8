"""The main window: a step bar, the pages, menus and the status bar. It composes; the pages and the
session do the work."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QMessageBox, QStackedWidget, QWidget

from tl_studio import __version__
from tl_studio.gui.session import Session
from tl_studio.gui.steps import STEPS, StepBar


class MainWindow(QMainWindow):
    def __init__(self, session: Session | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("MainWindow")
        self.setWindowTitle("TL Studio")
        self.session = session or Session(self)
        self.steps = StepBar()
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        for name in STEPS:
            page = self._make_page(name)
            self.pages[name] = page
            self.stack.addWidget(page)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.steps)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.steps.stepChosen.connect(self.stack.setCurrentIndex)
        self._status = QLabel("Choose a folder of labelled images to begin.")
        self.statusBar().addWidget(self._status, 1)
        self.session.statusMessage.connect(self._status.setText)
        self._build_menus()
        self._update_steps()
        self.steps.go_to("Data")
        self._restore_geometry()

    def _make_page(self, name: str) -> QWidget:
        label = QLabel(f"{name}: coming soon")
        label.setAlignment(Qt.AlignCenter)
        return label

    def open_folder(self, path: str) -> None:
        """Loads a dataset folder (the Data step does the scanning)."""
        self.session.say(f"Opening {path}...")

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.Quit, triggered=self.close)
        file_menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(QAction("&About TL Studio", self, triggered=self._about))

    def _update_steps(self) -> None:
        enabled = {"Data"}
        if self.session.scan is not None:
            enabled |= {"Model", "Train"}
        if self.session.model_file is not None:
            enabled |= {"Evaluate", "Export"}
        self.steps.set_enabled_steps(enabled)

    def _about(self) -> None:
        QMessageBox.about(self, "About TL Studio",
                          f"TL Studio {__version__}\nTransfer learning on images: from a folder of labelled "
                          f"images to a trained model file.")

    def _restore_geometry(self) -> None:
        geometry = QSettings().value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1200, 800)

    def closeEvent(self, event) -> None:
        QSettings().setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)
