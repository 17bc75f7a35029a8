"""Where the app puts its training runs: one sub-folder per run in the runs folder ($TL_STUDIO_RUNS_DIR
moves it); the other folders of runs the Runs step lists (the user adds them); where the dialogs that
open a model file or a run start; and how a model file is named on screen (by its run)."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QSettings


def runs_folder() -> Path:
    """TL_STUDIO_RUNS_DIR, else Documents/TL Studio/runs: the folder `tl-studio train` and `tl-studio runs`
    use too (core/run_history.default_runs_root)."""
    from tl_studio.core.run_history import default_runs_root

    return default_runs_root()


def new_run_dir(dataset_name: str, model: str) -> Path:
    """A fresh, readable folder name in the runs folder; never an existing one (nothing is overwritten)."""
    from tl_studio.core.run_history import new_run_dir as fresh_run_dir

    return fresh_run_dir(runs_folder(), dataset_name, model)


def dialog_start_folder() -> Path:
    """Where "Open model file" and "Resume a run" dialogs start: the runs folder once it exists."""
    folder = runs_folder()
    return folder if folder.is_dir() else Path.home()


def model_caption(path) -> str:
    """``Model: <b>model.pt2</b> of run <b>flowers-resnet18-…</b>`` for a file inside a run folder (the
    run's own name when the user gave one on the Runs step), else the file and its folder: several runs
    all write a model.pt2, so the file name alone does not say which model answers."""
    from tl_studio.core import run_folder
    from tl_studio.core.run_history import read_sidecar

    path = Path(path)
    folder = path.parent
    if (folder / run_folder.CONFIG).is_file():
        run = read_sidecar(folder).get("name") or folder.name
        return f"Model: <b>{html.escape(path.name)}</b> of run <b>{html.escape(str(run))}</b>"
    return f"Model: <b>{html.escape(path.name)}</b> in {html.escape(str(folder))}"


EXTRA_FOLDERS_KEY = "runs/history_folders"  # folders the user added to the Runs step


def history_folders() -> list[Path]:
    """The app's runs folder first, then the folders the user added (each once)."""
    extra = QSettings().value(EXTRA_FOLDERS_KEY, [], type=list) or []
    folders = [runs_folder(), *(Path(f) for f in extra if f)]
    return list(dict.fromkeys(folders))


def add_history_folder(folder: Path) -> None:
    extra = [str(f) for f in history_folders()[1:]]
    if str(folder) not in extra and Path(folder) != runs_folder():
        QSettings().setValue(EXTRA_FOLDERS_KEY, [*extra, str(folder)])


def remove_history_folder(folder: Path) -> None:
    """Stops listing a folder the user added (its runs stay on disk)."""
    QSettings().setValue(EXTRA_FOLDERS_KEY, [str(f) for f in history_folders()[1:] if f != Path(folder)])
