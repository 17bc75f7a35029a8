"""Atomic writes: a file is either the old version or the new one, never half written.

Write to a temporary file in the same folder, flush it to disk, give it the permissions a file the user
made would have (their umask, or the mode of the file it replaces; mkstemp's 0600 is for secrets, not
model files and CSVs), rename it over the target (atomic on POSIX and Windows within one file system),
then flush the folder so that the rename itself survives a power cut.

The temporary file is ``.STEM.PID-RANDOM.tmpSUFFIX``. A process killed mid-write leaves one behind; the
next write of the same target removes those whose process is gone (ours only: nothing else has that
name).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_umask_lock = threading.Lock()
STALE_UNNAMED_TEMP_S = 3600  # a temp name without a live PID is someone's only after this long


@contextmanager
def atomic_path(target: Path, make_folder: bool = True, keep_existing: bool = False) -> Iterator[Path]:
    """Yields a temporary path next to ``target``; renames it onto ``target`` if the block succeeds.
    ``make_folder``: create ``target``'s folder if it is missing (not for the files of a running run: a
    run folder moved away mid-run was made again, empty, at its old place, and read as a run that never
    started). ``keep_existing``: raise FileExistsError instead of replacing a ``target`` that appeared
    while the block ran (another export to the same new file)."""
    target = Path(target)
    if make_folder:
        target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    # The temporary name keeps the target's extension: some writers (torch.export.save) insist on it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}-", suffix=f".tmp{target.suffix}",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(target))
        if keep_existing and target.exists():
            raise FileExistsError(errno.EEXIST, "written meanwhile", str(target))
        os.replace(tmp, target)
        _fsync_folder(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _mode_for(target: Path) -> int:
    """The replaced file's permissions, or what open() would give a new file under the user's umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        with _umask_lock:  # os.umask can only be read by setting it
            mask = os.umask(0o022)
            os.umask(mask)
        return 0o666 & ~mask


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; NTFS journals the rename
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_name_pattern(target: Path) -> re.Pattern:
    return re.compile(re.escape(f".{target.stem}.") + r"(?:(\d+)-)?[A-Za-z0-9_]{8}" + re.escape(f".tmp{target.suffix}"))


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Temporary files of earlier writes of ``target`` whose writer is gone (killed mid-write)."""
    target = Path(target)
    pattern, removed = temporary_name_pattern(target), []
    try:
        candidates = list(target.parent.iterdir())
    except OSError:
        return removed
    for path in candidates:
        match = pattern.fullmatch(path.name)
        if match is None or not _writer_is_gone(path, match.group(1)):
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def _writer_is_gone(path: Path, pid: str | None) -> bool:
    if pid is None:  # written before temp names carried the PID
        try:
            return time.time() - path.stat().st_mtime > STALE_UNNAMED_TEMP_S
        except OSError:
            return False
    if int(pid) == os.getpid():
        return False  # another thread of this process may be writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def atomic_write_text(target: Path, text: str, make_folder: bool = True) -> None:
    with atomic_path(target, make_folder) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def check_writable_folder(folder: Path) -> Path:
    """Creates ``folder`` if needed and checks it can be written, with a sentence a user can act on."""
    from tl_studio.core.errors import UserError

    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():  # mkdir's "File exists" did not say which thing was wrong
        raise UserError(f"{folder} is a file, not a folder; choose another output folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".tl_studio_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"Cannot write to {folder} ({reason}); choose another output folder.") from None
    return folder


def check_writable_file(target: Path) -> Path:
    """Checks, before any work, that ``target`` can be written (its folder created and written, and the
    file itself replaced when it exists), with one sentence a user can act on."""
    from tl_studio.core.errors import UserError

    target = Path(target).expanduser()
    if target.is_dir():
        raise UserError(f"{target} is a folder; give a file name to write.")
    try:
        check_writable_folder(target.parent)
    except UserError:
        raise UserError(f"Cannot write {target}: its folder {target.parent} cannot be made or written; "
                        f"choose another place.") from None
    return target


def file_identity(path: Path | None) -> tuple | None:
    """The path with the file's size and modification time, so that a file written again under the same
    name (a model file exported again with another setting) is not taken for the one loaded before."""
    if path is None:
        return None
    try:
        stat = Path(path).stat()
    except OSError:
        return (str(path),)
    return str(path), stat.st_size, stat.st_mtime_ns
