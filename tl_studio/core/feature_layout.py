"""Where the feature store (feature_store.py) keeps its entries and how it names an image: the part of
it that needs no torch, so that ``train``'s read-ahead (read_ahead.py) can look at the store while the
process is still importing torch, and skip decoding the images whose features a run will read back.

The store's folder is ``cache_dir()/features``, one sub-folder per key (the key's digest) holding a
``key.json`` that says what the entries were computed with, and one entry per image under
``<first two digits of the image's digest>/<digest>.pt``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tl_studio.core.wording import MB

# Bump when image decoding, the evaluation transform or feature extraction change their numbers.
CODE_VERSION = 2  # 2: BatchNorm folded into the convolutions (bn_folding.py)
DEFAULT_LIMIT_MB = 2048
LIMIT_ENV = "TL_STUDIO_FEATURE_CACHE_MB"
ENTRY_SUFFIX = ".pt"
TMP_SUFFIX = ".tmp"
KEY_FILE = "key.json"
_HASH_CHUNK = 1 << 20


def limit_bytes() -> int:
    """The cache's bound from $TL_STUDIO_FEATURE_CACHE_MB; 0 (or a negative number) turns it off."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    try:
        megabytes = float(raw) if raw else DEFAULT_LIMIT_MB
    except ValueError:
        megabytes = DEFAULT_LIMIT_MB  # a typo in a setting must not end a run
    return max(0, int(megabytes * MB))


def store_root() -> Path:
    from tl_studio.core.catalog import cache_dir

    return cache_dir() / "features"


def file_digest(path) -> str | None:
    """The hex digest of a file's bytes, or None when it cannot be read (the loader reports that)."""
    digest = hashlib.blake2b(digest_size=20)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def entry_path(folder: Path, digest: str) -> Path:
    """Where the key folder ``folder`` keeps the features of the image whose bytes have ``digest``."""
    return folder / digest[:2] / (digest + ENTRY_SUFFIX)


def key_folders_of(model_name: str) -> list[Path]:
    """The store's key folders with features of ``model_name`` computed by this code version, whatever
    its weights, preprocessing and device; none when the cache is off. For a guess made before torch is
    imported (which of them a run opens needs the built model or backbone_facts): a wrong guess costs
    only time, since the store itself checks every entry it reads."""
    if limit_bytes() <= 0:
        return []
    folders = []
    try:
        with os.scandir(store_root()) as items:
            candidates = [Path(item.path) for item in items if item.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for folder in candidates:
        try:
            key = json.loads((folder / KEY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(key, dict) and key.get("model") == model_name and key.get("code") == CODE_VERSION:
            folders.append(folder)
    return folders
