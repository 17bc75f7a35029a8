"""``tl-studio scan DATA_DIR``: what the app sees in a dataset folder.

Classes with their counts per split, class imbalance, and every file or class it cannot use with the
reason; ``--json`` prints the same as one JSON object. Problems are findings, not failures: the exit
status is 0 whenever the folder is a dataset at all. Only the standard library is imported here at
module level (the core is imported inside ``run``), and the scan never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tl_studio.core.class_weighting import IMBALANCE_THRESHOLD, MIN_IMAGES_TO_WEIGHT

if TYPE_CHECKING:  # the core is imported inside run(), to keep `tl-studio --help` fast
    from tl_studio.core.data import DatasetScan, Problem

PROBLEMS_SHOWN = 20
BAR_WIDTH = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="a folder with one sub-folder per class, or with train/ and val/ folders")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                        help="share of each class kept for validation when the folder is not split (default 0.2)")
    parser.add_argument("--test-fraction", type=float, default=0.0, metavar="F",
                        help="share of each class kept for a final test when the folder is not split (default 0)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the split: the same seed gives the same split (default 0)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="reject images with more pixels than this (default 250,000,000)")
    parser.add_argument("--verify", action="store_true",
                        help="also decode every image fully to find damage the quick check misses (slower)")
    parser.add_argument("--all", action="store_true", help=f"list every problem (default: the first {PROBLEMS_SHOWN})")


def run(args: argparse.Namespace) -> int:
    from tl_studio.core.data import scan_dataset, verify_images
    from tl_studio.core.images import DEFAULT_MAX_PIXELS

    progress = _StderrProgress() if sys.stderr.isatty() else None
    interrupted = False
    try:
        scan = scan_dataset(args.data_dir, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                            seed=args.seed,
                            max_pixels=DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels,
                            progress=progress.scanning if progress else None)
        if args.verify:
            scan = scan.with_problems(verify_images(scan, progress=progress.verifying if progress else None))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress:
            progress.clear()
    if interrupted:  # after the progress line is cleared, so that the message is the one line left
        print("tl-studio scan: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(scan.to_dict(), indent=2))
    else:
        from tl_studio.core.safe_text import for_terminal

        # class and file names come from the disk: an escape sequence in one is shown, not obeyed
        print("\n".join(for_terminal(line) for line in summary_lines(scan, show_all=args.all)))
    return 0


def summary_lines(scan: DatasetScan, show_all: bool = False) -> list[str]:
    """The human-readable report of a DatasetScan."""
    counts = scan.counts()
    lines = [f"Dataset: {scan.root}", _split_description(scan)]
    if note := scan.uneven_split():
        lines.append(note + f" (--seed {scan.seed + 1}, for example)")
    lines.append("")
    lines += _class_table(scan.classes, counts, _bar_character())
    lines += _imbalance_note(counts["train"])
    lines += _problem_lines(scan.problems, show_all)
    return lines


def _split_description(scan: DatasetScan) -> str:
    sizes = {split: len(scan.split(split)) for split in ("train", "val", "test")}
    images = f"{len(scan.classes)} classes, {len(scan.records)} images"
    if scan.presplit:
        how = "split by its folders"
    else:
        how = f"split here: {scan.val_fraction:.0%} validation"
        how += f", {scan.test_fraction:.0%} test" if scan.test_fraction else ""
        how += f", seed {scan.seed}"
    shares = ", ".join(f"{split} {size}" for split, size in sizes.items() if size or split != "test")
    return f"{images} ({shares}; {how})"


def _class_table(classes: Sequence[str], counts: dict[str, dict[str, int]], bar: str) -> list[str]:
    splits = [split for split in ("train", "val", "test") if split != "test" or any(counts["test"].values())]
    totals = {name: sum(counts[split][name] for split in splits) for name in classes}
    width = max([len(name) for name in classes] + [len("class"), len("total")])
    largest = max(totals.values(), default=0) or 1
    header = f"  {'class':<{width}}" + "".join(f"{split:>7}" for split in splits) + f"{'total':>7}"
    lines = [header]
    for name in classes:
        cells = "".join(f"{counts[split][name]:>7}" for split in splits)
        lines.append(f"  {name:<{width}}{cells}{totals[name]:>7}  {bar * round(BAR_WIDTH * totals[name] / largest)}")
    column_totals = "".join(f"{sum(counts[split].values()):>7}" for split in splits)
    lines.append(f"  {'total':<{width}}{column_totals}{sum(totals.values()):>7}")
    return lines


def _imbalance_note(train_counts: dict[str, int]) -> list[str]:
    if not train_counts:
        return []
    largest = max(train_counts, key=lambda name: train_counts[name])
    smallest = min(train_counts, key=lambda name: train_counts[name])
    if train_counts[largest] <= IMBALANCE_THRESHOLD * train_counts[smallest]:
        return []
    if train_counts[smallest] == 0:
        ratio = f"while '{smallest}' has none"
    else:
        ratio = f"{train_counts[largest] / train_counts[smallest]:.1f}x the {train_counts[smallest]} of '{smallest}'"
    # weighting up a class of a few photos teaches the model those photos (core/class_weighting.py)
    advice = (f"add training images of '{smallest}': a run cannot start without them"
              if train_counts[smallest] == 0 else
              f"add images of '{smallest}': class weighting cannot make up for fewer than {MIN_IMAGES_TO_WEIGHT}"
              if train_counts[smallest] < MIN_IMAGES_TO_WEIGHT else
              f"consider class weighting, or more images of '{smallest}'")
    return ["", f"Imbalanced classes: '{largest}' has {train_counts[largest]} training images, {ratio}; {advice}."]


def _problem_lines(problems: Sequence[Problem], show_all: bool) -> list[str]:
    if not problems:
        return ["", "No problems found."]
    shown = problems if show_all else problems[:PROBLEMS_SHOWN]
    noun = "problem" if len(problems) == 1 else "problems"
    lines = ["", f"{len(problems)} {noun}:"]
    lines += [f"  {problem.path}: {problem.reason}" for problem in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more (use --all to list them all)")
    return lines


def _bar_character() -> str:
    """A block when the terminal's encoding has one (Windows consoles may not)."""
    try:
        "\u2588".encode(sys.stdout.encoding or "ascii")
        return "\u2588"
    except (UnicodeEncodeError, LookupError):
        return "#"


class _StderrProgress:
    """A one-line counter on the terminal for scans that take more than a moment."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._shown = False

    def scanning(self, done: int, total: int | None) -> None:
        self._show("Scanning", done, total)

    def verifying(self, done: int, total: int | None) -> None:
        self._show("Decoding", done, total)

    def _show(self, what: str, done: int, total: int | None) -> None:
        if time.monotonic() - self._start < 0.5:  # quick scans stay quiet
            return
        counter = f"{done}/{total}" if total else f"{done} files found"
        print(f"\r{what}... {counter}   ", end="", file=sys.stderr, flush=True)
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
