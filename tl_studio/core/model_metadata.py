"""The checked loader's second half: a model file's TL Studio metadata (its ``tl_studio.json``) is read
by every command and step, so it is checked once, when the file is loaded, instead of failing deep in
them. Hand-edited files ended in tracebacks: three class names for a two-output model (topk out of
range), ``"classes": "antsbees"``, a list where an object belongs, an unknown interpolation, a mean of
one number. Each is now one sentence naming the field; and an answer of another width than the class
names is refused when it comes (a file's output width is only known once it runs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from tl_studio.core.errors import UserError


# True when the file's network was exported with its BatchNorms folded into its convolutions (export.py);
# its weights then load into a network laid out that way (bn_folding.with_folded_layout).
BATCHNORM_FOLDED = "batchnorm_folded"


class BadMetadata(UserError):
    """The file's metadata cannot describe its model; nothing was classified."""


def check_metadata(path: Path, metadata) -> None:
    if not isinstance(metadata, dict):
        _refuse(path, "its metadata is not a JSON object")
    classes = metadata.get("classes")
    if not classes:
        _refuse(path, "it has no class names in its metadata (is it a TL Studio export?)")
    if not isinstance(classes, list) or not all(isinstance(name, str) and name.strip() for name in classes):
        _refuse(path, "its class names are not a list of names")
    if len(set(classes)) != len(classes):
        twice = sorted({name for name in classes if classes.count(name) > 1})
        _refuse(path, f"its class names list {', '.join(twice)} more than once")
    for field in ("preprocessing", "unknown", "calibration", "quantization", "training_config"):
        if metadata.get(field) is not None and not isinstance(metadata[field], dict):
            _refuse(path, f"its metadata's {field} is not a JSON object")
    if metadata.get(BATCHNORM_FOLDED) not in (None, True, False):
        _refuse(path, f"its metadata's {BATCHNORM_FOLDED} is not true or false")
    if metadata.get("preprocessing") is not None:
        _check_preprocessing(path, metadata["preprocessing"])


def _check_preprocessing(path: Path, data: dict) -> None:
    from tl_studio.core.preprocess import INTERPOLATIONS

    sizes = [data.get("crop_size"), data.get("resize_size")]
    if not all(isinstance(size, int) and not isinstance(size, bool) and 0 < size <= 4096 for size in sizes):
        _refuse(path, "its preprocessing sizes are not whole numbers of pixels")
    if data.get("interpolation") not in INTERPOLATIONS:
        _refuse(path, f"its preprocessing names the interpolation {data.get('interpolation')!r}, not one of "
                      f"{', '.join(INTERPOLATIONS)}")
    for field, positive in (("mean", False), ("std", True)):
        values = data.get(field)
        if not (isinstance(values, list) and len(values) == 3 and all(_finite(v) and (v > 0 or not positive)
                                                                      for v in values)):
            _refuse(path, f"its preprocessing {field} is not three {'positive ' if positive else ''}numbers")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def answers_one_per_class(path: Path, predict: Callable, classes: int) -> Callable:
    """``predict`` refusing an answer that is not one probability per class name (three names for a
    two-output model gave 'selected index k out of range' in predict and wrong figures in evaluate)."""
    def checked(images):
        probabilities = predict(images)
        width = probabilities.shape[-1] if getattr(probabilities, "ndim", 0) else 0
        if width != classes:
            _refuse(path, f"its model answers {width} classes but its metadata names {classes}")
        return probabilities
    return checked


def _refuse(path: Path, reason: str):
    raise BadMetadata(f"{Path(path).name} cannot be used: {reason}.")
