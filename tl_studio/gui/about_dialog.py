"""Help > About (the PyTorch build, the GPU and whether it is used), Help > Copy Diagnostics, and the
first-run check that says once, after installing, whether training will use the GPU and, when an
NVIDIA GPU sits unused because of the PyTorch build, the command that fixes it.

The main window needs one line: ``add_help_actions(help_menu, window)``. The facts come from
``core.system_info``; collecting them imports torch and runs nvidia-smi, so it happens once, in the
background, and everything here works from that one report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QPixmap
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QMessageBox, QPushButton,
                               QVBoxLayout)

from tl_studio import __version__
from tl_studio.core import system_info
from tl_studio.gui.tasks import TaskRunner

FIRST_RUN_KEY = "firstRun/checkedVersion"  # the version whose first start has been checked


def _icon_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("tl_studio.resources") / "icons" / "tl-studio-64.png"))


class SystemCheck(QObject):
    """The SystemReport, collected once in the background; ``ready`` delivers it."""

    ready = Signal(object)

    def __init__(self, parent: QObject, collect: Callable = system_info.collect_report):
        super().__init__(parent)
        self.collect = collect
        self.report: system_info.SystemReport | None = None
        self.tasks = TaskRunner(self)
        self.failed_message: str | None = None
        self.closed = False  # the window is closing: no new thread may start

    def request(self) -> None:
        """Emits ``ready`` now when the report exists, else once it has been collected."""
        if self.report is not None:
            self.ready.emit(self.report)
            return
        if self.tasks.tasks or self.closed:
            return  # already collecting, or closing
        task = self.tasks.start(lambda report, cancelled: self.collect(), "system-check")
        task.succeeded.connect(self._collected)
        task.failed.connect(self._failed)

    def current(self) -> system_info.SystemReport | None:
        """The report with the last error as it is now (errors happen after the report was made)."""
        if self.report is None:
            return None
        return dataclasses.replace(self.report, last_error=system_info.last_error())

    def _collected(self, report) -> None:
        self.report = report
        self.ready.emit(report)

    def _failed(self, message: str) -> None:
        self.failed_message = message
        system_info.remember_error(message)

    def shutdown(self) -> None:
        self.closed = True
        self.tasks.shutdown()


class AboutDialog(QDialog):
    """The version, the PyTorch build, where training runs and, when it applies, the fix."""

    def __init__(self, check: SystemCheck, parent=None, say: Callable[[str], None] | None = None):
        super().__init__(parent)
        self.check, self.say = check, say
        self.setWindowTitle("About TL Studio")
        icon = QLabel()
        icon.setPixmap(QPixmap(str(_icon_path())))
        title = QLabel(f"<h3>TL Studio {__version__}</h3>Transfer learning on images: from a folder of "
                       f"labelled images to a trained model file.")
        title.setWordWrap(True)
        header = QHBoxLayout()
        header.addWidget(icon, 0, Qt.AlignTop)
        header.addWidget(title, 1)
        self.facts = QLabel("Checking PyTorch and the GPU…")
        self.facts.setObjectName("systemFacts")
        self.advice = QLabel()
        self.advice.setObjectName("installAdvice")
        self.advice.hide()
        for label in (self.facts, self.advice):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.copy_button = QPushButton("Copy Diagnostics")
        self.copy_button.setToolTip("Versions, devices and the last error, for a bug report")
        buttons.addButton(self.copy_button, QDialogButtonBox.ActionRole)
        self.copy_button.clicked.connect(lambda: copy_diagnostics(self.check, self._copied))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.facts)
        layout.addWidget(self.advice)
        layout.addWidget(buttons)
        self.setMinimumWidth(520)
        check.ready.connect(self.show_report)
        check.request()

    def _copied(self, message: str) -> None:
        """Said where the user looks, on the button (the status line is behind the dialog), and on the
        status line too: the button gave no sign that anything happened."""
        self.copy_button.setText("Copied to the clipboard")
        if self.say:
            self.say(message)

    def show_report(self, report: system_info.SystemReport) -> None:
        self.facts.setText(f"PyTorch {report.torch.version} ({report.torch.kind}), torchvision "
                           f"{report.torch.torchvision or 'missing'}, Python {report.python}.\n"
                           f"{system_info.gpu_summary(report)}")
        advice = system_info.install_advice(report)
        self.advice.setText(advice or "")
        self.advice.setVisible(bool(advice))


def copy_diagnostics(check: SystemCheck, say: Callable[[str], None] | None = None) -> None:
    """Puts the diagnostics on the clipboard (once the report exists) and says so."""
    def copy() -> None:
        QGuiApplication.clipboard().setText(system_info.as_text(check.current()))
        if say:
            say("Diagnostics copied to the clipboard: paste them into your bug report.")

    def copy_once_collected(_report) -> None:
        check.ready.disconnect(copy_once_collected)
        copy()

    if check.report is not None:
        copy()
        return
    check.ready.connect(copy_once_collected)
    check.request()


class FirstRunCheck(QObject):
    """Once per installed version: where training will run, in the status bar; and when an NVIDIA GPU
    sits unused, a (non-blocking) message with the command that fixes it.

    A QObject with slots rather than closures: a closure that held the window and stayed connected to
    one of the window's children would tie the window's lifetime to Python's garbage collector."""

    def __init__(self, window, check: SystemCheck, settings: QSettings | None = None):
        super().__init__(window)
        self.check = check
        self.say = window.session.say
        self.settings = settings or QSettings()

    def start(self) -> None:
        if self.settings.value(FIRST_RUN_KEY) == __version__:
            return
        self.check.ready.connect(self._checked)
        self.check.request()

    def _checked(self, report) -> None:
        self.check.ready.disconnect(self._checked)
        self.settings.setValue(FIRST_RUN_KEY, __version__)
        summary = f"PyTorch {report.torch.version} ({report.torch.kind}). {system_info.gpu_summary(report)}"
        self.say(summary)
        advice = system_info.install_advice(report)
        if advice:
            box = QMessageBox(QMessageBox.Information, "Your GPU is not used", f"{summary}\n\n{advice}",
                              QMessageBox.Ok, self.parent())
            box.setObjectName("firstRunAdvice")
            box.setTextInteractionFlags(Qt.TextSelectableByMouse)
            box.setModal(False)
            box.setAttribute(Qt.WA_DeleteOnClose)
            box.show()


