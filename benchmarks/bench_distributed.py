"""Training in two processes through torchrun against one process, on the CPU (issue: run layer §3).

    python benchmarks/bench_distributed.py [--data ../shared/datasets/hymenoptera] [--repeat 1]

1. frozen efficientnet_lite0, 3 epochs: one process and `--nproc-per-node 2 --device cpu` at the same
   (global) batch size: best val accuracy of each, in images, and the whole command's wall time;
2. resnet18 `--weights none --freeze none --epochs 1` in two processes: finishes, one metrics row;
3. kill -9 of rank 1 in the middle of epoch 2 of a resnet18 run: seconds until the launcher has ended
   every process, then `--resume`: the run finishes with one metrics row per epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tl_studio.core.run_folder import RunFolder  # noqa: E402


def train(data: Path, out: Path, *flags: str, wait: bool = True):
    command = [sys.executable, "-m", "tl_studio", "train", str(data), "--out", str(out), *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    if not wait:
        return process
    started = time.perf_counter()
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"train failed ({process.returncode}): {err[-2000:]}")
    return time.perf_counter() - started


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def best_val_images(run: Path) -> tuple[int, int]:
    num_val = next(e["num_val"] for e in RunFolder(run).events() if e["event"] == "FitStart")
    best = max(float(r["val_acc"]) for r in metrics(run))
    return round(best * num_val), num_val


def rank_pid(rank: int) -> int | None:
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"--distributed-worker" in cmdline and f"RANK={rank}".encode() in environ \
                and b"torch.distributed.run" in parent_cmd:
            return pid
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "hymenoptera"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    data = Path(args.data)
    work = Path(tempfile.mkdtemp(prefix="tl_bench_ddp_"))
    frozen = ["--device", "cpu", "--freeze", "all", "--epochs", "3", "--batch-size", "32"]
    results = {"one": [], "two": []}
    for i in range(args.repeat):  # paired: one then two processes, each repeat
        results["one"].append(train(data, work / f"one{i}", *frozen))
        results["two"].append(train(data, work / f"two{i}", *frozen, "--nproc-per-node", "2"))
    one, two = best_val_images(work / "one0"), best_val_images(work / "two0")
    report = {"frozen_best_val_one_process": f"{one[0]}/{one[1]}", "frozen_best_val_two_processes": f"{two[0]}/{two[1]}",
              "frozen_wall_s_one": statistics.median(results["one"]), "frozen_wall_s_two": statistics.median(results["two"])}

    full = ["--device", "cpu", "--model", "resnet18", "--weights", "none", "--freeze", "none"]
    report["resnet18_1_epoch_two_processes_s"] = train(data, work / "full", *full, "--epochs", "1",
                                                       "--nproc-per-node", "2")
    report["resnet18_metrics_rows"] = len(metrics(work / "full"))

    run = work / "killed"
    launcher = train(data, run, *full, "--epochs", "3", "--batch-size", "16", "--nproc-per-node", "2", wait=False)
    while sum(1 for e in RunFolder(run).events() if e["event"] == "BatchEnd" and e["epoch"] == 2) < 3:
        if launcher.poll() is not None:
            raise SystemExit(launcher.communicate()[1][-2000:])
        time.sleep(0.1)
    os.kill(rank_pid(1), signal.SIGKILL)
    killed = time.perf_counter()
    launcher.communicate()
    report["kill_rank1_to_all_ended_s"] = round(time.perf_counter() - killed, 2)
    report["killed_exit_status"] = launcher.returncode
    report["killed_status"] = RunFolder(run).status().state
    report["left_over_rank_processes"] = [r for r in (0, 1) if rank_pid(r)]
    train(data, run, "--resume", "--nproc-per-node", "2")
    report["resumed_status"] = RunFolder(run).status().state
    report["resumed_metrics_epochs"] = [int(r["epoch"]) for r in metrics(run)]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
