"""Two-phase fine-tuning against the frozen-only run on the ants/bees set (issue 6).

Runs, as whole processes like a user would, with the same total epochs:
  tl-studio train HYMENOPTERA --freeze all --epochs 4 --json                    (frozen only)
  tl-studio train HYMENOPTERA --schedule fine-tune --freeze-epochs 1 --freeze F --epochs 4 --json
and prints each run's best val accuracy (and epoch), its per-epoch val accuracies and its wall time.
``--freeze`` picks how deep the fine-tune phase unfreezes (default "none": every stage trains, earlier
stages at smaller rates); several can be given to compare depths. Extra train flags follow ``--``.
``--source DIR`` runs the tl_studio package found in DIR instead of this checkout's (to measure an
engine change prototyped in a copy).

Usage: .venv/bin/python benchmarks/bench_fine_tune.py [--freeze none 2] [--data DIR] [--source DIR] [-- --lr 1e-3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"


def train(data: Path, out: Path, *flags: str, source: Path = ROOT) -> dict:
    command = [sys.executable, "-m", "tl_studio", "train", str(data), "--out", str(out),
               "--model", "efficientnet_lite0", "--json", *flags]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=source)  # `-m` imports from cwd
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"training failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-3000:]}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    epochs = [line for line in lines if line["event"] == "epoch"]
    return {"seconds": seconds, "done": lines[-1], "val_accs": [round(e["val_acc"], 4) for e in epochs],
            "val_losses": [round(e["val_loss"], 3) for e in epochs],
            "epoch_seconds": [round(e["seconds"], 1) for e in epochs]}


def describe(label: str, run: dict) -> str:
    done = run["done"]
    return (f"{label}: best val acc {done['best_val_acc']:.4f} (epoch {done['best_epoch']}), "
            f"val acc per epoch {run['val_accs']}, val loss per epoch {run['val_losses']}, "
            f"epoch seconds {run['epoch_seconds']}, "
            f"whole command {run['seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--freeze-epochs", type=int, default=1)
    parser.add_argument("--freeze", nargs="+", default=["none"], help="fine-tune phase depth(s) to compare")
    parser.add_argument("--skip-frozen", action="store_true", help="only the fine-tune run(s)")
    parser.add_argument("--source", type=Path, default=ROOT, help="folder holding the tl_studio package to run")
    parser.add_argument("extra", nargs="*", help="more train flags for both runs, after --")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl_bench_fine_tune_"))
    common = ["--epochs", str(args.epochs), *args.extra]
    print(f"tl_studio from {args.source.resolve()}", flush=True)
    try:
        if not args.skip_frozen:
            frozen = train(args.data, work / "frozen", "--freeze", "all", *common, source=args.source)
            print(describe(f"frozen only ({args.epochs} epochs)", frozen), flush=True)
        for depth in args.freeze:
            tuned = train(args.data, work / f"fine_tune_{depth}", "--schedule", "fine-tune", "--freeze", depth,
                          "--freeze-epochs", str(args.freeze_epochs), *common, source=args.source)
            print(describe(f"fine-tune (freeze {depth} after {args.freeze_epochs} head epoch(s))", tuned),
                  flush=True)
            if not args.skip_frozen:
                gap = tuned["done"]["best_val_acc"] - frozen["done"]["best_val_acc"]
                print(f"  fine-tune minus frozen-only best val acc: {gap:+.4f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
