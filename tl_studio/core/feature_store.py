"""The persistent feature cache: a frozen backbone's output for each image, kept on disk between runs,
so that a second run, an "Analyse my dataset" or a learning-rate sweep on the same images computes
only the features it has never computed before.

Where and how big: ``cache_dir()/features`` (catalog.py: $TL_STUDIO_CACHE_DIR, else the XDG cache),
at most $TL_STUDIO_FEATURE_CACHE_MB megabytes (default 2048; 0 turns the cache off). When a fill adds
entries past the bound, the least recently used go first (an entry's mtime is its last use: every hit
touches it). Deleting the folder at any time is safe.

The key of a set of features is everything that changes their numbers: the model's name, a digest of
the backbone's weights and buffers as loaded (the new head excluded, it does not take part), so
pretrained, random ("none", seeded) and imported weights each get their own entries; the evaluation
preprocessing (PreprocessSpec); the device type, autocast dtype and memory format the backbone ran
with; and the versions of torch, torchvision, timm, Pillow and TL Studio plus ``CODE_VERSION`` (bump it
when decoding or feature extraction changes). Features come from the evaluation preprocessing only,
never from augmented images: the frozen backbone is deterministic on them, as the in-run cache assumes.
The weights digest needs the built model; backbone_facts.py records it per weights file, so that an
analysis whose features are all stored can open its store without building the model.

An image is identified by a hash of its bytes (BLAKE2b, 160 bits), not by its path, size or mtime:
copies keep mtimes (``cp -p``, rsync, unzip), and a photo edited and saved within the same second or
replaced by another of the same size would otherwise be served stale features. Reading the bytes costs
a small fraction of decoding and running the backbone on them (about 0.1 s for the 46 MB ants/bees set
here). A moved or renamed image with unchanged bytes reuses its entry; two files with the same bytes
share one, which is correct because the same bytes give the same features. Labels are never stored: they
come from the folder the image is in now.

One file per image and key, written by ``torch.save`` to a temporary file in the same folder and
renamed into place (atomic on POSIX and Windows), read back with ``torch.load(weights_only=True)``.
Concurrent processes (two runs, or the DDP ranks, which look up and fill disjoint shares) at worst
compute the same entry twice and rename identical files over each other. An entry that cannot be read
or has the wrong shape is ignored, deleted and recomputed; a cache folder that is full, read-only or
missing only costs speed, never a run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from tl_studio.core import read_ahead
from tl_studio.core.feature_layout import (CODE_VERSION, ENTRY_SUFFIX, KEY_FILE, TMP_SUFFIX, entry_path, file_digest,
                                          limit_bytes, store_root)

_HASH_THREADS = 4  # hashlib releases the GIL: reading and hashing overlap across files
STALE_TMP_SECONDS = 3600  # a temporary file this old was left by a crashed writer


def weights_digest(model) -> str:
    """A digest of every parameter and buffer outside the head, as they are now."""
    from tl_studio.core.models import head_path

    head = head_path(model) + "."
    digest = hashlib.blake2b(digest_size=20)
    for name, tensor in model.state_dict().items():
        if name.startswith(head):
            continue
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def feature_key(model_name: str, weights: str, spec, device_type: str, amp_dtype, channels_last: bool) -> dict:
    """The key of the features of model ``model_name`` whose backbone has the digest ``weights``."""
    from tl_studio import __version__
    from tl_studio.core.catalog import _installed_version

    return {
        "code": CODE_VERSION, "tl_studio": __version__, "model": model_name,
        "weights": weights, "preprocess": spec.to_dict(), "device": device_type,
        "amp": str(amp_dtype), "channels_last": bool(channels_last),
        "versions": {name: _installed_version(name) for name in ("torch", "torchvision", "timm", "pillow")},
    }


@dataclass
class Lookup:
    """What the store had for some records: ``hits`` (position -> feature vector, on the CPU) and the
    positions still to compute. Positions are the caller's (e.g. places in a split's record list)."""
    records: list
    positions: list[int]
    digests: list[str | None]
    hits: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def missing(self) -> list[int]:
        """Indices into ``records`` (and ``positions``) of the images to compute."""
        return [i for i, position in enumerate(self.positions) if position not in self.hits]


class FeatureStore:
    def __init__(self, root: Path, key: dict, limit: int, shape: tuple[int, ...] | None = None):
        """``shape``: one image's feature shape where the model says it (a Linear head's inputs)."""
        self.root, self.key, self.limit, self.shape = Path(root), key, limit, shape
        name = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=16).hexdigest()
        self.folder = self.root / name
        self.written = 0  # entries this store wrote, for tests and the decision to trim

    # ---- reading ----------------------------------------------------------------------------------
    def lookup(self, records: Sequence, positions: Sequence[int] | None = None) -> Lookup:
        positions = list(range(len(records))) if positions is None else list(positions)
        paths = [str(r.path) for r in records]
        # digests that train's read-ahead took while torch was being imported, for files unchanged since
        digests = [read_ahead.known_digest(path) for path in paths]
        unknown = [i for i, digest in enumerate(digests) if digest is None]
        with ThreadPoolExecutor(_HASH_THREADS) as pool:
            for i, digest in zip(unknown, pool.map(file_digest, [paths[i] for i in unknown])):
                digests[i] = digest
        lookup = Lookup(list(records), positions, digests)
        size = None
        for position, digest in zip(positions, digests):
            vector = self._read(digest) if digest else None
            if vector is not None and (size is None or vector.shape == size):
                size = vector.shape
                lookup.hits[position] = vector
        return lookup

    def _entry(self, digest: str) -> Path:
        return entry_path(self.folder, digest)

    def _read(self, digest: str) -> torch.Tensor | None:
        path = self._entry(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            vector = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
            if not isinstance(vector, torch.Tensor) or vector.dim() == 0 or vector.dtype != torch.float32 or (
                    self.shape is not None and tuple(vector.shape) != self.shape):
                raise ValueError("not a feature vector of this model")
        except Exception:  # noqa: BLE001 - truncated or foreign bytes: recompute, never crash a run
            _remove(path)
            return None
        try:
            os.utime(path)  # its last use, for least-recently-used eviction
        except OSError:
            pass
        return vector

    # ---- writing ----------------------------------------------------------------------------------
    def save(self, lookup: Lookup, computed) -> None:
        """Stores the vectors of ``computed`` (a FeatureSet whose indices are positions in ``lookup``'s
        ``missing`` list), then trims the cache to its bound. Failures only cost speed."""
        missing = lookup.missing
        vectors = computed.features.detach().to("cpu", torch.float32)
        for row, index in enumerate(computed.indices.tolist()):
            digest = lookup.digests[missing[index]]
            if digest and not self._write(digest, vectors[row].clone()):
                break  # full or read-only: no point trying the rest
        if self.written:
            self._describe()
            trim(self.root, self.limit)

    def _write(self, digest: str, vector: torch.Tensor) -> bool:
        path = self._entry(digest)
        buffer = io.BytesIO()
        torch.save(vector, buffer)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.stem[:8], suffix=TMP_SUFFIX, dir=path.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(buffer.getbuffer())
            os.replace(tmp, path)
        except OSError:
            if tmp:
                _remove(Path(tmp))
            return False
        self.written += 1
        return True

    def _describe(self) -> None:
        """key.json beside the entries: what they were computed with, for a person looking at the folder."""
        try:
            (self.folder / KEY_FILE).write_text(json.dumps(self.key, indent=1, sort_keys=True), encoding="utf-8")
        except OSError:
            pass


def open_store(model, spec, device: torch.device, amp_dtype=None) -> FeatureStore | None:
    """The store for the features ``extract_features`` computes with ``model`` on ``device`` under
    ``spec``, or None when the cache is turned off."""
    if limit_bytes() <= 0:
        return None
    from tl_studio.core.models import head_of

    in_features = getattr(head_of(model), "in_features", None)  # SqueezeNet's conv head has feature maps
    return _open(getattr(model, "tl_name", type(model).__name__), weights_digest(model),
                 (in_features,) if in_features else None, spec, device, amp_dtype)


def open_store_without_model(model_name: str, facts, spec, device: torch.device,
                             amp_dtype=None) -> FeatureStore | None:
    """open_store's store for the model ``model_name`` that backbone_facts recalled as ``facts``,
    without building it; None when the cache is turned off."""
    return _open(model_name, facts.weights, facts.feature_shape, spec, device, amp_dtype)


def _open(model_name: str, weights: str, shape, spec, device: torch.device, amp_dtype) -> FeatureStore | None:
    from tl_studio.core.device import use_channels_last

    limit = limit_bytes()
    if limit <= 0:
        return None
    channels_last = use_channels_last(device, model_name, training=False, autocast=amp_dtype)
    return FeatureStore(store_root(), feature_key(model_name, weights, spec, device.type, amp_dtype, channels_last),
                        limit, shape)


def look_up(store: FeatureStore | None, records: Sequence, positions: Sequence[int] | None = None) -> Lookup:
    """What ``store`` holds of ``records``; without a store (turned off or unusable) every one is missing."""
    if store is not None:
        return store.lookup(records, positions)
    positions = list(range(len(records))) if positions is None else list(positions)
    return Lookup(list(records), positions, [None] * len(records))


def store_and_complete(store: FeatureStore | None, lookup: Lookup, computed, device: torch.device):
    """Stores the newly ``computed`` features (when there is a store) and returns them with the hits."""
    if store is not None and computed is not None:
        store.save(lookup, computed)
    return complete(lookup, computed, device)


def complete(lookup: Lookup, computed, device: torch.device):
    """Hits and newly computed features as one FeatureSet (on ``device``), in position order."""
    from tl_studio.core.features import FeatureSet

    missing = lookup.missing
    index_of = {position: i for i, position in enumerate(lookup.positions)}
    rows, labels, positions = [], [], []
    for position, vector in lookup.hits.items():
        rows.append(vector)
        positions.append(position)
        labels.append(int(lookup.records[index_of[position]].label))
    if computed is not None and len(computed):
        cpu = computed.features.detach().to("cpu", torch.float32)
        for row, index in enumerate(computed.indices.tolist()):
            rows.append(cpu[row])
            positions.append(lookup.positions[missing[index]])
            labels.append(int(lookup.records[missing[index]].label))
    if not rows:
        return FeatureSet(torch.empty(0, 0, device=device), torch.empty(0, dtype=torch.long, device=device),
                          torch.empty(0, dtype=torch.long))
    order = torch.tensor(positions).argsort()
    return FeatureSet(torch.stack(rows)[order].to(device), torch.tensor(labels)[order].to(device),
                      torch.tensor(positions)[order])


def trim(root: Path, limit: int) -> None:
    """Deletes the least recently used entries until the cache holds at most ``limit`` bytes, and
    temporary files left by crashed writers."""
    entries, total, now = [], 0, time.time()
    for path in _walk(root):
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.name.endswith(TMP_SUFFIX):
            if now - stat.st_mtime > STALE_TMP_SECONDS:
                _remove(path)
            continue
        if path.name.endswith(ENTRY_SUFFIX):
            entries.append((stat.st_mtime_ns, stat.st_size, path))
            total += stat.st_size
    entries.sort()
    for _mtime, size, path in entries:
        if total <= limit:
            break
        _remove(path)
        total -= size


def _walk(root: Path):
    try:
        with os.scandir(root) as items:
            for item in items:
                if item.is_dir(follow_symlinks=False):
                    yield from _walk(Path(item.path))
                elif item.is_file(follow_symlinks=False):
                    yield Path(item.path)
    except OSError:
        return


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
