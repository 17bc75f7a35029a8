"""Real transfer learning offline on the ants/bees set (issue: engine acceptance).

Runs, as whole processes like a user would:
  tl-studio train HYMENOPTERA --model efficientnet_lite0 --freeze all --epochs 5 --json
several times and prints, per run, the wall time of the whole command, the best val accuracy, and the
feature-cache speed-up (epoch 1 seconds / each later epoch's seconds). Then one run without the
feature cache (same settings, augmentation off so the computation is identical, and one with the
default augmentation) to compare accuracy.

Usage: .venv/bin/python benchmarks/bench_train_hymenoptera.py [--repeats 3] [--data DIR]
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


def train(data: Path, out: Path, *extra: str) -> tuple[float, list[dict], dict]:
    command = [str(ROOT / ".venv" / "bin" / "tl-studio"), "train", str(data), "--out", str(out),
               "--model", "efficientnet_lite0", "--freeze", "all", "--epochs", "5", "--json", *extra]
    # an empty feature cache on disk for every run: each one is a first run (bench_feature_store.py
    # measures the second)
    env = {**os.environ, "TL_STUDIO_CACHE_DIR": str(out.parent / f"{out.name}.cache")}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return seconds, [l for l in lines if l["event"] == "epoch"], lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl_bench_train_"))
    walls, accs, speedups = [], [], []
    try:
        for i in range(args.repeats):
            wall, epochs, done = train(args.data, work / f"cached{i}")
            ratios = [epochs[0]["seconds"] / e["seconds"] for e in epochs[1:]]
            walls.append(wall)
            accs.append(done["best_val_acc"])
            speedups.append(min(ratios))
            print(f"run {i + 1}: whole command {wall:.1f} s, best val acc {done['best_val_acc']:.4f} "
                  f"(epoch {done['best_epoch']}), epoch seconds {[round(e['seconds'], 2) for e in epochs]}, "
                  f"epoch-1 / later-epoch ratios {[round(r, 1) for r in ratios]}", flush=True)
        print(f"MEDIAN whole command {statistics.median(walls):.1f} s; best val acc median "
              f"{statistics.median(accs):.4f} (min {min(accs):.4f}); smallest cache speed-up median "
              f"{statistics.median(speedups):.1f}x")
        for label, extra in (("no cache, no augmentation", ("--no-feature-cache", "--augment", "none")),
                             ("no cache, standard augmentation", ("--no-feature-cache",))):
            wall, epochs, done = train(args.data, work / label.replace(" ", "_").replace(",", ""), *extra)
            print(f"{label}: whole command {wall:.1f} s, best val acc {done['best_val_acc']:.4f}, "
                  f"epoch seconds {[round(e['seconds'], 1) for e in epochs]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
