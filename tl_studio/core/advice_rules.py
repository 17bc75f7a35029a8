"""The reasoning behind the dataset advisor, as plain rules over a few numbers (no torch, no I/O).

Transfer learning has two questions: how much of the pretrained network to retrain, and how fast.
The textbook answer (CS231n's "Transfer Learning" notes, Yosinski et al. 2014) depends on two things:

- how much data there is: few images per class can only train a head; many can retrain the backbone
  without memorising them;
- how close the data is to the pretraining data. A linear head on the frozen features measures that
  directly (a "linear probe"): when it already separates the classes, the features fit and should
  stay as they are; when it does not, later (more specific) stages need to change.

``recommend`` turns those two into a freeze depth, a schedule, a learning rate, epochs, an image size
and an augmentation, each with one sentence a beginner understands. Without pretrained weights
(``--weights none``) there is nothing to transfer: every layer trains from its random start, longer
and with stronger augmentation, and the summary says what that costs. ``overfitting_remedies`` applies
the same reasoning to a run whose val loss has started to rise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tl_studio.core.config import FINE_TUNE_PHASE_LR
from tl_studio.core.wording import counted

# images per class (median over classes, training split) below which a dataset is in that level
DATA_LEVELS = (("tiny", 20), ("small", 250), ("medium", 1500), ("large", math.inf))
# how well a linear head on the frozen features separates the classes, as a share of the way from
# chance (0) to perfect (1): at or above which the probe counts as that level
PROBE_LEVELS = (("strong", 0.8), ("moderate", 0.5), ("weak", -math.inf))
# stages to retrain, counted back from the head: data level -> probe level -> count ("half", "all")
TRAINABLE_STAGES = {
    "tiny": {"strong": 0, "moderate": 0, "weak": 0},
    "small": {"strong": 0, "moderate": 1, "weak": 2},
    "medium": {"strong": 1, "moderate": 2, "weak": "half"},
    "large": {"strong": 2, "moderate": "half", "weak": "all"},
}
HEAD_STEPS = 150  # optimizer steps that reliably train a new head (cheap: features are cached)
TUNE_STEPS = 400  # fine-tuning steps before small datasets start to be memorised
HEAD_LR = {"adamw": 1e-3, "sgd": 1e-2}  # TrainConfig.resolved_lr's defaults
TUNE_LR = FINE_TUNE_PHASE_LR  # the fine-tuning phase's automatic rate
STRONGER_AUGMENT = {"none": "light", "light": "standard", "standard": "strong"}
SCRATCH_STEPS = 3000  # a network from random weights needs many more updates than a head or a fine-tune
SCRATCH_EPOCHS = (30, 100)  # at least, at most (100 full passes of a small set: an hour on a laptop CPU)


@dataclass(frozen=True)
class DatasetStats:
    num_classes: int
    num_train: int
    per_class_median: float  # training images per class
    per_class_min: int
    median_short_side: int | None  # pixels, from a sample of image headers
    model: str
    model_size: int  # the model's own input size (pretraining)
    num_stages: int  # backbone stages of the model (freeze depths 0..num_stages)
    batch_size: int = 32
    optimizer: str = "adamw"
    pretrained: bool = True  # False: --weights none, every layer starts random
    weighting: tuple[str, ...] = ()  # what the run's class weighting will do (class_weighting.py)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.num_train / self.batch_size))


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # cross-validated accuracy of a linear head on the frozen features
    chance: float  # the share of the largest class: what always guessing it scores
    images: int
    folds: int
    seconds: float

    @property
    def separability(self) -> float:
        """0 at chance, 1 when perfect."""
        return (self.accuracy - self.chance) / max(1e-9, 1 - self.chance)


@dataclass(frozen=True)
class Advice:
    setting: str  # a TrainConfig field
    value: object
    reason: str  # one sentence


@dataclass(frozen=True)
class Recommendation:
    freeze: str
    lr: float
    epochs: int
    schedule: str
    freeze_epochs: int
    img_size: int
    augment: str
    linear_probe_acc: float | None
    data_level: str
    probe_level: str
    advice: tuple[Advice, ...]  # one per setting, in the order shown to the user
    summary: str
    stats: DatasetStats
    probe: ProbeResult | None
    seconds: float = 0.0
    dataset_problems: str | None = None  # what the scan found wrong, in one sentence (problem_summary.py)

    @property
    def reasons(self) -> list[str]:
        return [item.reason for item in self.advice]

    def config_changes(self) -> dict:
        """What ``TrainConfig.replace`` / ``Session.update_config`` needs. The rate and image size that
        equal the automatic ones are left automatic (None), so the two-phase schedule keeps its own
        head-phase rate and a later change of model keeps following the model's input size."""
        automatic_lr = (HEAD_LR if self.freeze == "all" else TUNE_LR).get(self.stats.optimizer)
        return {"freeze": self.freeze, "lr": None if self.lr == automatic_lr else self.lr, "epochs": self.epochs,
                "schedule": self.schedule, "freeze_epochs": self.freeze_epochs, "augment": self.augment,
                "img_size": None if self.img_size == self.stats.model_size else self.img_size}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["reasons"] = self.reasons
        return data


