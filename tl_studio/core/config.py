"""The training configuration: one frozen dataclass with defaults a beginner can trust.

The CLI builds it from a config file and flags, the GUI edits it, and every run writes the resolved
config to ``config.json`` so the run can be repeated.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tl_studio.core.errors import UserError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine", "fine-tune")
AUGMENTATIONS = ("none", "light", "standard", "strong")
DEVICES = ("auto", "cpu", "cuda", "mps")
# Where training JPEGs are decoded: "gpu" on a CUDA device (core/gpu_decoding.py); "auto" is the loader
# processes, until decoding on the GPU has been measured in the engine (docs/training.md)
DECODE_PLACES = ("auto", "cpu", "gpu")
CLASS_WEIGHTING = ("auto", "on", "off")
# The fine-tune schedule's second phase when no rate is set: small steps, because a head that already
# works needs the pretrained layers adapted, not undone.
FINE_TUNE_PHASE_LR = {"adamw": 1e-4, "sgd": 1e-3}
# Memory for activations grows with the square of the input side: 1024 px is 21x the pixels of the
# usual 224 px (and above every torchvision model's own size, 518 px at most), so larger sizes only
# run out of memory.
MIN_IMG_SIZE, MAX_IMG_SIZE = 32, 1024
# Loader processes of a run that does not set them (workers None); device.loader_workers applies the
# rule and says why. The words are what the flags' help and the Train step's tooltip say.
CPU_LOADER_WORKERS, MAX_GPU_LOADER_WORKERS = 2, 8
# The batch of the passes without gradients (the feature fill, validation, an analysis's features) unless
# the training batch is larger: no gradients, so it fits, and a GPU needs large batches to be busy. On the
# 2-core CPU a forward pass on its own ran faster on smaller batches (efficientnet_lite0, the same tensor
# again and again: bf16 214 images/s at 16 against 142 at 64, float32 109 against 66), but a first run's
# fill did not: at 16 its forward passes took 3.3-3.4 s against 2.8-3.2 s at 64, and at 32 the whole
# `train` command ran 0.987x (0.916-1.030, 6 pairs with farm-bench), the machine's noise.
INFERENCE_BATCH = 64
AUTO_WORKERS = (f"{CPU_LOADER_WORKERS} on the CPU; on a GPU one per CPU core but one, at most "
                f"{MAX_GPU_LOADER_WORKERS}")


# What a resumed run may change: how long, and where and how fast it trains (the rest is its recipe). The
# data folder is checked on its own (a folder that moved is accepted, another one is not).
RESUME_MAY_CHANGE = frozenset({"data_dir", "epochs", "early_stopping_patience", "device", "workers", "amp",
                               "feature_cache", "image_cache_mb", "decode", "extra"})


@dataclass(frozen=True)
class TrainConfig:
    data_dir: str = ""
    model: str = "efficientnet_lite0"
    weights: str = "default"  # "default" (pretrained), "none" (random init) or a path to a .pth file
    freeze: str = "all"  # "all" = only the new head trains, "none" = fine-tune everything, or N first stages
    epochs: int = 5
    batch_size: int = 32
    lr: float | None = None  # None: a default that suits the freeze depth (see resolved_lr); with the
    # fine-tune schedule, the fine-tuning phase's rate (the head phase uses the head-only default)
    optimizer: str = "adamw"
    schedule: str = "onecycle"  # "fine-tune" = head first (freeze_epochs), then unfreeze to `freeze`
    freeze_epochs: int = 1  # the head-only epochs of the fine-tune schedule
    stage_lr_factor: float = 0.5  # fine-tune schedule: each earlier stage's rate = the next one's x this
    warmup_fraction: float = 0.1  # cosine schedule: share of steps spent warming up
    weight_decay: float = 0.01
    momentum: float = 0.9  # SGD only
    label_smoothing: float = 0.1
    class_weighting: str = "auto"  # "auto": weighted loss when the largest class > 3x the smallest
    early_stopping_patience: int = 0  # epochs without val-loss improvement before stopping; 0 = off
    augment: str = "standard"
    img_size: int | None = None  # None: the model's own input size
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 0
    device: str = "auto"
    workers: int | None = None  # loader processes; None: as many as suit the device (device.loader_workers)
    # mixed precision: on CUDA bf16 where supported, else fp16 with a grad scaler; on CPUs with bf16 matrix
    # units bf16 where it measured faster (device.autocast_dtype)
    amp: bool = True
    feature_cache: bool = True  # with the whole backbone frozen, compute each image's features once
    # decoded training images kept in memory by each training process (torchrun: one per GPU), shared out
    # between its loader processes (dataset.image_cache_bytes)
    image_cache_mb: int = 512
    decode: str = "auto"  # where training JPEGs are decoded (DECODE_PLACES; device.decodes_on_gpu)
    extra: dict = field(default_factory=dict, compare=False)  # free-form notes kept with the run

    # ---- derived values -------------------------------------------------------------------------
    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from learnt weights ("none" is a random start: nothing to transfer)."""
        return self.weights != "none"

    def resolved_lr(self) -> float:
        """AdamW at 1e-3 suits a new head on frozen features; whole-network fine-tuning needs a
        smaller step so the pretrained features are not destroyed in the first epoch."""
        if self.lr is not None:
            return self.lr
        head_only = self.freeze == "all"
        if self.optimizer == "sgd":
            return 1e-2 if head_only else 3e-3
        return 1e-3 if head_only else 3e-4

    def trained_lr(self) -> float:
        """The rate the run trains its chosen layers at, the one to quote for it: resolved_lr(), except
        that the fine-tune schedule with no rate set fine-tunes at FINE_TUNE_PHASE_LR, after a head phase
        at head_phase_lr()."""
        if self.schedule == "fine-tune" and self.lr is None:
            return FINE_TUNE_PHASE_LR.get(self.optimizer, FINE_TUNE_PHASE_LR["adamw"])
        return self.resolved_lr()

    def head_phase_lr(self) -> float:
        """The fine-tune schedule's head phase rate: the head-only default, whatever rate is set."""
        return self.replace(freeze="all", lr=None).resolved_lr()

    # ---- validation and (de)serialisation -------------------------------------------------------
    def validate(self) -> "TrainConfig":
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (self.lr is None or (self.lr > 0 and math.isfinite(self.lr)),
             "the learning rate must be a positive number (e.g. 1e-3)"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.augment in AUGMENTATIONS, f"augment must be one of {', '.join(AUGMENTATIONS)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.class_weighting in CLASS_WEIGHTING, f"class weighting must be one of {', '.join(CLASS_WEIGHTING)}"),
            (0 < self.val_fraction < 1, "the validation fraction must be above 0 and below 1 (e.g. 0.2)"),
            (0 <= self.test_fraction < 1 - self.val_fraction, "validation + test fractions must be below 1"),
            (self.workers is None or self.workers >= 0, "workers must be 0 or more"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (self.img_size is None or MIN_IMG_SIZE <= self.img_size <= MAX_IMG_SIZE,
             f"image size must be between {MIN_IMG_SIZE} and {MAX_IMG_SIZE} pixels (memory grows with its "
             f"square; leave it out for the model's own size)"),
            (self.schedule != "fine-tune" or 1 <= self.freeze_epochs < self.epochs,
             "the fine-tune schedule needs 1 <= --freeze-epochs < --epochs"),
            (self.schedule != "fine-tune" or self.freeze != "all",
             "the fine-tune schedule unfreezes down to --freeze, so give a depth other than 'all' (e.g. none)"),
            (self.early_stopping_patience >= 0, "early-stopping patience must be 0 (off) or more"),
            (self.freeze_epochs >= 0, "head-only epochs (--freeze-epochs) must be 0 or more"),
            (self.weight_decay >= 0 and math.isfinite(self.weight_decay),
             "weight decay must be 0 or a positive number (e.g. 0.01)"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (0 < self.stage_lr_factor <= 1, "the stage learning-rate factor must be in (0, 1]"),
            (0 <= self.warmup_fraction < 1, "the warm-up fraction must be in [0, 1)"),
            (self.image_cache_mb >= 0, "the image cache must be 0 MB (off) or more"),
            (self.decode in DECODE_PLACES, f"decode must be one of {', '.join(DECODE_PLACES)}"),
        ]
        parse_freeze(self.freeze)  # "banana" is said here, before a run folder is made, not at the model build
        for ok, message in checks:
            if not ok:
                raise UserError(f"Invalid setting: {message}.")
        return self

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def recipe_changes(self, given: "TrainConfig") -> dict[str, tuple]:
        """The settings of ``given`` a resumed run of this one cannot take, as {field: (this run's, given)}: its
        checkpoint holds the optimizer's and the schedule's state, its batch size and the split its epochs
        were validated on. Given with --resume, --lr 0.5 and --batch-size 8 were written into config.json
        (and the run history) while the run went on with 0.001 and 32. How long and on what it trains may
        change (RESUME_MAY_CHANGE)."""
        changed = {}
        for setting in dataclasses.fields(self):
            key = setting.name
            if key in RESUME_MAY_CHANGE:
                continue
            before, after = getattr(self, key), getattr(given, key)
            if key == "lr":
                if before is None and after is None:  # a default follows the settings named beside it
                    continue
                before, after = self.resolved_lr(), given.resolved_lr()  # a rate given equal to the default
            if before != after:
                changed[key] = (before, after)
        return changed

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        if not isinstance(data, dict):
            raise UserError("A config file holds one JSON object of settings, such as {\"epochs\": 10}.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise UserError(f"Unknown setting(s) in the config: {', '.join(unknown)}; remove them or check the spelling.")
        data = dict(data)
        if isinstance(data.get("freeze"), int) and not isinstance(data["freeze"], bool):
            data["freeze"] = str(data["freeze"])  # {"freeze": 2} means two stages, as --freeze 2 does
        for name, value in data.items():
            _check_type(name, value, fields[name].type)
        return cls(**data)

    def save(self, path: Path) -> None:
        from tl_studio.core.fileio import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"No config file at {path}.") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a folder; give a config.json file (a run folder holds one).") from None
        except UnicodeDecodeError:
            raise UserError(f"{path} is not a text file; give a config.json file (a run folder holds one).") from None
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"Could not read the config file {path}: {error}.") from None
        return cls.from_dict(data)


# What each annotation of TrainConfig admits from a JSON file (the module's annotations are strings).
_JSON_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,),
               "None": (type(None),)}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false",
               "dict": "an object"}


