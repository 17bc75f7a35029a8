"""The model registry: what every model is, costs and needs, readable without importing torch.

The numbers come from torchvision's own registry (``list_models`` and each DEFAULT weight's ``meta`` and
``transforms()``) and, for the bundled ``efficientnet_lite0``, from timm and the bundled file. Reading them needs
torch, which ``tl-studio models`` must not import (start-up matters), so the registry is built once and cached as
JSON in the user cache directory, keyed by the installed torchvision and timm versions. Later calls read the JSON.

Where the weights of a model are right now ("bundled", "cached", "missing") is worked out from the file system,
with the same directory rule as ``torch.hub.get_dir()``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tl_studio.core import lite0
from tl_studio.core.errors import UserError

DEFAULT_MODEL = lite0.NAME
# A model's published parameter count includes its 1,000-class ImageNet head; the Model and Train steps
# count the model with the head a run gives it, so the two figures differ and each place says which.
PUBLISHED_PARAMETERS_NOTE = ("parameters as published, with the 1,000-class ImageNet head; a run replaces that head "
                             "with one for your classes")

# Bump when ModelInfo or the way its values are read changes: older cache files are then rebuilt.
CATALOG_SCHEMA = 2  # 2: file_bytes (was file_size_mb, in MiB)
CACHE_FILE_NAME = "model_catalog.json"


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: its cost, its accuracy on ImageNet, its preprocessing and where its weights live."""

    name: str
    family: str  # the torchvision module that builds it ("resnet", "vision_transformer", ...)
    num_params: int  # with the 1000-class ImageNet head
    acc1: float | None  # ImageNet-1K top-1 accuracy of the pretrained weights, in percent
    gflops: float | None  # at crop_size, counted like torchvision's `_ops` (multiply-adds)
    file_bytes: int | None  # of the pretrained weights file
    min_size: int  # smallest input side the architecture accepts
    crop_size: int  # the side the pretrained weights were evaluated at
    resize_size: int  # the shorter side is resized to this before the centre crop
    interpolation: str  # "bilinear" | "bicubic" | "nearest"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_name: str | None  # e.g. "ResNet18_Weights.IMAGENET1K_V1"
    weights_url: str | None
    weights_file: str | None  # the file's name in the hub cache (or of the bundled file)
    bundled: bool  # the weights ship with the app and work offline

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return cls(**values)


def list_models() -> list[ModelInfo]:
    """Every registered model: the default (bundled) one first, then torchvision's by name."""
    return list(_catalog(catalog_cache_path()).values())


def display_order(info: ModelInfo) -> tuple:
    """How the window and `tl-studio models` list models: the default first, then by name as people count
    (resnet18 before resnet101; list_models keeps the catalogue's text order)."""
    from tl_studio.core.natural_order import natural_key

    return info.name != DEFAULT_MODEL, natural_key(info.name)


def get_model_info(name: str) -> ModelInfo:
    """The model called ``name`` (case and '-'/'_' do not matter); a UserError suggesting close names otherwise."""
    catalog = _catalog(catalog_cache_path())
    key = normalise_name(name)
    if key in catalog:
        return catalog[key]
    close = difflib.get_close_matches(key, list(catalog), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"Unknown model '{name}': {hint}`tl-studio models` lists them all.")


def cached_model_info(name: str) -> ModelInfo | None:
    """The model called ``name`` from the catalogue file if it is there and current, else None: never
    builds the catalogue (which imports torchvision), so a thread may ask while torch is being imported."""
    entries = _read_cache(catalog_cache_path(), catalog_key())
    key = normalise_name(name)
    return next((ModelInfo.from_dict(entry) for entry in entries or () if entry.get("name") == key), None)


def refuse_unknown_name_if_cached(name: str) -> None:
    """A UserError for a model name the catalogue file does not hold (with close names, as
    get_model_info says it); nothing when the file is missing or stale, as building it imports
    torchvision: a command asks before it makes anything, and the model build asks again."""
    entries = _read_cache(catalog_cache_path(), catalog_key())
    if entries is not None and not any(entry.get("name") == normalise_name(name) for entry in entries):
        get_model_info(name)


def resize_side(info: ModelInfo, img_size: int | None = None) -> int:
    """The shorter side the evaluation preprocessing resizes to, for the model's own crop or for
    ``img_size`` with the same crop ratio (preprocess.PreprocessSpec.for_model)."""
    crop = img_size or info.crop_size
    return round(crop * info.resize_size / info.crop_size)


def normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# --- where things live -------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """TL Studio's cache: $TL_STUDIO_CACHE_DIR, else $XDG_CACHE_HOME/tl_studio, else ~/.cache/tl_studio."""
    override = os.environ.get("TL_STUDIO_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return _xdg_cache_home() / "tl_studio"


def catalog_cache_path() -> Path:
    return cache_dir() / CACHE_FILE_NAME


def hub_checkpoint_dir() -> Path:
    """Where torch.hub keeps downloaded weights: the rule of ``torch.hub.get_dir()`` plus "checkpoints"."""
    torch_home = os.environ.get("TORCH_HOME")
    base = Path(torch_home).expanduser() if torch_home else _xdg_cache_home() / "torch"
    return base / "hub" / "checkpoints"


def _xdg_cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()


def weights_status(info: ModelInfo) -> str:
    """"bundled" (ships with the app), "cached" (in the hub cache) or "missing" (needs a download or import)."""
    if info.bundled:
        return "bundled" if lite0.bundled_weights_path() is not None else "missing"
    if info.weights_file and (hub_checkpoint_dir() / info.weights_file).is_file():
        return "cached"
    return "missing"


# --- the JSON cache --------------------------------------------------------------------------------------


def catalog_key() -> dict:
    """What the cached catalog depends on; read from package metadata, so no torch import is needed."""
    return {
        "schema": CATALOG_SCHEMA,
        "torchvision": _installed_version("torchvision"),
        "timm": _installed_version("timm"),
        lite0.PACKAGE: _installed_version(lite0.PACKAGE),
    }


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=4)
def _catalog(path: Path) -> dict[str, ModelInfo]:
    """name -> ModelInfo, in display order. Memoised per cache file for the life of the process."""
    key = catalog_key()
    entries = _read_cache(path, key)
    if entries is None:
        entries = build_catalog_entries()
        _write_cache(path, key, entries)
    return {entry["name"]: ModelInfo.from_dict(entry) for entry in entries}


def clear_memo() -> None:
    """Forget the in-process copy, e.g. after the cache file was changed by another process."""
    _catalog.cache_clear()


def _read_cache(path: Path, key: dict) -> list[dict] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("models"), list):
        return None
    return data["models"]


def _write_cache(path: Path, key: dict, entries: list[dict]) -> None:
    """Atomically, so a concurrent reader never sees half a file; a read-only cache only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"key": key, "models": entries}, out, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


# --- building the catalog (imports torch) ------------------------------------------------------------------


def build_catalog_entries() -> list[dict]:
    """Read every model's metadata from torchvision and timm. Slow (imports torch); the result is cached."""
    import torchvision.models

    names = sorted(torchvision.models.list_models(module=torchvision.models))
    bundled = ModelInfo.from_dict(lite0.catalog_entry())  # checks lite0's fields against ModelInfo
    return [bundled.to_dict()] + [_torchvision_entry(name).to_dict() for name in names]


def _torchvision_entry(name: str) -> ModelInfo:
    import torchvision.models

    weights = torchvision.models.get_model_weights(name).DEFAULT
    meta, preprocess = weights.meta, weights.transforms()
    builder_module = torchvision.models.get_model_builder(name).__module__
    return ModelInfo(
        name=name,
        family=builder_module.rsplit(".", 1)[-1],
        num_params=int(meta["num_params"]),
        acc1=_imagenet_acc1(meta),
        gflops=meta.get("_ops"),
        # torchvision records MiB (os.path.getsize / 2**20); the app says sizes in SI units (wording.MB)
        file_bytes=round(meta["_file_size"] * 2**20) if meta.get("_file_size") else None,
        min_size=int(max(meta["min_size"])),
        crop_size=int(_first(preprocess.crop_size)),
        resize_size=int(_first(preprocess.resize_size)),
        interpolation=preprocess.interpolation.value,
        mean=tuple(float(v) for v in preprocess.mean),
        std=tuple(float(v) for v in preprocess.std),
        weights_name=str(weights),
        weights_url=weights.url,
        weights_file=os.path.basename(weights.url),
        bundled=False,
    )


def _imagenet_acc1(meta: dict) -> float | None:
    return meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")


def _first(value) -> int:
    return value[0] if isinstance(value, (list, tuple)) else value