def images_per_class(train_counts) -> float:
    """The one "images per class" figure the app shows anywhere: the median over the classes that have
    training images (the mean would let one large class speak for all)."""
    present = sorted(count for count in train_counts if count > 0)
    if not present:
        return 0.0
    middle = len(present) // 2
    return float(present[middle]) if len(present) % 2 else (present[middle - 1] + present[middle]) / 2


# ---- levels ---------------------------------------------------------------------------------------
def data_level(per_class: float) -> str:
    return next(name for name, below in DATA_LEVELS if per_class < below)


def probe_level(probe: ProbeResult | None) -> str:
    if probe is None:
        return "moderate"  # no measurement: the middle of the road
    return next(name for name, at_least in PROBE_LEVELS if probe.separability >= at_least)


def trainable_stages(data: str, probe: str, num_stages: int) -> int:
    count = TRAINABLE_STAGES[data][probe]
    if count == "half":
        return math.ceil(num_stages / 2)
    if count == "all":
        return num_stages
    return min(int(count), num_stages)


def freeze_setting(num_stages: int, trainable: int) -> str:
    if trainable <= 0:
        return "all"
    return "none" if trainable >= num_stages else str(num_stages - trainable)


# ---- the recommendation ---------------------------------------------------------------------------
def recommend(stats: DatasetStats, probe: ProbeResult | None) -> Recommendation:
    if not stats.pretrained:
        return _recommend_from_scratch(stats)
    data, fit = data_level(stats.per_class_median), probe_level(probe)
    trainable = trainable_stages(data, fit, stats.num_stages)
    freeze = freeze_setting(stats.num_stages, trainable)
    head_only = freeze == "all"
    epochs, freeze_epochs, epochs_reason = _epochs(stats, head_only)
    schedule, schedule_reason = _schedule(head_only, freeze_epochs)
    lr, lr_reason = _learning_rate(stats, head_only)
    augment, augment_reason = _augmentation(data, head_only)
    img_size, size_reason = _image_size(stats)
    advice = (
        Advice("freeze", freeze, _freeze_reason(stats, probe, data, fit, trainable)),
        Advice("schedule", schedule, schedule_reason),
        Advice("lr", lr, lr_reason),
        Advice("epochs", epochs, epochs_reason),
        Advice("img_size", img_size, size_reason),
        Advice("augment", augment, augment_reason),
    )
    return Recommendation(freeze=freeze, lr=lr, epochs=epochs, schedule=schedule, freeze_epochs=freeze_epochs,
                          img_size=img_size, augment=augment,
                          linear_probe_acc=None if probe is None else probe.accuracy, data_level=data,
                          probe_level=fit, advice=advice, summary=_summary(stats, probe), stats=stats, probe=probe)


def _recommend_from_scratch(stats: DatasetStats) -> Recommendation:
    """Random weights: frozen layers would stay random (their features mean nothing), so everything
    trains, at the rate a new network starts with, for many updates, with strong augmentation against
    memorising a small dataset. No probe: random features say nothing about the data."""
    data = data_level(stats.per_class_median)
    steps = stats.steps_per_epoch
    low, high = SCRATCH_EPOCHS
    epochs = min(high, max(low, math.ceil(SCRATCH_STEPS / steps)))
    lr = HEAD_LR[stats.optimizer]
    size = stats.model_size
    advice = (
        Advice("freeze", "none", "With random starting weights (no pretraining) there are no learnt features to "
                                 "keep: a frozen layer would stay random, so every layer trains."),
        Advice("schedule", "onecycle", "One-cycle warms the learning rate up and then lowers it, which trains a "
                                       "network from random weights quickly and stably."),
        Advice("lr", lr, f"A network starting from random weights learns at {lr:g}, the usual rate for training "
                         f"from scratch; the learning-rate finder (Find learning rate… on the Train step, "
                         "`tl-studio lr-find` on the command line) can refine it for your data."),
        Advice("epochs", epochs, f"{epochs} epochs give about {epochs * steps} updates: a network that starts "
                                 f"from nothing needs many more than a fine-tune."),
        Advice("img_size", size, f"{size} px is the size {stats.model} is designed for."),
        Advice("augment", "strong", "Strong augmentation (random crops and flips, TrivialAugment's colour and "
                                    "shape changes, random erasing) shows every image in many versions, the main "
                                    "defence against memorising when nothing is pretrained."),
    )
    return Recommendation(freeze="none", lr=lr, epochs=epochs, schedule="onecycle", freeze_epochs=1, img_size=size,
                          augment="strong", linear_probe_acc=None, data_level=data, probe_level="untested",
                          advice=advice, summary=_summary(stats, None), stats=stats, probe=None)


