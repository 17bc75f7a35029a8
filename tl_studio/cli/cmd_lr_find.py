"""``tl-studio lr-find DATA_DIR``: sweep learning rates and suggest one.

A short training run whose learning rate grows exponentially each step; the suggestion is where the
smoothed loss falls fastest. With the whole backbone frozen (``--freeze all``, the default) it trains
the head on cached features and takes seconds. Nothing is saved: the model is built for the sweep only.
Only the standard library is imported here at module level; the core is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import json
import shlex

from tl_studio.cli import config_flags
from tl_studio.core.config import AUTO_WORKERS

# the settings lr-find offers (config_flags holds each flag's type, choices and help; default None: only
# given flags override)
SETTINGS = ("model", "weights", "freeze", "batch_size", "img_size", "optimizer", "schedule", "augment",
            "val_fraction", "seed", "device", "workers", "feature_cache")
CHART_ROWS = 14
BAR_WIDTH = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_flags.add_data_arguments(parser)
    config_flags.add_config_flags(parser, SETTINGS, helps={
        "freeze": "all (only the new head trains: fast, the default), none, or N first stages",
        "img_size": "input size in pixels (default: the model's own)",
        "schedule": "fine-tune: sweep with the discriminative per-stage rates of the fine-tune phase",
        "workers": f"data loader processes for the image sweep (default: {AUTO_WORKERS})"})
    parser.add_argument("--start-lr", type=float, default=1e-7, help="first rate of the sweep (default 1e-7)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="last rate of the sweep (default 10)")
    parser.add_argument("--steps", type=int, default=100, help="training steps of the sweep (default 100)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (suggested_lr, lrs, losses, ...) instead of a chart")


def build_config(args: argparse.Namespace):
    return config_flags.build_config(args, SETTINGS)


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
    if result.dataset_problems:
        from tl_studio.cli.reporters import print_wrapped

        print_wrapped(result.dataset_problems)
    if result.suggested_lr is None:
        return
    print(f"Suggested learning rate: {result.suggested_lr:.1e}")
    freeze = [] if config.freeze == "all" else ["--freeze", config.freeze]
    # the sweep's other settings as given (an SGD rate suits SGD only; the batch size moves the rate)
    carried = config_flags.given_flags(args, SETTINGS, leave_out=("model", "freeze"))
    print("Use it: " + shlex.join(["tl-studio", "train", args.data_dir, "--model", config.model, *freeze, *carried,
                                   "--lr", f"{result.suggested_lr:.1e}"]))


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
