"""The app's main window as the tests open it: through gui.app.main, as a user starts it."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QMainWindow

from tl_studio.gui import app as gui_app


def find(window, kind, name):
    widget = window.findChild(kind, name)
    assert widget is not None, f"no {kind.__name__} named {name}"
    return widget


def open_main_window(qtbot, data_dir):
    """Opens the app on ``data_dir`` (reusing the test's QApplication) and waits for its scan."""
    assert gui_app.main([str(data_dir)]) == 0
    windows = [w for w in QApplication.topLevelWidgets()
               if isinstance(w, QMainWindow) and w.objectName() == "MainWindow" and w.isVisible()]
    assert len(windows) == 1
    window = windows[0]
    qtbot.waitUntil(lambda: window.session.scan is not None, timeout=30_000)
    return window
