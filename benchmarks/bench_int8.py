"""Which convolutions an int8 file keeps float (issue: calibrated, "unknown"-aware and int8 files).

For each run folder given (or, without --run, two runs trained here on the ants/bees set: the default frozen
efficientnet_lite0, and a resnet18 trained from scratch because no pretrained resnet18 can be downloaded on
an offline machine), the run's fp32 ONNX file is quantised with ONNX Runtime's static QDQ quantiser (per-channel
int8 weights, uint8 activations, 64 class-balanced calibration images from the training split, MinMax), each
time leaving a different set of convolutions float:

- none: every convolution int8;
- depthwise: depthwise convolutions float;
- depthwise + stem: also the first convolution (what `tl-studio export --format onnx-int8` does);

and each file is compared with the fp32 file on every validation image: top-1 agreement, accuracy, size.
The export's gate asks for >= 99 % agreement and <= 1 point lower accuracy.

Usage: .venv/bin/python benchmarks/bench_int8.py [--run RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HYMENOPTERA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
TRAINED_HERE = {
    "efficientnet_lite0 (pretrained, frozen, 5 epochs)": ["--model", "efficientnet_lite0", "--epochs", "5"],
    "resnet18 (from scratch, 12 epochs at 128 px)": ["--model", "resnet18", "--weights", "none", "--freeze", "none",
                                                     "--epochs", "12", "--img-size", "128", "--lr", "2e-3"],
}


def train(name: str, flags: list[str], work: Path) -> Path:
    out = work / name.split()[0]
    print(f"training {name} ...", flush=True)
    subprocess.run([sys.executable, "-m", "tl_studio", "train", str(HYMENOPTERA), "--out", str(out), *flags],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def measure(run_dir: Path, work: Path) -> None:
    import onnx

    from tl_studio.core import quantize
    from tl_studio.core.evaluation import evaluation_set
    from tl_studio.core.runs import export_run, open_run, scan_of

    run = open_run(run_dir)
    scan = scan_of(run)
    val = evaluation_set(scan, "val", run.classes)
    train_records = [r for r in scan.split("train") if scan.classes[r.label] in run.classes]
    fp32 = work / f"{run_dir.name}.fp32.onnx"
    export_run(run.folder, "onnx", fp32, overwrite=True)
    side = run.spec.resize_size  # decoded as the export's check decodes them
    images = list(quantize.labelled_arrays([quantize._Record(p, label) for p, label in zip(val.paths, val.labels)],
                                           side))
    fp32_answers = [int(np.argmax(quantize.onnx_predictor(fp32)(x))) for x, _ in images]
    calibration = [x for x, _ in quantize.labelled_arrays(
        quantize.pick_calibration_records(train_records, seed=run.config.seed), side)]
    graph = onnx.load(str(fp32), load_external_data=False).graph
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    depthwise = [n.name for n in convolutions if next((a.i for a in n.attribute if a.name == "group"), 1) > 1]
    choices = {"none": [], "depthwise": depthwise, "depthwise + stem": quantize.float_convolutions(fp32)}
    assert set(choices["depthwise + stem"]) == set(depthwise) | {convolutions[0].name}

    print(f"\n{run_dir} ({run.config.model}), {len(images)} validation images, fp32 {fp32.stat().st_size / 2**20:.1f} MB")
    print(f"{'float convolutions':<20} {'agreement':>9} {'accuracy':>15} {'size':>8} {'gate':>6}")
    for label, kept_float in choices.items():
        out = work / f"{run_dir.name}.{label.replace(' ', '')}.onnx"
        started = time.perf_counter()
        quantize.quantize_onnx(fp32, out, iter(calibration), keep_float=kept_float)
        predict = quantize.onnx_predictor(out)
        answers = [int(np.argmax(predict(x))) for x, _ in images]
        agreement = np.mean([a == b for a, b in zip(answers, fp32_answers)])
        accuracy = np.mean([a == label_ for a, (_, label_) in zip(answers, images)])
        fp32_accuracy = np.mean([a == label_ for a, (_, label_) in zip(fp32_answers, images)])
        passed = agreement >= quantize.MIN_AGREEMENT and fp32_accuracy - accuracy <= quantize.MAX_ACCURACY_DROP + 1e-9
        print(f"{label:<20} {agreement:>8.1%} {fp32_accuracy:>6.3f} -> {accuracy:.3f} "
              f"{out.stat().st_size / 2**20:>6.1f}MB {'pass' if passed else 'FAIL':>6}"
              f"   ({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs="+", type=Path, help="finished run folders (default: train two here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_int8_") as work:
        runs = args.run or [train(name, flags, Path(work)) for name, flags in TRAINED_HERE.items()]
        for run_dir in runs:
            measure(run_dir, Path(work))


if __name__ == "__main__":
    main()