SPLIT_SETTINGS = ("val_fraction", "test_fraction", "seed")


def split_settings(stored: dict) -> dict:
    """The split settings a stored config (a run's config.json, a model file's training_config) was made
    with, TrainConfig's defaults where it says nothing: what scan_dataset needs to make its split again."""
    defaults = TrainConfig()
    return {"val_fraction": float(stored.get("val_fraction", defaults.val_fraction)),
            "test_fraction": float(stored.get("test_fraction", defaults.test_fraction)),
            "seed": int(stored.get("seed", defaults.seed))}


def _check_type(name: str, value, annotation: str) -> None:
    """A config file's value of the wrong JSON type ({"epochs": "two"}) is said here, in one sentence,
    instead of failing as a comparison of str and int somewhere in validate or training."""
    kinds = [kind.strip() for kind in str(annotation).split("|")]
    allowed = tuple(t for kind in kinds for t in _JSON_TYPES.get(kind, (object,)))
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return
    words = " or ".join(_TYPE_WORDS[kind] for kind in kinds if kind in _TYPE_WORDS)
    if "None" in kinds:
        words += " or null (the default)"
    raise UserError(f"The setting \"{name}\" in the config must be {words}, not {json.dumps(value)}.")


def parse_freeze(value: str | int, num_stages: int | None = None) -> int | str:
    """A freeze depth from CLI or config text: "all" (only the head trains), "none" (= 0) or a stage count."""
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    if text == "none":
        return 0
    try:
        depth = int(text)
    except ValueError:
        raise UserError(f"Freeze depth '{value}' is not 'all', 'none' or a number of stages.") from None
    if depth < 0 or (num_stages is not None and depth > num_stages):
        valid = f"0 to {num_stages}" if num_stages is not None else "0 or more"
        stages = f"this model has {num_stages} stages, so use" if num_stages is not None else "use"
        raise UserError(f"Freeze depth {depth} is out of range: {stages} {valid}, 'none' or 'all'.")
    return depth


