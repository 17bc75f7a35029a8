"""Permission tests that also run as root (CI runs as root, and root reads anything): the check runs in a
forked child that has dropped to the unprivileged 'nobody' user, on files in a folder that user can reach."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


@contextmanager
def reachable_folder() -> Iterator[Path]:
    """A fresh folder under the system temp dir that an unprivileged user can enter (pytest's tmp_path sits
    inside a folder only its owner can open)."""
    folder = Path(tempfile.mkdtemp(prefix="tl-studio-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):  # give back what a test locked, so it can be removed
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)


def run_without_privileges(check: Callable[[], None]) -> None:
    """``check()`` as this user, or, for root, in a forked child running as 'nobody'. An assertion or error in
    the child fails the test with the child's traceback."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        check()
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read_end)
        status = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            check()
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            status = 1
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0, f"as the unprivileged user:\n{report}"