def _per_class(stats: DatasetStats) -> str:
    return f"{stats.per_class_median:.0f}"


def _images(n: str) -> str:
    return "1 image" if n == "1" else f"{n} images"


def _probe_words(probe: ProbeResult | None) -> str:
    if probe is None:
        return "(the features could not be tested)"
    return f"(a quick test on the frozen features scored {probe.accuracy:.0%}, chance is {probe.chance:.0%})"


def _freeze_reason(stats: DatasetStats, probe, data: str, fit: str, trainable: int) -> str:
    n, test = _per_class(stats), _probe_words(probe)
    if trainable == 0 and data == "tiny":
        more = " More images would help most." if fit == "weak" else ""
        return (f"With about {_images(n)} per class, retraining the pretrained layers would only memorise them, "
                f"so train just the new head {test}.{more}")
    if trainable == 0:
        return (f"The pretrained features already separate your classes well {test}, so training only the new "
                f"head is fast and accurate; with about {_images(n)} per class, retraining more would gain little.")
    if trainable >= stats.num_stages:
        return (f"Your images look unlike the pretraining photos {test} and there are plenty of them (about {n} "
                f"per class), so retrain every layer.")
    # untested, the fit is not judged: "features that fit your classes only partly (the features could not be
    # tested)" said both
    fits = ("features not tested on your classes" if probe is None else
            f"features that fit your classes {'only partly' if fit != 'strong' else 'well'} {test}")
    return (f"Retrain the last {trainable} of the model's {stats.num_stages} stages: with about {_images(n)} per "
            f"class and {fits}, adapting the later, more specific layers helps while the early, generic ones stay "
            f"as they are.")


def _schedule(head_only: bool, freeze_epochs: int) -> tuple[str, str]:
    if head_only:
        return "onecycle", ("One-cycle warms the learning rate up and then lowers it, which trains a new head "
                            "quickly and reliably.")
    return "fine-tune", (f"Train the new head alone for {counted(freeze_epochs, 'epoch')} first (fast, on cached "
                         f"features), "
                         f"so that its random start does not send large, damaging updates into the pretrained "
                         f"layers once they are unfrozen.")


def _learning_rate(stats: DatasetStats, head_only: bool) -> tuple[float, str]:
    if head_only:
        lr = HEAD_LR[stats.optimizer]
        return lr, (f"A new head on fixed features learns well at {lr:g}; the learning-rate finder (Find learning "
                    "rate… on the Train step, `tl-studio lr-find` on the command line) can refine it for your data.")
    lr, head_lr = TUNE_LR[stats.optimizer], HEAD_LR[stats.optimizer]
    return lr, (f"Pretrained layers need small steps ({lr:g} near the head, halved for each earlier stage) so the "
                f"first updates do not wipe out what they learnt; the head phase uses the usual {head_lr:g}.")


def _epochs(stats: DatasetStats, head_only: bool) -> tuple[int, int, str]:
    """(epochs in all, head-only epochs of the two-phase schedule, reason)."""
    steps = stats.steps_per_epoch
    if head_only:
        epochs = min(40, max(5, math.ceil(HEAD_STEPS / steps)))
        return epochs, 1, (f"{epochs} epochs give the head about {epochs * steps} updates; with the backbone frozen "
                           f"every epoch after the first takes well under a second.")
    head = min(5, max(1, math.ceil(HEAD_STEPS / 2 / steps)))
    tune = min(15, max(3, math.ceil(TUNE_STEPS / steps)))
    return head + tune, head, (f"{counted(head, 'head-only epoch')} then {counted(tune, 'fine-tuning epoch')} "
                               f"(about {tune * steps} "
                               f"updates): enough to adapt to {stats.num_train} images without memorising them.")