def refuse_a_depth_that_freezes_every_stage(config: "TrainConfig", stages: int) -> None:
    """--freeze 5 on a model of 5 stages trains the head alone, as --freeze all does, but a run took the
    number for fine-tuning: no feature cache, the fine-tuning rate (val accuracy 0.464 after one epoch on
    ants/bees, against 0.961), and a two-phase schedule with nothing to unfreeze. Refused for a new run, with
    the setting that means it."""
    if parse_freeze(config.freeze, stages) == stages:
        raise UserError(f"--freeze {config.freeze} freezes every stage of {config.model}, which is --freeze all: the "
                        f"new head alone trains, on cached features. Give --freeze all, or a depth from 0 to "
                        f"{stages - 1} to fine-tune the later stages.")


@dataclass(frozen=True)
class Phase:
    name: str  # "train", or "head" then "fine-tune" for the two-phase schedule
    first_epoch: int
    last_epoch: int
    freeze: str
    stage_lr_factor: float | None  # discriminative learning rates (fine-tune phase)


def plan_phases(config: TrainConfig) -> list[Phase]:
    if config.schedule == "fine-tune":
        k = config.freeze_epochs
        return [Phase("head", 1, k, "all", None),
                Phase("fine-tune", k + 1, config.epochs, config.freeze, config.stage_lr_factor)]
    return [Phase("train", 1, config.epochs, config.freeze, None)]


def uses_feature_cache(config: TrainConfig, phase: Phase) -> bool:
    """Whether ``phase`` trains the head on cached features of the frozen backbone (computed in its first
    epoch, or read from the persistent store) instead of running the images through the network."""
    return config.feature_cache and phase.freeze == "all"
