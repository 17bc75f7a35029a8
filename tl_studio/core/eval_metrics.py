"""Classification metrics and rankings from class probabilities: the numbers of the Evaluate step.

Pure numpy on arrays, so they are easy to check by hand and cheap to recompute:

- ``confusion_matrix``: rows are the true class, columns the predicted one, in the model's class order.
- ``per_class_metrics``: precision, recall, F1 and support per class. A ratio whose denominator is zero
  (no image predicted as the class, or none of it in the set) is 0, as scikit-learn reports it, for the
  averages; the tables and ``to_dict`` show such a precision (nothing answered as the class) or recall
  and F1 (no image of it) as not measured, not as a score of 0.
- ``macro_f1``: the mean F1 over the classes the evaluated images have (support > 0), so a class absent
  from a folder of new photos does not drag the average down, also when the model wrongly answers it for
  some of them (those mistakes already lower the true classes' recall; scikit-learn's default, truth or
  prediction, turned 95 % accuracy into a macro-F1 of 0.64 that way). ``absent_classes`` names the others.
- ``top_losses``: the wrong predictions, most confident first ("the model was sure, and wrong").
- ``likely_mislabelled``: confident learning's rule (Northcutt et al., 2021, "Confident Learning"): an image
  labelled i is suspect when the model gives another class j at least j's own average confidence on the
  images labelled j. Suspects are ranked by how unlikely the model finds their given label, and the label
  it suggests is that j. The per-class thresholds make it fair to classes the model is less sure about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMALLEST_PROBABILITY = 1e-12  # keeps the log finite when the model gives a label exactly 0


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # images of this class in the set
    predicted: int = 0  # images the model answered as this class

    def to_dict(self) -> dict:
        """A class no image has: its recall and F1 are null, as the text table's "-" (they were 0.0, and
        averaging per_class gave another macro-F1 than the one printed). A class nothing was answered as:
        its precision is null (0 of 0 is no precision at all)."""
        measured = self.support > 0
        return {"name": self.name, "precision": self.precision if self.predicted else None,
                "recall": self.recall if measured else None, "f1": self.f1 if measured else None,
                "support": self.support}


@dataclass(frozen=True)
class Suspect:
    """An image whose given label the model doubts."""

    index: int  # into the evaluated images
    suggested: int  # the class the model suggests instead
    given_probability: float  # what the model gives the image's own label


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts; [t, p] = images of class t predicted as p."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    safe = np.where(denominator > 0, denominator, 1)
    return np.where(denominator > 0, numerator / safe, 0.0)


def per_class_metrics(matrix: np.ndarray, classes: list[str] | tuple[str, ...]) -> list[ClassMetrics]:
    hits = np.diag(matrix).astype(float)
    precision = _ratio(hits, matrix.sum(axis=0).astype(float))
    recall = _ratio(hits, matrix.sum(axis=1).astype(float))
    f1 = _ratio(2 * precision * recall, precision + recall)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    return [ClassMetrics(name, float(p), float(r), float(f), int(s), int(n))
            for name, p, r, f, s, n in zip(classes, precision, recall, f1, support, predicted)]


def accuracy(matrix: np.ndarray) -> float:
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else 0.0


def macro_f1(matrix: np.ndarray, metrics: list[ClassMetrics]) -> float:
    scores = [m.f1 for m in metrics if m.support > 0]
    return float(np.mean(scores)) if scores else 0.0


def absent_classes(metrics: list[ClassMetrics]) -> list[str]:
    """The model's classes that no evaluated image has: left out of the macro-F1."""
    return [m.name for m in metrics if m.support == 0]


def losses(probabilities: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Cross-entropy of each image: -log p(true label)."""
    given = probabilities[np.arange(len(true)), true]
    return -np.log(np.maximum(given, SMALLEST_PROBABILITY))


def top_losses(probabilities: np.ndarray, true: np.ndarray, limit: int | None = None) -> list[int]:
    """Indices of the wrong predictions, the most confident first (ties: the higher loss first)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != true)
    confidence = probabilities[wrong, predicted[wrong]]
    order = np.lexsort((-losses(probabilities, true)[wrong], -confidence))
    return [int(i) for i in wrong[order][:limit]]


def class_thresholds(probabilities: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Each class's average self-confidence: the mean probability of class j over images labelled j
    (infinite for a class with no images, so nothing is ever suggested towards it by this rule)."""
    num_classes = probabilities.shape[1]
    thresholds = np.full(num_classes, np.inf)
    for label in range(num_classes):
        mine = true == label
        if mine.any():
            thresholds[label] = probabilities[mine, label].mean()
    return thresholds


def likely_mislabelled(probabilities: np.ndarray, true: np.ndarray, limit: int | None = None) -> list[Suspect]:
    """The suspects of confident learning, the least likely given label first."""
    if len(true) == 0:
        return []
    rows = np.arange(len(true))
    above = probabilities >= class_thresholds(probabilities, true)[None, :]
    above[rows, true] = False  # the given label is not a suggestion
    # nor a class the model finds less likely than the given label: a class of 1-2 training images, whose
    # images get 0.005 of it, had every image above its threshold (81 of 122 suggested, right answers too)
    above &= probabilities > probabilities[rows, true][:, None]
    candidates = np.where(above, probabilities, -1.0)
    suggested = candidates.argmax(axis=1)
    suspects = np.flatnonzero(above.any(axis=1))
    given = probabilities[rows, true]
    ordered = suspects[np.argsort(given[suspects], kind="stable")]
    return [Suspect(int(i), int(suggested[i]), float(given[i])) for i in ordered[:limit]]


def cell_indices(probabilities: np.ndarray, true: np.ndarray, true_class: int, predicted_class: int) -> list[int]:
    """The images of one confusion-matrix cell, the highest loss first."""
    predicted = probabilities.argmax(axis=1)
    members = np.flatnonzero((true == true_class) & (predicted == predicted_class))
    order = np.argsort(-losses(probabilities, true)[members], kind="stable")
    return [int(i) for i in members[order]]
