"""GUI test set-up: isolated settings and run folders, and a guard against leaked QThreads
(napari's _dangling_qthreads idea)."""

from __future__ import annotations

import weakref

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QCoreApplication, QSettings, QThread  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def gc_in_gui_thread(qapp):
    """As in the app (gui/collector.py): garbage cycles are collected in the GUI thread only. A test
    session leaves many such cycles behind (closed windows' pyqtgraph menus); collected by a scan or
    training thread, they deadlocked a window test."""
    from tl_studio.gui.collector import collect_in_gui_thread

    collect_in_gui_thread()
    yield


@pytest.fixture(scope="session", autouse=True)
def libraries_loaded_first(gc_in_gui_thread):
    """torch, torchvision and timm imported once, here, before any test or background task needs them.
    The app's background tasks serialise their imports (gui/libraries.py), but a test's own code imports
    torch in the main thread (fixtures that train a model, plain-torch references): two threads importing
    torchvision at once fail ("partially initialized module") or worse."""
    from tl_studio.gui.libraries import load_libraries

    load_libraries()
    yield


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch, qapp):
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path / "settings"))
    QCoreApplication.setOrganizationName("TL Studio Tests")
    monkeypatch.setenv("TL_STUDIO_RUNS_DIR", str(tmp_path / "runs"))
    yield


@pytest.fixture(autouse=True)
def no_dangling_qthreads(monkeypatch, qtbot):
    started: list[weakref.ref] = []
    original = QThread.start

    def recording_start(self, *args):
        started.append(weakref.ref(self))
        return original(self, *args)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield
    def all_stopped():
        return not any(ref() is not None and _running(ref()) for ref in started)
    # a thread whose work is done may need a moment to return from its event loop
    qtbot.waitUntil(all_stopped, timeout=5000)


def _running(thread) -> bool:
    try:
        return thread.isRunning()
    except RuntimeError:  # the C++ object is already gone: not running
        return False


class ModalDialogOpened(AssertionError):
    """The app opened a modal dialog that the test did not answer."""


# Every way the app opens a modal dialog (QDialog.exec covers QMessageBox, QInputDialog and the app's
# own dialogs). Offscreen nobody clicks, so a modal dialog waits forever.
_MODAL_DIALOGS = {
    "QMessageBox": ("question", "warning", "critical", "information", "about"),
    "QInputDialog": ("getInt", "getDouble", "getText", "getMultiLineText", "getItem"),
    "QFileDialog": ("getExistingDirectory", "getOpenFileName", "getOpenFileNames", "getSaveFileName",
                    "getExistingDirectoryUrl", "getOpenFileUrl", "getOpenFileUrls", "getSaveFileUrl"),
    "QDialog": ("exec",),
}


@pytest.fixture(autouse=True)
def no_modal_dialogs(monkeypatch):
    """A modal dialog the test did not expect fails the test with its title and text instead of
    hanging it. Raised in the test's own call, it fails at once; raised in a slot, pytest-qt reports
    it when the test ends (the wait in progress still runs to its timeout). A test that expects a
    dialog answers it with its own ``monkeypatch.setattr`` (applied after this one, so it wins);
    ``opened`` lists the dialogs refused."""
    from PySide6 import QtWidgets

    opened: list[str] = []

    def refuse(name: str):
        def modal(*args, **kwargs):
            texts = [str(a) for a in args if isinstance(a, str)]
            if args and isinstance(args[0], QtWidgets.QDialog):  # exec() on an instance
                texts = [args[0].windowTitle(), getattr(args[0], "text", lambda: "")()]
            opened.append(f"{name}: " + " | ".join(t for t in texts if t))
            raise ModalDialogOpened(f"the app opened a modal dialog offscreen ({opened[-1]}); answer it in "
                                    f"the test with monkeypatch, or let the app say it in the status line")
        return modal

    for class_name, methods in _MODAL_DIALOGS.items():
        cls = getattr(QtWidgets, class_name)
        for method in methods:
            monkeypatch.setattr(cls, method, refuse(f"{class_name}.{method}"))
    yield opened
