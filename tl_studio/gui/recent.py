"""Recently opened dataset folders (QSettings), newest first."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

KEY = "data/recentFolders"
LIMIT = 10


def recent_folders() -> list[str]:
    value = QSettings().value(KEY, [])
    folders = [value] if isinstance(value, str) else list(value or [])
    return [f for f in folders if Path(f).is_dir()]


def add_recent_folder(folder: str) -> None:
    folder = str(Path(folder).resolve())
    folders = [folder] + [f for f in recent_folders() if f != folder]
    QSettings().setValue(KEY, folders[:LIMIT])
