"""Exported programs kept between runs, so that a model file need not be traced again by torch.export.

What torch.export traces (the graph) depends on the model's structure (architecture, head, class count,
preprocessing) and on the versions of the libraries, not on the weights: every run that trains the same
architecture on the same number of classes exports the same graph. The first export of such a model
keeps a copy of its checked .pt2 file under ``cache_dir()/programs``; a later export of a model of the
same structure writes its file from that copy record by record (the archive is a zip of raw tensor
bytes, JSON tables and the serialised graph), with its own weights' and buffers' bytes in place of the
stored ones (matched by name, each of the same size, strides and storage layout; any other difference
and the model is traced afresh) and its own metadata. Nothing of the copy is unpickled or run here. The
file it writes is then read back through the checked loader (model_file.py) and compared with the
PyTorch model like every export (export.py), and a stored program that fails that check is deleted and
the model traced afresh.

Measured on the 2-core CPU (whole export: trace or reuse, save, read back, agreement check): see
``REUSE_MEASURED`` below and benchmarks/bench_program_cache.py. At most ``MAX_PROGRAMS`` taking at most
``MAX_BYTES`` are kept (the least recently used go first); ``TL_STUDIO_FEATURE_CACHE_MB=0``, which turns
off the feature cache, turns this off too. Deleting the folder at any time is safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# Bump when export.py changes what it traces or stores beside the graph (the example inputs, the dynamic
# dimensions): a stored program is copied as it is. 2: files carry a small example input.
CODE_VERSION = 2
MAX_PROGRAMS = 8
MAX_BYTES = 1 << 30  # a ViT-B/16 program is 330 MB, resnet50's 100 MB, efficientnet_lite0's 14 MB
SUFFIX = ".pt2"
REUSE_MEASURED = ("efficientnet_lite0, 2 classes: traced 3.27 s, from the stored program 1.43 s (2.57 s when the "
                  "stored program was loaded, given the new weights and saved again); resnet18: 1.08 s (1.77 s); "
                  "medians of 3 processes, each exporting once, alternating with the older code")


def folder() -> Path:
    from tl_studio.core.catalog import cache_dir

    return cache_dir() / "programs"


def enabled() -> bool:
    from tl_studio.core.feature_layout import limit_bytes

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


def write_with_weights(entry: Path | None, model: nn.Module, extra_files: dict[str, str], path: Path) -> bool:
    """Writes ``path`` from the program kept at ``entry`` (entry_for(model)): its records copied one by
    one, in their order, with ``model``'s parameters and buffers in place of the stored ones and
    ``extra_files`` (TL Studio's metadata) in place of the stored extra files. Nothing in the entry is
    unpickled or run here, and the graph is not deserialised and serialised again (loading the program
    and saving it again took 1.1 s of a 2.6 s efficientnet_lite0 export on the 2-core CPU; this copy
    takes 40-60 ms); export.py reads the file back through the checked loader like every export. False
    when there is no entry, it is unreadable, or its records do not match the model's tensors: then the
    model is traced afresh."""
    if entry is None or not entry.is_file():
        return False
    try:
        records = _records_with_weights_of(entry, model, extra_files)
        if records is not None:
            _write_records(records, path)
    except Exception as error:  # an unreadable entry is a cache miss, never a failed export
        log.info("stored program %s not used: %s", entry.name, error)
        records = None
    if records is None:
        _remove(entry)
        return False
    _touch(entry)
    return True


# Records torch's archive writer adds itself when it closes the archive (the zip format's version, the
# byte order, an id of the contents). Left to it, they come last, where a trace's file has them.
_WRITER_RECORDS = frozenset({".data/version", "byteorder", ".data/serialization_id"})


def _write_records(records: list[tuple[str, bytes]], path: Path) -> None:
    from torch.export.pt2_archive import PT2ArchiveWriter

    # Given an open file, torch names the archive's root folder "archive", as export.save_program does.
    with open(path, "wb") as file, PT2ArchiveWriter(file) as writer:
        for name, data in records:
            writer.write_bytes(name, data)


def _records_with_weights_of(entry: Path, model: nn.Module, extra_files: dict[str, str]):
    """The (name, bytes) records of the archive at ``entry``, in its order, with each weight record
    replaced by the bytes of the model's tensors and the extra files by ``extra_files``; None when the
    tensors' names, sizes, strides or storage layout differ from the stored ones, or the extra files'
    names do. Dtypes, shapes and strides are in the entry's key already (structure_key)."""
    from torch.export.pt2_archive.constants import (CONSTANTS_CONFIG_FILENAME_FORMAT, EXTRA_DIR,
                                                    WEIGHTS_CONFIG_FILENAME_FORMAT)

    with zipfile.ZipFile(entry) as archive:
        roots = {name.split("/", 1)[0] for name in archive.namelist()}
        if len(roots) != 1:
            return None
        records = {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()
                   if not name.endswith("/")}
    weights_config = WEIGHTS_CONFIG_FILENAME_FORMAT.format("model")
    constants_config = CONSTANTS_CONFIG_FILENAME_FORMAT.format("model")
    weights = json.loads(records[weights_config])["config"]
    constants = json.loads(records[constants_config])["config"]
    named = _named_tensors(model)
    # every weight of the program in the model and every tensor of the model in the program
    if set(weights) - set(named) or set(named) - set(weights) - set(constants):
        return None
    weights_dir, constants_dir = weights_config.rsplit("/", 1)[0], constants_config.rsplit("/", 1)[0]
    model_constants = {name: meta for name, meta in constants.items() if name in named}
    tables = [(weights_dir, weights), (constants_dir, model_constants)]
    groups: dict[str, list[str]] = {}  # record -> the model's tensors stored in it
    for directory, table in tables:
        for name, meta in table.items():
            if meta.get("use_pickle") or not _same_layout(meta.get("tensor_meta") or {}, named[name]):
                return None
            groups.setdefault(directory + "/" + meta["path_name"], []).append(name)
    # constants of the program that are not the model's (tensors torch lifted out of the graph) stay
    untouched_constants = {constants_dir + "/" + meta["path_name"] for name, meta in constants.items()
                           if name not in named}
    if untouched_constants & set(groups):  # a record shared by a model tensor and a lifted constant
        return None
    replaced = {}
    for record, names in groups.items():
        data = _storage_bytes([named[name] for name in names])
        if data is None or record not in records or len(data) != len(records[record]):
            return None
        replaced[record] = data
    extras = {name for name in records if name.startswith(EXTRA_DIR)}
    if extras != {EXTRA_DIR + name for name in extra_files}:
        return None
    replaced.update({EXTRA_DIR + name: text.encode() for name, text in extra_files.items()})
    return [(name, replaced.get(name, data)) for name, data in records.items() if name not in _WRITER_RECORDS]


def _same_layout(meta: dict, tensor: torch.Tensor) -> bool:
    def ints(values):
        return [value.get("as_int") for value in values]

    return (ints(meta.get("sizes", [])) == list(tensor.shape)
            and ints(meta.get("strides", [])) == list(tensor.stride())
            and (meta.get("storage_offset") or {}).get("as_int") == tensor.storage_offset())


def _storage_bytes(tensors: list[torch.Tensor]) -> bytes | None:
    """The bytes torch's archive writer would store for tensors that share one storage: the whole
    storage, as the tensors lie in it; None when they do not share one."""
    if len({tensor.untyped_storage().data_ptr() for tensor in tensors}) != 1:
        return None
    if len(tensors) == 1 and tensors[0].storage_offset() == 0:
        # a tensor that is a view into a larger storage (weights mapped from one file) is stored alone
        single = tensors[0].detach()
        storage = torch.empty_strided(single.shape, single.stride(), dtype=single.dtype).copy_(single).untyped_storage()
    else:
        storage = tensors[0].detach().untyped_storage()
    return torch.tensor([], dtype=torch.uint8).set_(storage).numpy().tobytes()


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
