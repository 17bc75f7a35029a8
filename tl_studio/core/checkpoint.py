"""Checkpoints: ``last.ckpt`` after every epoch (everything needed to resume) and ``best.ckpt`` (the
best epoch's weights). Written atomically, loaded with ``weights_only=True``: a checkpoint holds only
tensors and plain Python values, never code.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from tl_studio.core.errors import UserError
from tl_studio.core.fileio import atomic_path

LAST = "last.ckpt"
BEST = "best.ckpt"
FORMAT_VERSION = 1


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


def save_checkpoint(path: Path, payload: dict) -> None:
    payload = {"format": FORMAT_VERSION, **payload}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


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
