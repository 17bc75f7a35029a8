"""Classifying images with a trained model: a model file from disk or the model just trained.

The model contains its preprocessing, so the answer is the exported file's own. Given a plan
(``inference.plan_for``), images are decoded in loader workers and go through the file in batches
(core/inference.py says how images of different sizes share a batch); without one, each image goes
through whole and on its own. A file that cannot be read gets an error entry and the rest go on;
predictions come out in input order, batch by batch, as they are made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from tl_studio.core.errors import UserError


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


# The CSV of predictions, written by `tl-studio predict --csv` and the Predict step's Export CSV…: the same
# columns and cells, and lines ended by "\n" as every other CSV TL Studio writes
CSV_LINE_END = "\n"


def csv_header(top_k: int) -> list[str]:
    return ["path", *(f"{kind}{k}" for k in range(1, top_k + 1) for kind in ("label", "prob")), "unknown", "error"]


def csv_cells(path: str, labels, probs, unknown: bool, error: str | None, top_k: int) -> list:
    """One prediction as a row under ``csv_header(top_k)``: text cells made safe for a spreadsheet
    (safe_text.csv_cell), confidences to 6 decimals, ``unknown`` empty for a file not classified."""
    from tl_studio.core.safe_text import csv_cell

    ranks = [cell for label, prob in zip(labels, probs) for cell in (csv_cell(label), f"{prob:.6f}")]
    ranks += [""] * (2 * top_k - len(ranks))
    answered = "" if error else ("yes" if unknown else "no")
    return [csv_cell(path), *ranks, answered, csv_cell(error or "")]


def collect_image_paths(inputs: Iterable) -> list[Path]:
    """Files as given; folders searched recursively, sorted, skipping what the scan skips (hidden files
    and folders, Thumbs.db, desktop.ini and the like): never images, only failures to report."""
    from tl_studio.core.data import is_ignored_name

    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            for folder, subfolders, files in os.walk(item):
                subfolders[:] = sorted(d for d in subfolders if not is_ignored_name(d))
                found.extend(Path(folder) / f for f in sorted(files) if not is_ignored_name(f))
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
                  top_k: int = 3, cancel: Callable[[], bool] | None = None, unknown_rule=None, *,
                  plan=None, workers: int = 0) -> Iterator[Prediction]:
    """``unknown_rule``: applied to each image's probabilities (see ``unknown_rule_of``). ``plan``: how
    images reach the model (``inference.plan_for(model_file, batch_size)``; None: one at a time, whole);
    ``workers``: loader processes that decode images beside the model (0: in this thread)."""
    from tl_studio.core import inference

    paths = list(paths)
    for results in inference.run(predict, paths, plan or inference.ONE_AT_A_TIME, workers=workers, cancel=cancel):
        for result in results:
            path = str(paths[result.index])
            if result.error is not None:
                yield Prediction(path, error=result.error)
            else:
                yield _top(path, result.probabilities, classes, top_k, unknown_rule)


def _top(path: str, probabilities: torch.Tensor, classes: list[str], top_k: int, unknown_rule=None) -> Prediction:
    top = torch.topk(probabilities, k=min(top_k, len(classes)))
    rejected = bool(unknown_rule.is_unknown(probabilities.numpy()[None])[0]) if unknown_rule else False
    return Prediction(path, tuple(classes[i] for i in top.indices.tolist()), tuple(top.values.tolist()),
                      probabilities=tuple(probabilities.tolist()), unknown=rejected)
