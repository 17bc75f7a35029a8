"""Deleting a run folder to the system trash, and taking it back (undo).

Moving to the trash is send2trash's job (freedesktop.org trash on Linux, the Finder's on macOS, the
Recycle Bin on Windows). send2trash cannot restore, so on Linux the undo reads the trash the way the
freedesktop.org spec lays it out: ``files/<name>`` beside ``info/<name>.trashinfo``, whose ``Path=`` is
the original place (absolute, or relative to the trash's top folder). Elsewhere the user restores
from the system trash, and the app says so.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from tl_studio.core.errors import UserError
from tl_studio.core.run_folder import RunFolder


@dataclass(frozen=True)
class TrashedRun:
    original: Path
    trashed_at: float


def trash_run(path) -> TrashedRun:
    """Moves a run folder to the trash. A run that is still being written is refused."""
    import time

    from send2trash import send2trash
    from send2trash.exceptions import TrashPermissionError

    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise UserError(f"{folder.path} is no longer there; refresh the run list.")
    if folder.is_locked():
        raise UserError(f"{folder.path.name} is still training; stop it before deleting it.")
    started = time.time()
    try:
        send2trash(str(folder.path))
    except (OSError, TrashPermissionError) as error:
        raise UserError(f"Could not move {folder.path.name} to the trash ({error}); nothing was deleted.") from None
    return TrashedRun(folder.path.absolute(), started)


def restore_run(trashed: TrashedRun) -> Path:
    """Puts a trashed run folder back where it was (the newest trash entry for that place)."""
    original = trashed.original
    if original.exists():
        raise UserError(f"{original} exists again, so the trashed run was not put back; restore it from "
                        f"the system trash under another name.")
    if sys.platform in ("darwin", "win32"):
        raise UserError(f"{original.name} is in the system trash; restore it from there.")
    entry = _find_entry(original)
    if entry is None:
        raise UserError(f"{original.name} was not found in the trash (emptied?); nothing to undo.")
    stored, info = entry
    try:
        os.rename(stored, original)
    except OSError as error:
        raise UserError(f"Could not put {original.name} back ({error.strerror or error}); restore it from "
                        f"the system trash.") from None
    info.unlink(missing_ok=True)
    return original


def trash_folders(near: Path) -> list[tuple[Path, Path]]:
    """(trash folder, the folder its relative ``Path=`` entries are relative to), home trash first."""
    import send2trash.plat_other as freedesktop

    data_home = Path(os.fsdecode(freedesktop.XDG_DATA_HOME))
    found = [(Path(freedesktop.HOMETRASH), data_home)]
    top = Path(os.fsdecode(freedesktop.find_mount_point(os.fsencode(str(near)))))
    uid = str(os.getuid())
    found += [(top / ".Trash" / uid, top), (top / f".Trash-{uid}", top)]
    return found


def _find_entry(original: Path) -> tuple[Path, Path] | None:
    best = None
    for trash, top in trash_folders(original.parent if original.parent.exists() else Path("/")):
        info_dir = trash / "info"
        if not info_dir.is_dir():
            continue
        for info in info_dir.glob("*.trashinfo"):
            place, deleted = _read_info(info)
            if place is None:
                continue
            place = place if place.is_absolute() else top / place
            stored = trash / "files" / info.name[: -len(".trashinfo")]
            if place == original and stored.exists() and (best is None or deleted > best[0]):
                best = (deleted, stored, info)
    return None if best is None else (best[1], best[2])


def _read_info(info: Path) -> tuple[Path | None, str]:
    place, deleted = None, ""
    try:
        lines = info.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None, ""
    for line in lines:
        if line.startswith("Path="):
            place = Path(unquote(line[len("Path="):]))
        elif line.startswith("DeletionDate="):
            deleted = line[len("DeletionDate="):]
    return place, deleted
