"""Checkpoints: ``last.ckpt`` after every epoch (everything needed to resume) and ``best.ckpt`` (the
best epoch's weights). Written atomically, loaded with ``weights_only=True``: a checkpoint holds only
tensors and plain Python values, never code.
"""

from __future__ import annotations

import errno
import io
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from tl_studio.core.errors import UserError
from tl_studio.core.fileio import atomic_path
from tl_studio.core.run_folder import LAST_CHECKPOINT as LAST
from tl_studio.core.wording import MB, megabytes

FORMAT_VERSION = 1
# Room left on the disk beyond the file itself (file-system metadata, the rename's temporary copy).
DISK_MARGIN_BYTES = 8 * MB


class DiskFull(UserError):
    """The disk ran out of space while a run wrote a file; the message says how much is free and needed."""


def capture_rng_state() -> dict:
    """Every random generator the run uses, as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": _to_plain(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuple(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(value):
    return [_to_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuple(value):
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list) else value


def serialise_checkpoint(payload: dict) -> memoryview:
    """The checkpoint file's bytes: a snapshot of ``payload`` as it is now (the weights may change
    while the bytes are written out). Serialised in memory first: torch's zip writer aborts the whole
    process (C++ terminate) when the disk fills up under it, whereas a plain Python write raises
    OSError."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **payload}, buffer)
    return buffer.getbuffer()


def write_checkpoint(path: Path, data) -> None:
    """Writes serialised checkpoint bytes atomically; a full disk raises :class:`DiskFull`, and the
    previous checkpoint stays with no partial file left."""
    path = Path(path)
    try:
        with atomic_path(path, make_folder=False) as tmp:  # into the run folder, which the run made
            write_file(tmp, data)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(disk_full_message(path.parent, len(data), "a checkpoint")) from None
        raise


def write_file(path: Path, data) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def check_free_space(folder: Path, size: int, what: str) -> None:
    """Refuses to start a write that cannot fit (a full disk is better found before than during)."""
    if shutil.disk_usage(folder).free < size + DISK_MARGIN_BYTES:
        raise DiskFull(disk_full_message(folder, size, what))


def disk_full_message(folder: Path, size: int, what: str = "a checkpoint") -> str:
    free = shutil.disk_usage(folder).free
    # --resume needs a checkpoint: the first one may be the one that did not fit
    then = "continue with --resume" if (Path(folder) / LAST).is_file() else "start the run again"
    return (f"The disk holding {folder} is full: {megabytes(free, 0)} free, {what} needs about "
            f"{megabytes(size + DISK_MARGIN_BYTES, 0)}; free some space, then {then}.")


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No checkpoint at {path}; start a new run instead of resuming.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file: say so instead of a traceback
        raise UserError(f"The checkpoint {path} could not be read ({type(error).__name__}); "
                        f"it may be damaged — start a new run.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise UserError(f"{path} is not a TL Studio checkpoint of this version.")
    return payload