def first_run_check(window, check: SystemCheck, settings: QSettings | None = None) -> FirstRunCheck:
    first_run = FirstRunCheck(window, check, settings)
    first_run.start()
    return first_run


class _HelpActions(QObject):
    """The Help menu's slots (bound methods, not closures over the window: see FirstRunCheck)."""

    def __init__(self, window, check: SystemCheck):
        super().__init__(window)
        self.check = check
        self.say = window.session.say

    def show_about(self) -> None:
        AboutDialog(self.check, self.parent(), self.say).exec()

    def copy_diagnostics(self) -> None:
        copy_diagnostics(self.check, self.say)


class _ShutdownOnClose(QObject):
    """Stops the system check's thread when the window closes (a running QThread must not be
    destroyed with the window)."""

    def __init__(self, window, check: SystemCheck):
        super().__init__(window)
        self.check = check
        window.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Close:
            self.check.shutdown()
        return False


def attach_system_check(window, collect: Callable = system_info.collect_report) -> SystemCheck:
    """A SystemCheck owned by the window, its thread stopped when the window closes."""
    check = SystemCheck(window, collect)
    _ShutdownOnClose(window, check)
    return check


def add_help_actions(menu, window) -> SystemCheck:
    """Help > About TL Studio… and Help > Copy Diagnostics, and the first-run check once the window is
    on screen. ``window`` needs ``session.say`` (the status bar)."""
    system_info.record_errors()
    check = attach_system_check(window)
    slots = _HelpActions(window, check)
    about = QAction("&About TL Studio…", window)
    about.triggered.connect(slots.show_about)
    copy = QAction("&Copy Diagnostics", window)
    copy.setToolTip("Copy versions, devices and the last error to the clipboard, for a bug report")
    copy.triggered.connect(slots.copy_diagnostics)
    menu.addAction(about)
    menu.addAction(copy)
    # after the window is on screen (a slot of the window's child: never runs once the window is gone)
    QTimer.singleShot(0, FirstRunCheck(window, check).start)
    return check
