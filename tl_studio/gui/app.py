"""The GUI entry point: ``tl_studio.gui.app.main(argv=None)``; argv as for ``tl-studio gui [DATA_DIR]``.

The window shows before torch is imported (start-up matters); heavy modules load afterwards.
"""

from __future__ import annotations

import argparse
import sys

from PySide6.QtWidgets import QApplication


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tl-studio gui", description="Open the TL Studio app.")
    parser.add_argument("data_dir", nargs="?", help="dataset folder to open (one sub-folder per class)")
    return parser.parse_args(argv)


# Windows opened by main() when the caller owns the event loop (tests, an embedding app): kept here
# so they are not garbage-collected when main() returns.
_open_windows: list = []


def application() -> tuple[QApplication, bool]:
    """The QApplication and whether it was created here (False: reuse the caller's)."""
    app = QApplication.instance()
    created = app is None
    if created:
        app = QApplication(sys.argv[:1])
    app.setOrganizationName("TL Studio")
    app.setApplicationName("TL Studio")
    app.setApplicationDisplayName("TL Studio")
    from tl_studio.gui.collector import collect_in_gui_thread

    collect_in_gui_thread()  # Qt objects in garbage cycles die in the GUI thread (see collector.py)
    return app, created


def create_window(data_dir: str | None = None):
    from tl_studio.gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    if data_dir:
        window.open_folder(data_dir)
    return window


def main(argv: list[str] | None = None) -> int:
    """Opens the main window. With an existing QApplication the window is shown and main returns at
    once (the caller runs the event loop); otherwise it runs the loop until the window closes."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    app, created = application()
    window = create_window(args.data_dir)
    if not created:
        _open_windows.append(window)
        window.destroyed.connect(lambda *_: _open_windows.remove(window) if window in _open_windows else None)
        return 0
    return app.exec()
