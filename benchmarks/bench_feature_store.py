"""The persistent feature cache (core/feature_store.py, issue 15 "second run" targets).

Each round, as whole processes like a user would, with TL_STUDIO_CACHE_DIR pointing at a fresh, empty
temporary folder:
  1. tl-studio train DATA --out R1 --epochs 5 --json   (first run: cold feature cache)
  2. tl-studio train DATA --out R2 --epochs 5 --json   (second run, new --out: features read back)
  3. tl-studio advise DATA --json                       (after the runs: warm)
then, with another empty cache folder:
  4. tl-studio advise DATA --json                       (cold)
and prints each time, the ratios second/first and warm/cold, and whether the best val accuracy of the two
runs is the same; then the medians over the rounds. Targets: both ratios at most 0.3.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bench_feature_store.py [--rounds 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"


def tl_studio(cache: Path, *args: str) -> tuple[float, list[dict]]:
    env = {**os.environ, "TL_STUDIO_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tl_studio", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def seed_catalog(source: Path, cache: Path) -> None:
    """The model catalogue is built once per cache folder (seconds, outside this measurement): copy it in."""
    cache.mkdir(parents=True)
    if (source / "model_catalog.json").is_file():
        shutil.copyfile(source / "model_catalog.json", cache / "model_catalog.json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl_bench_store_"))
    rows = []
    try:
        tl_studio(work / "catalog", "scan", str(args.data))  # builds the catalogue once
        tl_studio(work / "catalog", "advise", str(args.data), "--max-images", "10", "--json")
        for i in range(args.rounds):
            warm, cold = work / f"warm{i}", work / f"cold{i}"
            seed_catalog(work / "catalog", warm)
            seed_catalog(work / "catalog", cold)
            train = ("train", str(args.data), "--epochs", "5", "--json", "--out")
            first, first_lines = tl_studio(warm, *train, str(work / f"first{i}"))
            second, second_lines = tl_studio(warm, *train, str(work / f"second{i}"))
            advise_warm, _ = tl_studio(warm, "advise", str(args.data), "--json")
            advise_cold, _ = tl_studio(cold, "advise", str(args.data), "--json")
            accs = (first_lines[-1]["best_val_acc"], second_lines[-1]["best_val_acc"])
            # epoch 1's seconds include filling the feature cache: the part this cache removes
            fills = [next(line for line in lines if line["event"] == "epoch")["seconds"]
                     for lines in (first_lines, second_lines)]
            rows.append((first, second, advise_cold, advise_warm, accs))
            print(f"round {i + 1}: train first {first:.1f} s, second {second:.1f} s ({second / first:.2f}x), "
                  f"epoch 1 (feature fill) {fills[0]:.2f} s / {fills[1]:.2f} s, "
                  f"best val acc {accs[0]:.4f} / {accs[1]:.4f}; advise cold {advise_cold:.1f} s, "
                  f"after a run {advise_warm:.1f} s ({advise_warm / advise_cold:.2f}x)", flush=True)
        med = [statistics.median(r[k] for r in rows) for k in range(4)]
        print(f"MEDIAN train first {med[0]:.1f} s, second {med[1]:.1f} s; ratio (median of rounds) "
              f"{statistics.median(r[1] / r[0] for r in rows):.2f}x (target <= 0.3x); same best val acc in every "
              f"round: {all(a == b for *_, (a, b) in rows)}")
        print(f"MEDIAN advise cold {med[2]:.1f} s, after a run {med[3]:.1f} s; ratio (median of rounds) "
              f"{statistics.median(r[3] / r[2] for r in rows):.2f}x (target <= 0.3x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
