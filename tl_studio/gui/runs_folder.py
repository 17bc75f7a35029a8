"""Where the app puts its training runs: a folder the user can change, one sub-folder per run."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

KEY = "runs/folder"


def runs_folder() -> Path:
    """TL_STUDIO_RUNS_DIR, else the folder chosen last time, else Documents/TL Studio/runs."""
    override = os.environ.get("TL_STUDIO_RUNS_DIR")
    if override:
        return Path(override)
    saved = QSettings().value(KEY)
    if saved:
        return Path(saved)
    documents = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation) or str(Path.home())
    return Path(documents) / "TL Studio" / "runs"


def set_runs_folder(folder: Path) -> None:
    QSettings().setValue(KEY, str(folder))


def new_run_dir(dataset_name: str, model: str) -> Path:
    """A fresh, readable folder name; never an existing one (nothing is overwritten)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-") or "dataset"
    base = runs_folder() / f"{safe}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, number = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{number}")
        number += 1
    return candidate
