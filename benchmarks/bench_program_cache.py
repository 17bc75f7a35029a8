"""The model-file export with and without a stored program (core/program_cache.py), in whole processes.

For each model (random weights, 2 classes, the catalog's preprocessing), with an empty cache folder: one
process exports it (traced, and its program stored), then --repeats processes each export a model of the
same structure with other weights (from the stored program). Prints the export's own seconds (trace or
copy, save, read back through the checked loader, agreement check: ExportReport.seconds) and the medians.
--tree runs the same with the code of another checkout (PYTHONPATH), for a comparison in the same session;
run both alternately on a shared machine.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bench_program_cache.py [--repeats 3]
       [--models efficientnet_lite0 resnet18] [--tree /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EXPORT_ONCE = """
import json, sys, torch
from tl_studio.core.catalog import get_model_info
from tl_studio.core.export import export_model
from tl_studio.core.models import build_model
from tl_studio.core.preprocess import PreprocessSpec

name, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(seed)
network = build_model(name, 2, weights=None).eval()
spec = PreprocessSpec.for_model(get_model_info(name), None)
report = export_model(network, spec, {"classes": ["a", "b"]}, out, "pt2", [])
print(json.dumps({"seconds": report.seconds, "passed": report.check.passed}))
"""


def export_once(tree: Path, cache: Path, model: str, seed: int, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "TL_STUDIO_CACHE_DIR": str(cache)}
    # run in the tree: `python -c` puts the working folder ahead of PYTHONPATH
    result = subprocess.run([sys.executable, "-c", EXPORT_ONCE, model, str(seed), str(out)],
                            capture_output=True, text=True, env=env, cwd=tree)
    if result.returncode != 0:
        sys.exit(f"export of {model} failed:\n{result.stderr[-3000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    if not answer["passed"]:
        sys.exit(f"the export check of {model} failed")
    return answer["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    args = parser.parse_args()
    tree = args.tree.resolve()
    print(f"code of {tree}")
    with tempfile.TemporaryDirectory(prefix="tl_bench_programs_") as work:
        work = Path(work)
        for model in args.models:
            cache = work / model / "cache"
            cache.mkdir(parents=True)
            traced = export_once(tree, cache, model, 0, work / model / "traced.pt2")
            stored = [export_once(tree, cache, model, seed, work / model / f"stored{seed}.pt2")
                      for seed in range(1, args.repeats + 1)]
            print(f"{model}: traced {traced:.2f} s; from the stored program {', '.join(f'{s:.2f}' for s in stored)} s, "
                  f"MEDIAN {statistics.median(stored):.2f} s", flush=True)


if __name__ == "__main__":
    main()
