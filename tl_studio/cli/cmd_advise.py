"""``tl-studio advise DATA_DIR``: recommend how to train a model on this dataset, with the reasons.

Looks at the images per class, the number of classes, the image sizes, and how well a linear head on
the frozen pretrained features separates the classes (a quick probe on at most ``--max-images``
images), and recommends freeze depth, schedule, learning rate, epochs, image size and augmentation.
Only the standard library is imported here at module level; the core is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

FLAG_FIELDS = {"model": "model", "weights": "weights", "batch_size": "batch_size", "optimizer": "optimizer",
               "img_size": "img_size", "seed": "seed", "device": "device", "val_fraction": "val_fraction"}
# how each setting is shown and passed to `tl-studio train`
LABELS = {"freeze": ("Freeze", "--freeze"), "schedule": ("Schedule", "--schedule"), "lr": ("Learning rate", "--lr"),
          "epochs": ("Epochs", "--epochs"), "img_size": ("Image size", "--img-size"),
          "augment": ("Augmentation", "--augment")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="dataset folder: one sub-folder per class (or train/ and val/)")
    parser.add_argument("--config", help="a config.json to start from (flags override it)")
    parser.add_argument("--model", help="model name (see `tl-studio models`); default efficientnet_lite0")
    parser.add_argument("--weights", help="default (pretrained), none, or a .pth file")
    parser.add_argument("--batch-size", type=int, help="the batch size you will train with (default 32)")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"])
    parser.add_argument("--img-size", type=int, help="size the probe looks at (default: the model's own)")
    parser.add_argument("--max-images", type=int, default=400,
                        help="at most this many training images for the probe (default 400)")
    parser.add_argument("--val-fraction", type=float, help="validation share for unsplit folders (default 0.2)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")


def build_config(args: argparse.Namespace):
    from tl_studio.core.config import TrainConfig

    config = TrainConfig.load(Path(args.config)) if args.config else TrainConfig()
    changes = {field: getattr(args, flag) for flag, field in FLAG_FIELDS.items() if getattr(args, flag) is not None}
    changes["data_dir"] = str(Path(args.data_dir).resolve())
    return config.replace(**changes).validate()


def run(args: argparse.Namespace) -> int:
    from tl_studio.cli.reporters import run_with_status_line
    from tl_studio.core.advisor import analyse_dataset
    from tl_studio.core.errors import UserError

    if args.max_images < 10:
        raise UserError("--max-images must be at least 10.")
    config = build_config(args)
    recommendation = run_with_status_line(
        "advise", lambda progress: analyse_dataset(config, max_images=args.max_images, progress=progress))
    if recommendation is None:
        return 130
    if args.json:
        print(json.dumps(recommendation.to_dict()))
    else:
        print_recommendation(recommendation, args.data_dir)
    return 0


def print_recommendation(recommendation, data_dir: str) -> None:
    print(textwrap.fill(recommendation.summary, width=100))
    print(f"\nRecommended for {recommendation.stats.model} (analysed in {recommendation.seconds:.1f} s):")
    for item in recommendation.advice:
        prefix = f"  {LABELS[item.setting][0]:<14} {_shown(item):<10} "
        print(textwrap.fill(item.reason, width=110, initial_indent=prefix, subsequent_indent=" " * len(prefix)))
    print("\nTrain with these settings:")
    print("  " + train_command(recommendation, data_dir))


def _shown(item) -> str:
    if item.setting == "lr":
        return f"{item.value:g}"
    if item.setting == "img_size":
        return f"{item.value} px"
    return str(item.value)


def train_command(recommendation, data_dir: str) -> str:
    parts = ["tl-studio", "train", data_dir, "--out", "RUN_DIR", "--model", recommendation.stats.model]
    changes = recommendation.config_changes()
    # The rate always, though the GUI's Apply may leave it automatic: the same value either way (the
    # advice's rate is the one the run's main phase uses), and a reader sees the number the advice gave.
    changes["lr"] = recommendation.lr
    for setting, (_, flag) in LABELS.items():
        value = changes.get(setting)
        if value is not None:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if recommendation.schedule == "fine-tune":
        parts += ["--freeze-epochs", str(recommendation.freeze_epochs)]
    return " ".join(parts)
