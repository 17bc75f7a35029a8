"""``tl-studio lr-find DATA_DIR``: sweep learning rates and suggest one.

A short training run whose learning rate grows exponentially each step; the suggestion is where the
smoothed loss falls fastest. With the whole backbone frozen (``--freeze all``, the default) it trains
the head on cached features and takes seconds. Nothing is saved: the model is built for the sweep only.
Only the standard library is imported here at module level; the core is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# flag -> TrainConfig field, for the flags that map one to one (default None: only given flags override)
FLAG_FIELDS = {
    "model": "model", "weights": "weights", "batch_size": "batch_size", "img_size": "img_size",
    "optimizer": "optimizer", "schedule": "schedule", "augment": "augment", "seed": "seed", "device": "device",
    "workers": "workers", "val_fraction": "val_fraction", "feature_cache": "feature_cache",
}
CHART_ROWS = 14
BAR_WIDTH = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="dataset folder: one sub-folder per class (or train/ and val/)")
    parser.add_argument("--config", help="a config.json to start from (flags override it)")
    parser.add_argument("--model", help="model name (see `tl-studio models`); default efficientnet_lite0")
    parser.add_argument("--weights", help="default (pretrained), none, or a .pth file")
    parser.add_argument("--freeze", help="all (only the new head trains: fast, the default), none, or N first stages")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--img-size", type=int, help="input size in pixels (default: the model's own)")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"])
    parser.add_argument("--schedule", choices=["onecycle", "cosine", "fine-tune"],
                        help="fine-tune: sweep with the discriminative per-stage rates of the fine-tune phase")
    parser.add_argument("--augment", choices=["none", "light", "standard", "strong"])
    parser.add_argument("--start-lr", type=float, default=1e-7, help="first rate of the sweep (default 1e-7)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="last rate of the sweep (default 10)")
    parser.add_argument("--steps", type=int, default=100, help="training steps of the sweep (default 100)")
    parser.add_argument("--val-fraction", type=float, help="validation share for unsplit folders (default 0.2)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--workers", type=int, help="data loader processes for the image sweep (default 2)")
    parser.add_argument("--no-feature-cache", dest="feature_cache", action="store_const", const=False)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (suggested_lr, lrs, losses, ...) instead of a chart")


def build_config(args: argparse.Namespace):
    from tl_studio.core.config import TrainConfig

    config = TrainConfig.load(Path(args.config)) if args.config else TrainConfig()
    changes = {field: getattr(args, flag) for flag, field in FLAG_FIELDS.items() if getattr(args, flag) is not None}
    if args.freeze is not None:
        changes["freeze"] = args.freeze.strip().lower()
    changes["data_dir"] = str(Path(args.data_dir).resolve())
    return config.replace(**changes).validate()


def run(args: argparse.Namespace) -> int:
    from tl_studio.cli.reporters import run_with_status_line
    from tl_studio.core.errors import UserError
    from tl_studio.core.lr_finder import find_lr

    if not 0 < args.start_lr < args.end_lr:
        raise UserError("--start-lr must be positive and smaller than --end-lr.")
    if args.steps < 10:
        raise UserError("--steps must be at least 10 for a curve to read.")
    config = build_config(args)
    result = run_with_status_line("lr-find", lambda progress: find_lr(
        config, start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.steps, progress=progress))
    if result is None:
        return 130
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_summary(result, args, config)
    return 0


def _print_summary(result, args, config) -> None:
    how = "head on cached features" if result.feature_cache else f"freeze {result.freeze}, on image batches"
    ending = ", stopped when the loss diverged" if result.diverged else ""
    print(f"Learning-rate sweep: {result.model} ({how}), {len(result.lrs)} steps in {result.seconds:.1f} s{ending}.")
    for line in chart_lines(result.lrs, result.losses, result.suggested_index):
        print(line)
    print(result.message)
    if result.suggested_lr is None:
        return
    print(f"Suggested learning rate: {result.suggested_lr:.1e}")
    freeze = "" if config.freeze == "all" else f" --freeze {config.freeze}"
    print(f"Use it: tl-studio train {args.data_dir} --out RUN_DIR --model {config.model}{freeze} "
          f"--lr {result.suggested_lr:.1e}")


def chart_lines(lrs, losses, marked: int | None, rows: int = CHART_ROWS) -> list[str]:
    """A text chart: one row per evenly spaced step (always including the marked one), the smoothed loss
    as a bar. Losses far above the start (the divergence) are capped so the fall stays readable."""
    if not losses:
        return []
    evenly = {round(i * (len(lrs) - 1) / (rows - 1)) for i in range(rows)}
    picks = sorted(evenly | ({marked} if marked is not None else set()))
    cap = losses[0] * 1.5
    shown = [min(losses[i], cap) for i in picks]
    low, high = min(shown), max(shown)
    lines = []
    for index, value in zip(picks, shown):
        width = 1 + round((BAR_WIDTH - 1) * (value - low) / (high - low)) if high > low else 1
        marker = "  <- suggested" if index == marked else ""
        over = "+" if losses[index] > cap else ""
        lines.append(f"  lr {lrs[index]:8.1e}  loss {losses[index]:8.4f}  {'#' * width}{over}{marker}")
    return lines
