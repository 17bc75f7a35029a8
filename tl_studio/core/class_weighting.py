"""How much the loss weighs each class: one plan for training, the learning-rate finder, the Data step
and the advice, so that what the window says before a run is what the run does.

Measured on ants/bees with 124 ants and 12 bees for training and the usual 70/83 validation images
(8 epochs, 3 seeds, macro-F1): unweighted 0.83-0.88, inverse-frequency weights 0.89-0.91, their square
root 0.91-0.95. And a class of very few images is not learnt by weighting them up: one photo of a third
class beside 107 ants and 107 bees, weighted 107x, made the model answer that class for everything
(validation accuracy 0.000, unweighted 0.980); capped at 10x it still cost 10 points. So: weights go
with 1 / sqrt(count), the heaviest at most MAX_WEIGHT_RATIO times the lightest, and "auto" neither
weighs up nor counts towards the imbalance a class of fewer than MIN_IMAGES_TO_WEIGHT images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


IMBALANCE_THRESHOLD = 3.0  # largest class / smallest class above which "auto" weights the loss
MAX_WEIGHT_RATIO = 10.0  # the heaviest class weight over the lightest
MIN_IMAGES_TO_WEIGHT = 5  # "auto": a class with fewer training images is not weighted up


@dataclass(frozen=True)
class WeightingPlan:
    weights: tuple[float, ...] | None  # one per class, mean 1; None: every image counts the same
    ratio: float  # largest over smallest training class, among those weighting can help
    too_few: tuple[int, ...]  # classes "auto" leaves unweighted: fewer than MIN_IMAGES_TO_WEIGHT images
    setting: str
    empty: tuple[int, ...] = ()  # classes without a training image: a run refuses to start

    def sentences(self, classes: Sequence[str]) -> list[str]:
        """What the run will do, for its notes and the Data step."""
        said = []
        if self.weights is not None and max(self.weights) < 1.05 * min(self.weights):
            said.append("Class-weighted loss is on, as asked; the classes are about the same size, so every "
                        "image counts about the same.")
        elif self.weights is not None:
            why = (f"the largest class has {self.ratio:.1f}x the training images of the smallest"
                   if self.setting == "auto" else "as asked")
            said.append(f"Class-weighted loss is on ({why}): rarer classes count more, up to "
                        f"{max(self.weights) / min(self.weights):.1f}x.")
        elif self.ratio > IMBALANCE_THRESHOLD:
            said.append(f"Classes are imbalanced ({self.ratio:.1f}x); class weighting is off.")
        if self.empty:  # not "fewer than 5, too few to weight up": the run cannot start at all
            names = ", ".join(classes[index] for index in self.empty)
            said.append(f"{names}: no training images, so a run cannot start; add images of "
                        f"{'them' if len(self.empty) > 1 else 'it'} to the training split.")
        if self.too_few:
            names = ", ".join(classes[index] for index in self.too_few)
            them = "them" if len(self.too_few) > 1 else "it"
            said.append(f"{names}: fewer than {MIN_IMAGES_TO_WEIGHT} training images, too few to weight up "
                        f"(the model would learn those few photos); add images of {them}.")
        return said


def plan_weighting(counts: Sequence[int], setting: str) -> WeightingPlan:
    """``counts``: training images per class; ``setting``: "auto", "on" or "off"."""
    counts = [max(0, int(count)) for count in counts]
    too_few = tuple(index for index, count in enumerate(counts) if count < MIN_IMAGES_TO_WEIGHT) \
        if setting == "auto" else ()
    if counts and max(counts) <= IMBALANCE_THRESHOLD * max(1, min(counts)):
        too_few = ()  # not imbalanced: nothing would have been weighted up, nothing to explain
    empty = tuple(index for index, count in enumerate(counts) if count == 0)
    too_few = tuple(index for index in too_few if index not in empty)
    usable = [count for index, count in enumerate(counts) if index not in too_few and count > 0]
    ratio = max(usable) / min(usable) if usable else 1.0
    if setting == "off" or (setting == "auto" and ratio <= IMBALANCE_THRESHOLD) or not usable:
        return WeightingPlan(None, ratio, too_few, setting, empty)
    # a class left out weighs as the largest does: no more than any other
    effective = [max(usable) if index in too_few else max(1, count) for index, count in enumerate(counts)]
    raw = [count ** -0.5 for count in effective]
    ceiling = min(raw) * MAX_WEIGHT_RATIO
    capped = [min(weight, ceiling) for weight in raw]
    mean = sum(capped) / len(capped)
    return WeightingPlan(tuple(weight / mean for weight in capped), ratio, too_few, setting, empty)