def _augmentation(data: str, head_only: bool) -> tuple[str, str]:
    if head_only:
        return "standard", ("The default, which does not act on this run: with the backbone frozen, features are "
                            "computed once from the plain images, so augmentation does not apply.")
    if data in ("tiny", "small"):
        return "light", ("Light augmentation (mild crops and flips) adds variety without making the few "
                         "fine-tuning epochs too hard to fit.")
    return "standard", ("Standard random crops and flips make each epoch's images a little different, "
                        "against memorising.")


def _image_size(stats: DatasetStats) -> tuple[int, str]:
    size, side = stats.model_size, stats.median_short_side
    if side is None:
        return size, f"{size} px is the size {stats.model} was pretrained at."
    if side > size:
        return size, (f"Your images (typically {side} px on the short side) are shrunk to {size} px, the size "
                      f"{stats.model} was pretrained at: its filters expect objects at that scale.")
    if side == size:
        return size, f"Your images are already {size} px, the size {stats.model} was pretrained at."
    return size, (f"Your images are small (typically {side} px), so they are enlarged to {size} px, the scale "
                  f"{stats.model}'s pretrained filters expect.")


def _summary(stats: DatasetStats, probe: ProbeResult | None) -> str:
    text = (f"{stats.num_train} training images in {stats.num_classes} classes (about {_per_class(stats)} per "
            f"class, the smallest has {stats.per_class_min}).")
    if probe is not None:
        text += (f" A linear head on the frozen {stats.model} features scored {probe.accuracy:.0%} on held-out "
                 f"images (chance {probe.chance:.0%}).")
    if not stats.pretrained:
        text += (" Without pretrained weights the model learns from these images alone, which usually needs "
                 "thousands per class to match what ImageNet weights reach with a few dozen; use them unless "
                 "you have a reason not to (the Model step's \"Start from\", or --weights default).")
    if stats.weighting:
        text += " " + " ".join(stats.weighting)
    return text


# ---- the same reasoning for an overfitting run ----------------------------------------------------
def freeze_more(freeze: str, num_stages: int | None = None) -> str | None:
    """The next deeper freeze setting, or None when only the head trains already."""
    if freeze == "all":
        return None
    depth = 0 if freeze == "none" else int(freeze)
    step = max(1, math.ceil(num_stages / 2)) if (num_stages and depth == 0) else 1
    deeper = depth + step
    return "all" if num_stages is not None and deeper >= num_stages else str(deeper)


def overfitting_remedies(freeze: str, augment: str, best_epoch: int, num_stages: int | None = None,
                         feature_cache: bool = True, pretrained: bool = True) -> tuple[Advice, ...]:
    """What to change when val loss rises while train loss falls: the settings of the next run. Random
    weights are never frozen further (frozen random layers keep meaning nothing): pretrained weights are
    the remedy there."""
    remedies = [Advice("epochs", best_epoch, f"Val loss was lowest at epoch {best_epoch}; the epochs after it "
                                             f"only memorised the training images.")]
    deeper = freeze_more(freeze, num_stages) if pretrained else None
    if not pretrained:
        remedies.append(Advice("weights", "default", "Pretrained weights start from features learnt on a million "
                                                     "photos, so far fewer weights need to fit your images."))
    if deeper is not None:
        remedies.append(Advice("freeze", deeper, "Freezing more of the backbone leaves fewer weights free to "
                                                 "memorise the training images."))
    augmentation_applies = freeze != "all" or not feature_cache
    if augmentation_applies and augment in STRONGER_AUGMENT:
        stronger = STRONGER_AUGMENT[augment]
        remedies.append(Advice("augment", stronger, f"{stronger.capitalize()} augmentation shows the model more "
                                                    f"varied versions of each image, so memorising them is harder."))
    return tuple(remedies)


def remedies_sentence(remedies: tuple[Advice, ...]) -> str:
    """The remedies as one sentence naming the settings, e.g. for the early-stopping notice:
    "Next time try 4 epochs, freeze depth 3 and standard augmentation." """
    names = {"epochs": "{} epochs", "freeze": "freeze depth {}", "augment": "{} augmentation",
             "weights": "pretrained weights"}
    parts = ["the whole backbone frozen" if (r.setting, r.value) == ("freeze", "all") else
             names[r.setting].format(r.value) for r in remedies if r.setting in names]
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return f"Next time try {listed}."
