"""``tl-studio advise DATA_DIR``: recommend how to train a model on this dataset, with the reasons.

Looks at the images per class, the number of classes, the image sizes, and how well a linear head on
the frozen pretrained features separates the classes (a quick probe on at most ``--max-images``
images), and recommends freeze depth, schedule, learning rate, epochs, image size and augmentation.
Only the standard library is imported here at module level; the core is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import textwrap

from tl_studio.cli import config_flags

# the settings advise's probe takes from the command line (config_flags holds each flag's type and choices)
SETTINGS = ("model", "weights", "batch_size", "optimizer", "img_size", "val_fraction", "seed", "device")
# how each recommended setting is shown; its flag for `tl-studio train` comes from config_flags
LABELS = {"freeze": "Freeze", "schedule": "Schedule", "lr": "Learning rate", "epochs": "Epochs",
          "img_size": "Image size", "augment": "Augmentation"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_flags.add_data_arguments(parser)
    config_flags.add_config_flags(parser, SETTINGS, helps={
        "batch_size": "the batch size you will train with (default 32)",
        "img_size": "size the probe looks at (default: the model's own)"})
    parser.add_argument("--max-images", type=int, default=400,
                        help="at most this many training images for the probe (default 400)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")


def build_config(args: argparse.Namespace):
    return config_flags.build_config(args, SETTINGS)


def run(args: argparse.Namespace) -> int:
    from tl_studio.cli.reporters import run_with_status_line
    from tl_studio.core.advisor import analyse_dataset
    from tl_studio.core.errors import UserError

    if args.max_images < 10:
        raise UserError("--max-images must be at least 10.")
    config = build_config(args)
    if getattr(args, "_owns_the_process", False):
        from tl_studio.core.cpu_settings import optimizers_without_dynamo

        optimizers_without_dynamo()  # the probe's L-BFGS would import torch._dynamo only to mark itself
    recommendation = run_with_status_line(
        "advise", lambda progress: analyse_dataset(config, max_images=args.max_images, progress=progress))
    if recommendation is None:
        return 130
    if args.json:
        print(json.dumps(recommendation.to_dict()))
    else:
        # the settings the analysis used that the advice does not set go into the command as given
        carried = config_flags.given_flags(args, SETTINGS, leave_out=("model", *LABELS))
        print_recommendation(recommendation, args.data_dir, carried)
    return 0


def print_recommendation(recommendation, data_dir: str, carried: list[str] = ()) -> None:
    from tl_studio.cli.reporters import print_wrapped

    print(textwrap.fill(recommendation.summary, width=100))
    if recommendation.dataset_problems:
        print_wrapped(recommendation.dataset_problems)
    print(f"\nRecommended for {recommendation.stats.model} (analysed in {recommendation.seconds:.1f} s):")
    for item in recommendation.advice:
        prefix = f"  {LABELS[item.setting]:<14} {_shown(item):<10} "
        print(textwrap.fill(item.reason, width=110, initial_indent=prefix, subsequent_indent=" " * len(prefix)))
    print("\nTrain with these settings:")
    print("  " + train_command(recommendation, data_dir, carried))


def _shown(item) -> str:
    if item.setting == "lr":
        return f"{item.value:g}"
    if item.setting == "img_size":
        return f"{item.value} px"
    return str(item.value)


def train_command(recommendation, data_dir: str, carried: list[str] = ()) -> str:
    parts = ["tl-studio", "train", data_dir, "--model", recommendation.stats.model, *carried]
    changes = recommendation.config_changes()
    # The rate always, though the GUI's Apply may leave it automatic: the same value either way (the
    # advice's rate is the one the run's main phase uses), and a reader sees the number the advice gave.
    changes["lr"] = recommendation.lr
    for setting in LABELS:
        value = changes.get(setting)
        if value is not None:
            parts += [config_flags.flag_for(setting), f"{value:g}" if isinstance(value, float) else str(value)]
    if recommendation.schedule == "fine-tune":
        parts += [config_flags.flag_for("freeze_epochs"), str(recommendation.freeze_epochs)]
    return shlex.join(parts)  # a folder with a space in its name pastes into a shell as one word
