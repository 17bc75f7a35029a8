"""Calibrated probabilities: temperature scaling fitted on the validation split.

A network trained with cross-entropy is usually over-confident: among the images it calls "90 % sure" fewer
than 90 % are right. Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks")
divides every logit by one scalar T > 0 chosen to minimise the negative log-likelihood on held-out labelled
images. It never changes which class wins (the ranking of the logits is kept), only how sure the answer is,
so accuracy is untouched and the one number travels easily inside every model file.

The fit uses the validation split only (a test split is never used for fitting). The expected calibration
error (ECE, 15 equal-width confidence bins, weighted by the share of images in each bin) is reported before
and after, with the per-bin figures that a reliability diagram draws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15
# T is searched on a log scale inside these bounds: beyond them the model is either "always 100 %" or
# "always uniform", and a value there means the validation split is too small or degenerate to fit on.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    confidence: float  # mean top-1 probability of the images in the bin (0 when empty)
    accuracy: float  # share of them whose top-1 class is right (0 when empty)


@dataclass(frozen=True)
class Calibration:
    """What temperature scaling found on one validation split; recorded in tl_studio.json."""

    temperature: float
    images: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    bins_before: tuple[ReliabilityBin, ...] = ()
    bins_after: tuple[ReliabilityBin, ...] = ()

    def to_dict(self) -> dict:
        return {"method": "temperature", "temperature": self.temperature, "fitted_on": "val", "images": self.images,
                "ece_bins": ECE_BINS, "ece_before": self.ece_before, "ece_after": self.ece_after,
                "nll_before": self.nll_before, "nll_after": self.nll_after,
                "bins_before": [asdict(b) for b in self.bins_before],
                "bins_after": [asdict(b) for b in self.bins_after]}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(float(data["temperature"]), int(data.get("images", 0)), float(data["ece_before"]),
                   float(data["ece_after"]), float(data.get("nll_before", "nan")), float(data.get("nll_after", "nan")),
                   tuple(ReliabilityBin(**b) for b in data.get("bins_before", ())),
                   tuple(ReliabilityBin(**b) for b in data.get("bins_after", ())))

    def describe(self) -> str:
        return (f"Calibrated on {self.images} validation images: temperature {self.temperature:.3f}, "
                f"expected calibration error {self.ece_before:.3f} -> {self.ece_after:.3f}.")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    labels = np.asarray(labels, dtype=np.int64)
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> tuple[ReliabilityBin, ...]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins (lower, upper], the first one also takes a confidence of exactly 0
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    result = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        result.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), count,
                                     float(confidence[members].mean()) if count else 0.0,
                                     float(correct[members].mean()) if count else 0.0))
    return tuple(result)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    table = reliability_bins(probabilities, labels, bins)
    total = sum(b.count for b in table)
    if not total:
        return float("nan")
    return float(sum(b.count * abs(b.accuracy - b.confidence) for b in table) / total)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the validation NLL. The NLL is convex in 1/T, hence unimodal in log T: a
    golden-section search on log T finds it to 1e-4 in ~40 evaluations with no step size to tune."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("no validation images to calibrate on")
    lo, hi = np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa = negative_log_likelihood(logits, labels, float(np.exp(a)))
    fb = negative_log_likelihood(logits, labels, float(np.exp(b)))
    while hi - lo > 1e-4:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = negative_log_likelihood(logits, labels, float(np.exp(a)))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = negative_log_likelihood(logits, labels, float(np.exp(b)))
    return float(np.exp((lo + hi) / 2.0))


def calibrate(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fits T on (validation) logits and reports the calibration before and after."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, temperature)
    return Calibration(
        temperature=temperature, images=int(len(labels)),
        ece_before=expected_calibration_error(before, labels), ece_after=expected_calibration_error(after, labels),
        nll_before=negative_log_likelihood(logits, labels), nll_after=negative_log_likelihood(logits, labels, temperature),
        bins_before=reliability_bins(before, labels), bins_after=reliability_bins(after, labels))


def logits_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant, which softmax and temperature scaling ignore.
    Lets an older model file (probabilities out) be calibrated after the fact."""
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0))
