"""Saving a table as CSV from the GUI: the native save dialog, an atomic write, and one clear sentence
when the place cannot be written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from tl_studio.core.fileio import atomic_write_text
from tl_studio.gui.literal_text import as_written


def ask_and_save_csv(parent: QWidget, title: str, default_name: str, text: Callable[[], str]) -> str | None:
    """The native dialog (it asks before replacing a file), then the write; nothing when cancelled.
    Returns the path written, for the caller to say so."""
    path, _ = QFileDialog.getSaveFileName(parent, title, default_name, "CSV files (*.csv)")
    if path and save_text(parent, path, text()):
        return path
    return None


def save_text(parent: QWidget, path: str, text: str) -> bool:
    try:
        atomic_write_text(Path(path), text)
    except OSError as error:
        QMessageBox.warning(parent, "Could not save", as_written(f"{path} could not be written "
                                                                f"({error.strerror or error}); choose another place."))
        return False
    return True
