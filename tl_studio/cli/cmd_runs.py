"""``tl-studio runs``: the run history, in the three forms that ``FORMS`` lists (and --help shows).

Only small text files are read (status.json, config.json, metrics.csv): no torch, no checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ACTIONS = ("diff", "best")
FORMS = """\
tl-studio runs [ROOT...] [--json]     every run under the roots (default: the app's runs folder)
tl-studio runs diff RUN_A RUN_B       the settings and results that differ between two runs
tl-studio runs best [ROOT...]         the best run's path (why, on stderr)"""
# (header, width, how to show a RunSummary's value) for the text table
TABLE = (
    ("NAME", 30, lambda r: r.name),
    ("STATUS", 8, lambda r: r.status),
    ("DATE", 16, lambda r: _date(r.created)),
    ("DATA", 14, lambda r: r.data_set),
    ("MODEL", 20, lambda r: r.model),
    ("FREEZE", 6, lambda r: r.freeze),
    ("LR", 8, lambda r: f"{r.lr:.2g}" if r.lr is not None else ""),
    ("EPOCHS", 7, lambda r: f"{r.epochs_done}/{r.planned_epochs or '?'}"),
    ("VAL ACC", 7, lambda r: f"{r.best_val_acc:.1%}" if r.best_val_acc is not None else "-"),
    ("TIME", 7, lambda r: _duration(r.train_seconds)),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "tl-studio runs [ROOT ...] [--json] | runs diff RUN_A RUN_B [--json] | runs best [ROOT ...]"
    # `runs diff --help` and `runs best --help` print this too: the three forms, each with what it does
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = FORMS
    parser.add_argument("words", nargs="*", metavar="ROOT",
                        help="folders holding run folders (default: the app's runs folder, or $TL_STUDIO_RUNS_DIR); "
                             "or `diff RUN_A RUN_B`, or `best [ROOT ...]`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ACTIONS else "list"
    if action == "diff":
        return _diff(words, args.json)
    if action == "best":
        return _best(words, args.json)
    return _list(words, args.json)


def _roots(words: list[str]) -> list[str]:
    from tl_studio.core.run_history import default_runs_root

    return words or [str(default_runs_root())]


def _refuse_missing(words: list[str], way_forward: str) -> None:
    """A folder that is not there is said as such: a typo is not an empty history, nor a folder without a run."""
    from tl_studio.core.errors import UserError

    missing = next((word for word in words if not Path(word).expanduser().is_dir()), None)
    if missing is not None:
        raise UserError(f"{missing} is not a folder; {way_forward}")


def _refuse_missing_roots(words: list[str]) -> None:
    _refuse_missing(words, f"give the folder that holds your runs (by default {_roots([])[0]}).")


def _list(words: list[str], as_json: bool) -> int:
    from tl_studio.core.run_history import list_runs

    roots = _roots(words)
    _refuse_missing_roots(words)
    runs = list_runs(roots)
    if as_json:
        print(json.dumps([run.to_json() for run in runs], indent=2))
        return 0
    if not runs:
        print(f"No runs under {', '.join(roots)}. Train one with `tl-studio train DATA_DIR`, "
              f"or give the folder that holds your runs.", file=sys.stderr)
        return 0
    print("  ".join(header.ljust(width) for header, width, _ in TABLE).rstrip())
    for summary in runs:
        cells = [_fit(str(show(summary)), width, keep_end=header == "NAME") for header, width, show in TABLE]
        line = "  ".join(cells).rstrip()
        if summary.status in ("failed", "stopped") and summary.reason:
            line += f"\n    {summary.reason}"
        print(line)
    return 0


def _diff(words: list[str], as_json: bool) -> int:
    from tl_studio.core.errors import UserError
    from tl_studio.core.run_history import config_diff, run_by_path, summary_diff

    if len(words) != 2:
        raise UserError("`tl-studio runs diff` compares two runs: give RUN_A and RUN_B (two run folders).")
    _refuse_missing(words, "give two run folders (`tl-studio runs` lists them).")
    runs = [run_by_path(word) for word in words]
    settings = config_diff([run.config for run in runs])
    results = {column: [getattr(run, column) for run in runs]
               for column in summary_diff(runs, RESULT_COLUMNS)}
    if as_json:
        from tl_studio.core.run_history import resolved_lr

        # the rate each run trained at, as the table says it, beside the configs' own values: two defaults of
        # other rates read "lr": [null, null]
        trained = {"trained_lr": [resolved_lr(run.config) for run in runs]} if "lr" in settings else {}
        print(json.dumps({"runs": [run.path for run in runs], "settings": settings, **trained, "results": results},
                         indent=2))
        return 0
    width = max([len(key) for key in (*settings, *results)] + [8])
    cells = {title: [(key, *(_setting(key, value, run) for value, run in zip(values, runs)))
                     for key, values in rows.items()] for title, rows in (("settings", settings), ("results", results))}
    # the first run's column as wide as its longest cell, so the second lines up under its name
    left_width = max([len(runs[0].name)] + [len(left) for rows in cells.values() for _, left, _ in rows])
    print(f"{'':{width}}  {runs[0].name:{left_width}}  |  {runs[1].name}")
    if not settings:
        print("Both runs used the same settings.")
    for title, rows in cells.items():
        if rows:
            print(f"-- {title} that differ")
        for key, left, right in rows:
            print(f"{key:{width}}  {left:{left_width}}  |  {right}")
    return 0


RESULT_COLUMNS = ("status", "epochs_done", "best_epoch", "best_val_acc", "best_val_loss", "train_seconds",
                  "images_per_s", "device")


def _best(words: list[str], as_json: bool) -> int:
    from tl_studio.core.errors import UserError
    from tl_studio.core.run_folder import export_command
    from tl_studio.core.run_history import best_run, list_runs

    roots = _roots(words)
    _refuse_missing_roots(words)
    best = best_run(list_runs(roots))
    if best is None:
        raise UserError(f"No run under {', '.join(roots)} has finished an epoch yet; train one first.")
    if as_json:
        print(json.dumps({**best.run.to_json(), "why": best.why}, indent=2))
        return 0
    print(best.run.path)
    export = (f" It has no model file yet: {export_command(best.run.path)} writes it from its "
              "best epoch." if best.lacks_model_file else "")
    print(best.why + export, file=sys.stderr)
    return 0


def _setting(key: str, value, run) -> str:
    if key == "lr" and value is None and run.lr is not None:  # the default the run used
        return f"{run.lr:.2g} (default)"
    return _show(value)


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None or value == "" else str(value)


def _fit(text: str, width: int, keep_end: bool = False) -> str:
    """``text`` in ``width`` characters. ``keep_end`` cuts the middle instead of the end: run names made
    for the same data and model differ only in their time at the end (hymenoptera-…-20261203-160345)."""
    if len(text) <= width:
        return text.ljust(width)
    if keep_end:
        head = (width - 1) // 2
        return text[:head] + "…" + text[len(text) - (width - 1 - head):]
    return text[: width - 1] + "…"


def _date(created) -> str:
    from tl_studio.core.run_history import format_age

    return format_age(created)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
