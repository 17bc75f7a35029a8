"""What a pretrained backbone is, remembered by the weights file it was built from, so that an analysis
whose features are all in the feature store (an "Analyse my dataset" after a run on the same images)
finds them without building the model: the build (about 0.9 s for efficientnet_lite0 on the 2-core
CPU) and the timm and torchvision imports only it needs (0.4-0.7 s) were a third of such an analysis's
time (a warm `tl-studio advise` of ants/bees: 5.0 -> 4.2 s, medians of 7, paired).

The feature store's key (feature_store.py) holds a digest of the backbone's weights as loaded, which
needs the built model. Building from a weights file is deterministic: the file's bytes, the model's
name and the code that builds it (TL Studio's, torch's, torchvision's and timm's versions) give the
same backbone every time. So a model built from a file is stamped with the file's digest (BLAKE2b of
its bytes, as the store identifies images) and its backbone's digest right after the build; when a
store is later opened for that model (a run's feature fill, an analysis) and its backbone is found
unchanged since the build, a record is written here: the backbone digest, the feature vector's shape
and the number of freezable stages, under a name derived from the file digest, the model and the
versions.

Only a backbone found unchanged is recorded (its digest is compared with the one taken at the build,
by value, so batch-norm statistics that moved count as a change): a fine-tuned model never stands for
the pretrained one. Random weights ("none") are never recorded: they depend on the seed and on every
random draw before the build. A record that cannot be read, or does not have the form written here,
is ignored (the caller builds the model, as it did before). Records live in the feature store's
folder (``backbones/``), a few hundred bytes each, one per model, weights file and set of versions;
the cache's "off" setting turns them off too, and deleting them at any time only costs one build.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tl_studio.core.feature_layout import CODE_VERSION, file_digest, limit_bytes, store_root
from tl_studio.core.fileio import atomic_path

FOLDER = "backbones"


@dataclass(frozen=True)
class BackboneFacts:
    weights: str  # the feature store key's weights digest (feature_store.weights_digest)
    feature_shape: tuple[int, ...] | None  # one image's feature vector, where the head says it
    stages: int  # freezable backbone stages (models.model_stages)


def stamp(model) -> None:
    """Notes, right after ``model`` was built (models.build_model), the digest of the weights file it
    loaded and its backbone's digest, for ``remember``. Called by the builders of runs and analyses; a
    model never stamped is never recorded. Nothing for random weights, or when the feature store is off
    (nothing would use them)."""
    from tl_studio.core.feature_store import weights_digest

    weights_file = getattr(model, "tl_weights_file", None)
    if weights_file is None or limit_bytes() <= 0:
        return
    source = file_digest(weights_file)
    if source is not None:
        model.tl_weights_source = source
        model.tl_built_weights = weights_digest(model)


def remember(model, store) -> None:
    """Records what ``model``'s backbone is, given the store feature_store.open_store opened for it (None:
    the store is off), when the model was stamped at its build and its backbone's digest in the store's
    key is still the one it had then. Failures only cost a later build."""
    from tl_studio.core.models import model_stages

    source = getattr(model, "tl_weights_source", None)
    if store is None or source is None or store.key["weights"] != getattr(model, "tl_built_weights", None):
        return
    record = {"identity": _identity(model.tl_name, source), "weights": store.key["weights"],
              "feature_shape": list(store.shape) if store.shape else None, "stages": len(model_stages(model))}
    path = _record_path(record["identity"])
    try:
        if json.loads(path.read_text(encoding="utf-8")) == record:
            return  # every later run of the same model would rewrite the same bytes
    except (OSError, ValueError):
        pass
    _write(path, json.dumps(record, sort_keys=True))


def recall(model_name: str, weights_choice) -> BackboneFacts | None:
    """The facts recorded for ``model_name`` built with ``weights_choice`` ("default" or a file's path)
    as the weights file on this machine is now, or None (not recorded, random weights, the weights not
    on this machine yet, the store off)."""
    if limit_bytes() <= 0:
        return None
    path = _weights_file(model_name, weights_choice)
    source = file_digest(path) if path is not None else None
    if source is None:
        return None
    identity = _identity(model_name, source)
    try:
        record = json.loads(_record_path(identity).read_text(encoding="utf-8"))
        shape = record["feature_shape"]
        facts = BackboneFacts(record["weights"], tuple(int(n) for n in shape) if shape is not None else None,
                              int(record["stages"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record["identity"] != identity or not isinstance(facts.weights, str):
        return None
    return facts


def _weights_file(model_name: str, weights_choice) -> Path | None:
    """The file a build with ``weights_choice`` would load, without downloading it."""
    from tl_studio.core import catalog, weights

    if weights_choice is None or weights_choice == "none":
        return None
    if weights_choice == "default":
        return weights.cached_weights_path(catalog.get_model_info(model_name))
    path = Path(weights_choice).expanduser()
    return path if path.is_file() else None


def _identity(model_name: str, source: str) -> dict:
    from tl_studio import __version__
    from tl_studio.core.catalog import _installed_version

    return {"model": model_name, "weights_file": source, "code": CODE_VERSION, "tl_studio": __version__,
            "versions": {name: _installed_version(name) for name in ("torch", "torchvision", "timm")}}


def _record_path(identity: dict) -> Path:
    name = hashlib.blake2b(json.dumps(identity, sort_keys=True).encode(), digest_size=16).hexdigest()
    return store_root() / FOLDER / f"{name}.json"


def _write(path: Path, text: str) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError:
        pass  # a full or read-only cache folder only costs a later build
