"""The "unknown" answer: a rejection score, a threshold chosen on the validation split, and its figures.

A classifier trained on ants and bees answers "ant" or "bee" for a photo of a car. The rule here lets any
runtime say "unknown" instead: compute the score of an image from the model file's output and reject it
when the score is below the threshold recorded in the file's ``tl_studio.json``.

The score is the maximum (calibrated) class probability, because it is the one score that every runtime can
compute from the model file's output alone: a user with plain PyTorch, ONNX Runtime or a phone app applies
exactly the rule the app applies. benchmarks/bench_unknown.py measured it against two others on the default
ants/bees model (153 validation images known; 60 generated textures and scenes and 22 photos and drawings
from other packages' test data unknown): AUROC 0.81 for the maximum probability, 0.76 for the energy score
(which needs the logits), 0.93 for a Mahalanobis feature distance (which needs the backbone's features and a
class-mean and covariance table of the backbone's width squared). At 95 % of the validation images kept they
reject 11 %, 9 % and 51 % of the unknown images. The feature distance separates best, but it is not something
an N x C probability output can carry; it is the candidate for a second output of a later model-file version.

The threshold keeps a chosen share of in-distribution images (default 95 % of the validation split): at
least ``keep`` of the validation scores are at or above it. It lies halfway between the lowest score it
keeps and the highest it rejects, never on an image's score: another runtime, batch size or CPU computes a
probability a few 1e-7 off, and an image exactly on the threshold was kept by one and rejected by another
(the window and ``evaluate`` once disagreed on the share kept for that reason: 95.4 % against 94.8 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_KEEP = 0.95
SCORE = "max_probability"


@dataclass(frozen=True)
class UnknownRule:
    threshold: float
    keep: float  # the share of validation images the threshold was chosen to keep
    kept_on_val: float  # the share it actually keeps there (ties can make it a little more)
    score: str = SCORE

    def to_dict(self) -> dict:
        return {"score": self.score, "threshold": self.threshold, "keep": self.keep, "kept_on_val": self.kept_on_val,
                "rule": "unknown when max(probabilities) < threshold"}

    @classmethod
    def from_dict(cls, data: dict | None) -> "UnknownRule | None":
        if not data:
            return None
        if data.get("score", SCORE) != SCORE:
            raise ValueError(f"unknown rejection score {data.get('score')!r}")
        return cls(float(data["threshold"]), float(data.get("keep", DEFAULT_KEEP)),
                   float(data.get("kept_on_val", data.get("keep", DEFAULT_KEEP))))

    def is_unknown(self, probabilities) -> np.ndarray:
        """One bool per row of an N x C probability array."""
        return max_probability(probabilities) < self.threshold


def max_probability(probabilities) -> np.ndarray:
    return np.asarray(probabilities, dtype=np.float64).max(axis=1)


def energy_score(logits, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy, T * logsumexp(logits / T): higher means more in-distribution (Liu et al., 2020)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    return temperature * (top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1)))


def check_keep(keep: float) -> float:
    keep = float(keep)
    if not 0.5 <= keep < 1.0 or not np.isfinite(keep):
        raise ValueError("the share of known images to keep must be at least 0.5 and below 1 (for example 0.95)")
    return keep


NO_REJECTED_MARGIN = 2e-4  # below the lowest score when every validation image is kept (a margin, as above)


def choose_threshold(val_scores, keep: float = DEFAULT_KEEP) -> float:
    """A threshold that keeps at least ``keep`` of the validation scores (score >= threshold) and rejects
    the rest, halfway between the two groups so that no validation image lies on it (see the module's doc)."""
    keep = check_keep(keep)
    scores = np.sort(np.asarray(val_scores, dtype=np.float64))
    if not len(scores):
        raise ValueError("no validation images to choose the threshold on")
    rejected = int(np.floor((1.0 - keep) * len(scores) + 1e-9))  # at most this many may fall below it
    lowest_kept = scores[rejected]
    highest_rejected = scores[rejected - 1] if rejected else lowest_kept - NO_REJECTED_MARGIN
    if highest_rejected >= lowest_kept:  # a tie across the line: the tied images are kept
        return float(lowest_kept)
    return float((lowest_kept + highest_rejected) / 2)


def rule_for(val_probabilities, keep: float = DEFAULT_KEEP) -> UnknownRule:
    scores = max_probability(val_probabilities)
    threshold = choose_threshold(scores, keep)
    return UnknownRule(threshold, keep, float(np.mean(scores >= threshold)))


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve of "in-distribution scores higher": the probability that a random known
    image outscores a random unknown one (ties count half). Mann-Whitney U from average ranks."""
    in_scores = np.asarray(in_scores, dtype=np.float64)
    out_scores = np.asarray(out_scores, dtype=np.float64)
    if not len(in_scores) or not len(out_scores):
        return float("nan")
    values = np.concatenate([in_scores, out_scores])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):  # average ranks over ties
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    u = ranks[:len(in_scores)].sum() - len(in_scores) * (len(in_scores) + 1) / 2.0
    return float(u / (len(in_scores) * len(out_scores)))


@dataclass(frozen=True)
class UnknownReport:
    """How the rule does on a folder of images the model should not know (``evaluate --ood``)."""

    threshold: float
    ood_images: int
    ood_rejected: float  # share of the out-of-distribution images answered "unknown"
    val_images: int
    val_kept: float  # share of the data set's validation images still answered
    auroc: float
    unreadable: int = 0  # files of the unfamiliar folder that could not be read (left out)
    also_evaluated: int = 0  # "unfamiliar" images that are among the evaluated ones: no measure of anything

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "ood_images": self.ood_images, "ood_rejected": self.ood_rejected,
                "val_images": self.val_images, "val_kept": self.val_kept, "auroc": self.auroc,
                "ood_unreadable": self.unreadable, "ood_also_evaluated": self.also_evaluated}

    def describe(self) -> str:
        said = (f"Unknown answer (threshold {self.threshold:.3f}): rejects {self.ood_rejected:.1%} of "
                f"{self.ood_images} unfamiliar images and keeps {self.val_kept:.1%} of {self.val_images} evaluated "
                f"images; AUROC {self.auroc:.3f}.")
        # both were silent: 2 files of 8 left out, and the evaluated images given as unfamiliar (AUROC 0.500)
        if self.unreadable:
            said += f" {self.unreadable} file{'s' if self.unreadable != 1 else ''} could not be read and were left out."
        if self.also_evaluated:
            said += (f" {self.also_evaluated} of the unfamiliar images are among the evaluated ones, so these figures "
                     "say little: give a folder of images of none of the model's classes.")
        return said


def unknown_report(rule: UnknownRule, val_probabilities, ood_probabilities) -> UnknownReport:
    val_scores, ood_scores = max_probability(val_probabilities), max_probability(ood_probabilities)
    return UnknownReport(rule.threshold, len(ood_scores), float(np.mean(ood_scores < rule.threshold)),
                         len(val_scores), float(np.mean(val_scores >= rule.threshold)), auroc(val_scores, ood_scores))
