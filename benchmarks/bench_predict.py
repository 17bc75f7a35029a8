"""`tl-studio predict` on 2,000 ants/bees-sized JPEGs: batched (this tree) against one image per forward
pass (the commit before batching), whole commands as a user runs them (issue 15).

Makes the images by copying the ants/bees JPEGs and, past the first copy of each, re-encoding it at a
random 80-100 % of its size (quality 90), so every file differs. Makes a model file with
`tl-studio train HYMENOPTERA --epochs 1` (frozen efficientnet_lite0, about 20 s) unless --model names one.
The baseline is a detached worktree of --baseline (the last commit before batching); both run as
`python -m tl_studio predict MODEL IMAGES > out` with PYTHONPATH on their tree. The machine is shared, so
the runs are paired: baseline, then this tree, then this tree, then baseline, ... and the report gives
the medians of each side and the median of the per-pair ratios. The answers are compared too: the same
top-1 class for every image.

--busy N runs N other PyTorch jobs (small matrix products on torch's default threads, without end) beside
each timed command, as on a machine doing other work: one image per forward pass then waits for a core at
every one of the model's ~200 parallel operations per image (torch's threads meet at each), a batch of
32 only once per 32 images.

--own-models gives the baseline a model file its own tree trained (the same `train` command): what a user of
each version gets. Since 1c274f5 a model file has its BatchNorms folded, which speeds up both sides' passes
when they share a file.

Usage: .venv/bin/python benchmarks/bench_predict.py [--pairs 5] [--images 2000] [--model FILE]
                                                   [--extra "--batch-size 16"] [--busy 2] [--own-models]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
BASELINE = "cc69019"  # the last commit of main before predict and evaluate were batched
# Another PyTorch job on the machine: small matrix products on torch's default threads, without end.
BUSY = "import torch\na = torch.rand(192, 192)\nwhile True:\n    a @ a"


def make_images(source: Path, folder: Path, count: int) -> None:
    from PIL import Image

    originals = sorted(source.rglob("*.jpg"))
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for i in range(count):
        original = originals[i % len(originals)]
        target = folder / f"{i:05d}_{original.name}"
        if i < len(originals):
            shutil.copy(original, target)
            continue
        with Image.open(original) as image:
            scale = rng.uniform(0.8, 1.0)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(target, quality=90)


def make_model(data: Path, work: Path, tree: Path = ROOT, name: str = "run") -> Path:
    out = work / name
    subprocess.run([sys.executable, "-m", "tl_studio", "train", str(data), "--out", str(out), "--epochs", "1"],
                   check=True, capture_output=True, cwd=tree, env=_env(tree))
    return out / "model.pt2"


def _env(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree)}


def predict(tree: Path, model: Path, images: Path, out: Path, extra: list[str], busy: int) -> float:
    command = [sys.executable, "-m", "tl_studio", "predict", str(model), str(images), *extra]
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        started = time.perf_counter()
        with out.open("w") as stdout:
            result = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=tree,
                                    env=_env(tree))
        seconds = time.perf_counter() - started
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    if result.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def answers_of(out: Path) -> dict[str, str]:
    """Each image's answer as predict printed it ("ants 51.0%, bees 49.0%", "unknown (closest: ants
    41.0%)"); the generated file names have no ": " in them."""
    answers = {}
    for line in out.read_text().splitlines():
        path, _, ranked = line.partition(": ")
        answers[path] = ranked
    return answers


def top1(ranked: str | None) -> str | None:
    return ranked.split(" ")[0] if ranked else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, help="a model file (default: train one for 1 epoch)")
    parser.add_argument("--baseline", default=BASELINE, help=f"commit to compare with (default {BASELINE})")
    parser.add_argument("--extra", default="", help="flags for this tree's predict, e.g. '--batch-size 16'")
    parser.add_argument("--busy", type=int, default=0, help="other PyTorch jobs beside each timed command")
    parser.add_argument("--own-models", action="store_true",
                        help="each side classifies with a model file its own tree trained (what a user of each "
                             "version gets; files since 1c274f5 have their BatchNorms folded), not one file for both")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl_bench_predict_"))
    base_tree = work / "baseline"
    try:
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.baseline], cwd=ROOT,
                       check=True, capture_output=True)
        make_images(args.data, work / "images", args.images)
        model = args.model or make_model(args.data, work)
        base_model = make_model(args.data, work, base_tree, "baseline-run") if args.own_models else model
        print(f"{args.images} images in {work / 'images'}; model {model}; baseline {args.baseline} with "
              f"{'the model file it trained' if args.own_models else 'the same model file'}; "
              f"{args.busy} other PyTorch jobs beside each command; load average {os.getloadavg()[0]:.2f}", flush=True)
        sides = {"baseline": (base_tree, base_model, []), "batched": (ROOT, model, shlex.split(args.extra))}
        seconds: dict[str, list[float]] = {"baseline": [], "batched": []}
        for pair in range(args.pairs):
            order = ("baseline", "batched") if pair % 2 == 0 else ("batched", "baseline")
            for side in order:
                tree, side_model, extra = sides[side]
                seconds[side].append(predict(tree, side_model, work / "images", work / f"{side}.txt", extra,
                                             args.busy))
            ratio = seconds["baseline"][-1] / seconds["batched"][-1]
            print(f"pair {pair + 1} (load average {os.getloadavg()[0]:.2f}): baseline {seconds['baseline'][-1]:.1f} s "
                  f"({args.images / seconds['baseline'][-1]:.1f} img/s), batched {seconds['batched'][-1]:.1f} s "
                  f"({args.images / seconds['batched'][-1]:.1f} img/s), ratio {ratio:.2f}x", flush=True)
        old, new = statistics.median(seconds["baseline"]), statistics.median(seconds["batched"])
        ratios = [b / n for b, n in zip(seconds["baseline"], seconds["batched"])]
        print(f"MEDIAN whole command: baseline {old:.1f} s = {args.images / old:.1f} img/s, batched {new:.1f} s = "
              f"{args.images / new:.1f} img/s; ratio of medians {old / new:.2f}x, median pair ratio "
              f"{statistics.median(ratios):.2f}x")
        before, after = answers_of(work / "baseline.txt"), answers_of(work / "batched.txt")
        differ = [path for path in before if top1(before[path]) != top1(after.get(path))]
        print(f"answers: {len(after)} of {len(before)} images classified by both, top-1 differs on {len(differ)}"
              + (" (two models trained apart)" if args.own_models else ""))
        for path in differ[:5]:  # near-ties that rounding (batching, folded BatchNorms) tips over, or a real change
            print(f"  {path}: baseline {before[path]} | batched {after.get(path)}")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
