"""Classifying images with a trained model: a model file from disk or the model just trained.

Each image goes through the model at its own size (the model contains its preprocessing), so the
answer is exactly what the exported file gives. A file that cannot be read gets an error entry and
the rest go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from tl_studio.core.errors import Cancelled, UserError
from tl_studio.core.images import ImageLoadError, load_rgb


@dataclass(frozen=True)
class Prediction:
    path: str
    labels: tuple[str, ...] = ()  # best first
    probs: tuple[float, ...] = ()
    error: str | None = None  # why the image could not be classified
    probabilities: tuple[float, ...] = ()  # every class, in the model's class order
    unknown: bool = False  # the model file's unknown rule rejects the image (labels still say the closest)

    @property
    def ok(self) -> bool:
        return self.error is None


def collect_image_paths(inputs: Iterable) -> list[Path]:
    """Files as given; folders searched recursively (hidden files and folders skipped), sorted."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            for folder, subfolders, files in os.walk(item):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                found.extend(Path(folder) / f for f in sorted(files) if not f.startswith("."))
        elif item.exists():
            found.append(item)
        else:
            raise UserError(f"{item} does not exist; check the path.")
    return found


def unknown_rule_of(metadata: dict):
    """The model file's unknown rule (core/unknown.py), or None for a file written before it existed."""
    from tl_studio.core.unknown import UnknownRule

    try:
        return UnknownRule.from_dict(metadata.get("unknown"))
    except (ValueError, KeyError, TypeError):
        return None


def predict_paths(predict: Callable[[torch.Tensor], torch.Tensor], classes: list[str], paths: Iterable,
                  top_k: int = 3, cancel: Callable[[], bool] | None = None, unknown_rule=None) -> Iterator[Prediction]:
    """``unknown_rule``: applied to each image's probabilities (see ``unknown_rule_of``)."""
    from tl_studio.core.preprocess import to_unit_tensor

    for path in paths:
        if cancel and cancel():
            raise Cancelled()
        try:
            image = to_unit_tensor(load_rgb(path)).unsqueeze(0)
        except (ImageLoadError, OSError) as error:
            yield Prediction(str(path), error=str(getattr(error, "reason", None) or error))
            continue
        probabilities = torch.as_tensor(predict(image))[0].float()
        yield _top(str(path), probabilities, classes, top_k, unknown_rule)


def _top(path: str, probabilities: torch.Tensor, classes: list[str], top_k: int, unknown_rule=None) -> Prediction:
    top = torch.topk(probabilities, k=min(top_k, len(classes)))
    rejected = bool(unknown_rule.is_unknown(probabilities.numpy()[None])[0]) if unknown_rule else False
    return Prediction(path, tuple(classes[i] for i in top.indices.tolist()), tuple(top.values.tolist()),
                      probabilities=tuple(probabilities.tolist()), unknown=rejected)
