"""One table of the command-line flags that set a training setting (``core.config.TrainConfig``), shared by
every command that builds a config (`train`, `lr-find`, `advise`): each flag's name, the config field it sets,
its type and its choices (taken from ``core.config``, so a new choice appears in every command at once).

A command picks the flags it offers and may word a flag's help for itself (the probe of `advise` reads
--img-size differently from `train`); the flag's meaning, type and choices stay the table's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from tl_studio.core import config as settings  # choice lists, no torch import


@dataclass(frozen=True)
class ConfigFlag:
    dest: str  # argparse's name for it: "batch_size" for --batch-size
    field: str  # the TrainConfig field it sets
    options: dict = field(default_factory=dict)  # argparse keywords: type, choices, help, ...

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")


def _flag(dest: str, config_field: str | None = None, **options) -> ConfigFlag:
    return ConfigFlag(dest, config_field or dest, options)


FLAGS: dict[str, ConfigFlag] = {flag.dest: flag for flag in (
    _flag("model", help="model name (see `tl-studio models`); default efficientnet_lite0"),
    _flag("weights", help="default (pretrained), none, or a .pth file"),
    _flag("freeze", help="all (train only the new head, the default), none (fine-tune all) or N first stages"),
    _flag("epochs", type=int, help="passes over the training images (default 5); with a frozen backbone, a "
                                   "small data set gets several passes over its cached features per epoch"),
    _flag("batch_size", type=int, help="images per training step (default 32; lower it if memory runs out)"),
    _flag("lr", type=float, help="learning rate (default: 1e-3 for a frozen backbone, else 3e-4; with "
                                 "--schedule fine-tune, 1e-4 after a head phase at 1e-3)"),
    _flag("img_size", type=int,
          help=f"input size in pixels, {settings.MIN_IMG_SIZE} to {settings.MAX_IMG_SIZE} (default: the model's own)"),
    _flag("val_fraction", type=float, help="validation share for unsplit folders (default 0.2)"),
    _flag("test_fraction", type=float, help="test share for unsplit folders (default 0)"),
    _flag("seed", type=int, help="seed of the split and the shuffling: the same seed, the same run (default 0)"),
    _flag("device", choices=settings.DEVICES,
          help="where to train (default auto: a GPU if there is one, else the CPU)"),
    _flag("workers", type=int, help=f"data loader processes (default: {settings.AUTO_WORKERS})"),
    _flag("decode", choices=settings.DECODE_PLACES,
          help="where training JPEGs are decoded: gpu (NVIDIA, nvJPEG) where the CPU cannot keep the GPU busy; "
               "default auto: the loader processes"),
    _flag("augment", choices=settings.AUGMENTATIONS,
          help="random crops, flips and colour changes of the training images (default standard)"),
    _flag("optimizer", choices=settings.OPTIMIZERS, help="default adamw"),
    _flag("schedule", choices=settings.SCHEDULES,
          help="how the learning rate changes over the run (default onecycle); fine-tune trains the head first, "
               "then unfreezes down to --freeze"),
    _flag("freeze_epochs", type=int, help="head-only epochs of --schedule fine-tune (default 1)"),
    _flag("weight_decay", type=float, help="weight decay, 0 or more (default 0.01)"),
    _flag("label_smoothing", type=float, help="label smoothing, 0 to below 1 (default 0.1)"),
    _flag("class_weights", "class_weighting", choices=settings.CLASS_WEIGHTING,
          help="weight the loss by class size, 1/sqrt(images) capped at 10x (default auto: when the largest class "
               "has over 3x the smallest's images; a class of fewer than 5 is not weighted up)"),
    _flag("early_stopping", "early_stopping_patience", type=int, metavar="PATIENCE",
          help="stop after N epochs without improvement (default 0: off)"),
)}
# Switches that turn a default off: no value to type, so they live outside the typed table's shape.
SWITCHES: dict[str, tuple[str, str]] = {
    "feature_cache": ("--no-feature-cache", "run every epoch through the frozen backbone instead of caching its features"),
    "amp": ("--no-amp", "float32 throughout: no mixed precision on CUDA, no bf16 on CPUs with bf16 matrix units"),
}


def flag_for(config_field: str) -> str:
    """The command-line flag that sets ``config_field`` (e.g. "lr" -> "--lr")."""
    for flag in FLAGS.values():
        if flag.field == config_field:
            return flag.flag
    raise KeyError(config_field)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data set and the config file every config-building command starts from."""
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="dataset folder: one sub-folder per class (or train/ and val/)")
    parser.add_argument("--config", help="a config.json to start from (flags override it)")


def add_config_flags(parser: argparse.ArgumentParser, dests: tuple[str, ...], *,
                     helps: dict[str, str] | None = None) -> None:
    """Adds the flags named in ``dests`` (table order), with a command's own ``helps`` where given."""
    helps = helps or {}
    for dest in dests:
        if dest in SWITCHES:
            flag, text = SWITCHES[dest]
            parser.add_argument(flag, dest=dest, action="store_const", const=False, help=helps.get(dest, text))
            continue
        entry = FLAGS[dest]
        options = dict(entry.options)
        if dest in helps:
            options["help"] = helps[dest]
        parser.add_argument(entry.flag, dest=dest, **options)


def config_changes(args: argparse.Namespace, dests: tuple[str, ...]) -> dict:
    """The TrainConfig fields the user set on the command line (flags left out change nothing), with the
    data set folder made absolute."""
    changes = {}
    for dest in dests:
        value = getattr(args, dest, None)
        if value is None:
            continue
        config_field = dest if dest in SWITCHES else FLAGS[dest].field
        changes[config_field] = value.strip().lower() if dest == "freeze" else value
    changes["data_dir"] = str(Path(args.data_dir).resolve())
    return changes


def given_flags(args: argparse.Namespace, dests: tuple[str, ...], leave_out: tuple[str, ...] = ()) -> list[str]:
    """The flags (and --config) the user gave among ``dests``, as words for a `tl-studio train` command a
    guidance command suggests: a suggestion that dropped --optimizer sgd or --weights none trained
    something else than what was analysed (an SGD rate with AdamW; pretrained weights offline)."""
    words = ["--config", args.config] if getattr(args, "config", None) else []
    for dest in dests:
        value = getattr(args, dest, None)
        if value is None or dest in leave_out:
            continue
        if dest in SWITCHES:
            words.append(SWITCHES[dest][0])
        else:
            words += [FLAGS[dest].flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return words


def build_config(args: argparse.Namespace, dests: tuple[str, ...], start=None):
    """``start`` (a TrainConfig; else --config's file, else the defaults) with the command line's changes,
    validated: a bad value ends in one sentence from ``TrainConfig.validate``."""
    from tl_studio.core.config import TrainConfig

    if start is None:
        start = TrainConfig.load(Path(args.config)) if getattr(args, "config", None) else TrainConfig()
    return start.replace(**config_changes(args, dests)).validate()
