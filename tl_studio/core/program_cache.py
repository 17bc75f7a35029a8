"""Exported programs kept between runs, so that a model file need not be traced again by torch.export.

What torch.export traces (the graph) depends on the model's structure (architecture, head, class count,
preprocessing) and on the versions of the libraries, not on the weights: every run that trains the same
architecture on the same number of classes exports the same graph. The first export of such a model
keeps a copy of its checked .pt2 file under ``cache_dir()/programs``; a later export of a model of the
same structure loads that copy through the checked loader (model_file.py), puts its own weights and
buffers in place of the stored ones (matched by name, each of the same dtype, shape and strides; any
other difference and the model is traced afresh) and saves the program with its own metadata. The file
it writes is then read back and compared with the PyTorch model like every export (export.py), and a
stored program that fails that check is deleted and the model traced afresh.

Measured on the 2-core CPU (whole export: trace or reuse, save, read back, agreement check): see
``REUSE_MEASURED`` below. At most ``MAX_PROGRAMS`` taking at most ``MAX_BYTES`` are kept (the least
recently used go first); ``TL_STUDIO_FEATURE_CACHE_MB=0``, which turns off the feature cache, turns this
off too. Deleting the folder at any time is safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

CODE_VERSION = 1  # bump when export.py changes what it traces (the example input, the dynamic dimensions)
MAX_PROGRAMS = 8
MAX_BYTES = 1 << 30  # a ViT-B/16 program is 330 MB, resnet50's 100 MB, efficientnet_lite0's 14 MB
SUFFIX = ".pt2"
REUSE_MEASURED = ("efficientnet_lite0, 2 classes: 3.29 s -> 2.54 s; resnet18: 2.26 s -> 1.85 s "
                  "(medians of 3 processes, each exporting once)")


def folder() -> Path:
    from tl_studio.core.catalog import cache_dir

    return cache_dir() / "programs"


def enabled() -> bool:
    from tl_studio.core.feature_store import limit_bytes

    return limit_bytes() > 0


def structure_key(model: nn.Module) -> str:
    """A digest of everything the traced graph depends on besides the weights' values: the modules as
    they print (layers, their sizes and settings), every parameter's and buffer's name, dtype, shape
    and strides, and the versions of the code that builds and traces them."""
    from tl_studio import __version__
    from tl_studio.core.catalog import _installed_version

    tensors = [(name, str(tensor.dtype), tuple(tensor.shape), tuple(tensor.stride()))
               for name, tensor in _named_tensors(model).items()]
    description = {
        "code": CODE_VERSION, "tl_studio": __version__, "structure": repr(model), "tensors": tensors,
        "model": getattr(getattr(model, "network", model), "tl_name", type(model).__name__),
        "versions": {name: _installed_version(name) for name in ("torch", "torchvision", "timm")},
    }
    return hashlib.blake2b(json.dumps(description, sort_keys=True).encode(), digest_size=20).hexdigest()


def _named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(model.named_buffers(remove_duplicate=False))  # non-persistent ones too: the program has them
    return named


def entry_for(model: nn.Module) -> Path | None:
    """Where the program of ``model``'s structure is kept, or None with the store turned off. An export
    asks once and passes the path on (the key prints the whole model)."""
    return folder() / (structure_key(model) + SUFFIX) if enabled() else None


def stored_program(entry: Path | None, model: nn.Module):
    """The program kept at ``entry`` (entry_for(model)) with ``model``'s weights in it, or None (none
    stored, the store turned off, the entry unreadable or its tensors not matching the model's)."""
    from tl_studio.core.model_file import load_exported_program

    if entry is None or not entry.is_file():
        return None
    try:
        program, _metadata = load_exported_program(entry)
        swapped = _with_weights_of(program, model)
    except Exception as error:  # an unreadable or refused entry is a cache miss, never a failed export
        log.info("stored program %s not used: %s", entry.name, error)
        swapped = None
    if swapped is None:
        _remove(entry)
        return None
    _touch(entry)
    return swapped


def _with_weights_of(program, model: nn.Module):
    """``program`` with each of its parameters, buffers and named constants replaced by ``model``'s
    tensor of the same name; None when the names differ or a dtype, shape or stride does."""
    named = _named_tensors(model)
    state, constants = program.state_dict, program.constants
    # every tensor of the model in the program and every weight of the program in the model
    if set(state) - set(named) or set(named) - set(state) - set(constants):
        return None
    replacements = []
    for table, name in [(state, name) for name in state] + [(constants, name) for name in constants if name in named]:
        old, new = table[name], named[name]
        if (not isinstance(old, torch.Tensor) or old.dtype != new.dtype or old.shape != new.shape
                or old.stride() != new.stride()):
            return None
        value = new.detach().clone()
        replacements.append((table, name, nn.Parameter(value, requires_grad=old.requires_grad)
                             if isinstance(old, nn.Parameter) else value))
    for table, name, value in replacements:
        table[name] = value
    return program


def remember(entry: Path | None, checked_file: Path) -> None:
    """Keeps a copy of ``checked_file`` (a .pt2 file that passed the export check) at ``entry``
    (entry_for(its model)) for later exports of the same structure. Failing to keep it only costs a
    later export its speed."""
    if entry is None:
        return
    from tl_studio.core.fileio import atomic_path

    try:
        with atomic_path(entry) as tmp:
            shutil.copyfile(checked_file, tmp)
        _evict(keep=entry)
    except OSError as error:
        log.info("exported program not kept: %s", error)


def forget(entry: Path | None) -> None:
    if entry is not None:
        _remove(entry)


def _evict(keep: Path) -> None:
    """The most recently used programs stay while they are at most MAX_PROGRAMS and MAX_BYTES together;
    ``keep`` (the one just stored) always stays."""
    total = _size(keep)
    kept = 1
    for entry in sorted(folder().glob("*" + SUFFIX), key=_last_use, reverse=True):
        if entry == keep:
            continue
        size = _size(entry)
        if kept < MAX_PROGRAMS and total + size <= MAX_BYTES:
            kept, total = kept + 1, total + size
        else:
            _remove(entry)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _last_use(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
