"""Saving a table as CSV from the GUI: the native save dialog, an atomic write, and one clear sentence
when the place cannot be written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from tl_studio.core.fileio import atomic_write_text
from tl_studio.gui.literal_text import as_written


LAST_FOLDER_KEY = "csv/last_folder"


def ask_and_save_csv(parent: QWidget, title: str, default_name: str, text: Callable[[], str]) -> str | None:
    """The native dialog (it asks before replacing a file), then the write; nothing when cancelled.
    Returns the path written, for the caller to say so. The dialog starts in the folder of the last CSV
    saved, else the home folder: a bare name started it in the program's working folder (a source
    checkout, or / when started from a desktop menu)."""
    path, _ = QFileDialog.getSaveFileName(parent, title, str(start_folder() / default_name), "CSV files (*.csv)")
    if path and save_text(parent, path, text()):
        QSettings().setValue(LAST_FOLDER_KEY, str(Path(path).parent))
        return path
    return None


def start_folder() -> Path:
    last = QSettings().value(LAST_FOLDER_KEY)
    return Path(last) if last and Path(last).is_dir() else Path.home()


def save_text(parent: QWidget, path: str, text: str) -> bool:
    try:
        atomic_write_text(Path(path), text)
    except OSError as error:
        QMessageBox.warning(parent, "Could not save", as_written(f"{path} could not be written "
                                                                f"({error.strerror or error}); choose another place."))
        return False
    return True
