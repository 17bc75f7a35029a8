"""Phone-size photos train about as fast as small ones (issue 15: decode JPEGs reduced with DCT scaling).

Generates once, into a cache folder, 300 phone-size JPEGs (4032 x 3024, real JPEG encoding at quality
90, EXIF orientation tags on a third of them; gradients plus noise, so encoding is quick and files are
a few MB) in 3 classes. Then, in the same run, as whole `tl-studio train` processes (defaults: frozen
efficientnet_lite0, feature cache, 2 loader workers):

- the first epoch's images/s (train + val images / epoch-1 seconds) on the phone photos against the
  same on the ants/bees set (target: at least 0.7x);
- the same on the phone photos with full-size decoding (the decode size hint switched off in the
  training process), and the best val accuracy of both (target: unchanged);
- `tl-studio scan` time on the phone folder with this checkout and with a baseline commit (default:
  the commit before the reduced decoding; target: unchanged).

Usage: /work/main/.venv/bin/python benchmarks/bench_phone_photos.py [--repeats 3] [--epochs 3]
       [--cache ~/.cache/tl-studio-bench/phone-photos] [--baseline-rev ea7a55b] [--skip-full-decode]
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
HYMENOPTERA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
CLASSES = ("amber", "moss", "sky")
PER_CLASS = 100
SIZE = (4032, 3024)
ORIENTATIONS = (None, 6, 8)  # landscape as stored, and the two portrait turns

# The training process with the decode size hint switched off: every JPEG is decoded at full size, as
# before DCT scaling. The dataset reads the hint from the transform when it is built, in this process,
# so loader workers (whatever their start method) get the switched-off value with the dataset.
FULL_DECODE = """
import sys
import tl_studio.core.transforms as transforms
original = transforms.EvalTransform.__init__
def full_size(self, spec):
    original(self, spec)
    self.decode_side = None
transforms.EvalTransform.__init__ = full_size
from tl_studio.entry import main
sys.exit(main(sys.argv[1:]))
"""


def make_phone_photos(folder: Path) -> Path:
    """300 JPEGs in 3 classes, made once (a marker file says the set is complete)."""
    import numpy as np
    from PIL import Image

    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(0)
    width, height = SIZE
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(PER_CLASS):
            tilt = rng.uniform(0.3, 1.0)
            base = np.empty((height, width, 3), dtype=np.float32)
            for channel in range(3):
                strength = 200.0 if channel == label else 70.0
                base[..., channel] = strength * (tilt * x + (1 - tilt) * y) + rng.uniform(10, 50)
            noise = rng.normal(0.0, 9.0, size=(height // 4, width // 4, 3)).astype(np.float32)
            base += np.repeat(np.repeat(noise, 4, axis=0), 4, axis=1)  # grain at 4 px: real-looking sizes
            pixels = np.clip(base, 0, 255).astype(np.uint8)
            exif = Image.Exif()
            orientation = ORIENTATIONS[index % len(ORIENTATIONS)]
            if orientation:
                exif[0x0112] = orientation
            Image.fromarray(pixels).save(folder / name / f"IMG_{index:04d}.jpg", quality=90, exif=exif)
        print(f"generated {name}: {PER_CLASS} photos", flush=True)
    done.write_text("ok\n")
    return folder


def tl_studio_command(*args: str, full_decode: bool = False) -> list[str]:
    if full_decode:
        return [sys.executable, "-c", FULL_DECODE, *args]
    return [sys.executable, "-m", "tl_studio", *args]


def train(data: Path, out: Path, epochs: int, full_decode: bool = False) -> dict:
    command = tl_studio_command("train", str(data), "--out", str(out), "--epochs", str(epochs), "--json",
                                full_decode=full_decode)
    # an empty feature cache on disk for every run: the first epoch decodes and extracts every image
    env = {**_env(ROOT), "TL_STUDIO_CACHE_DIR": str(out.parent / f"{out.name}.cache")}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    epochs_done = [line for line in lines if line.get("event") == "epoch"]
    images = _image_count(data)
    return {"wall": wall, "epoch1_seconds": epochs_done[0]["seconds"],
            "images_per_s": images / epochs_done[0]["seconds"], "best_val_acc": lines[-1]["best_val_acc"]}


def _image_count(data: Path) -> int:
    result = subprocess.run(tl_studio_command("scan", str(data), "--json"), capture_output=True, text=True,
                            env=_env(ROOT), check=True)
    return json.loads(result.stdout)["num_images"]


def _env(code_root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(code_root)}


def scan_seconds(data: Path, code_root: Path) -> float:
    started = time.perf_counter()
    # run in the code's folder: `python -m` puts the working folder ahead of PYTHONPATH, and from elsewhere
    # (this checkout) the baseline's scan ran this checkout's code
    subprocess.run([sys.executable, "-m", "tl_studio", "scan", str(data), "--json"], capture_output=True,
                   env=_env(code_root), check=True, cwd=code_root)
    return time.perf_counter() - started


def baseline_checkout(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "tl_studio"], capture_output=True,
                             check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tl-studio-bench" / "phone-photos")
    parser.add_argument("--baseline-rev", default="ea7a55b")
    parser.add_argument("--ants-bees", type=Path, default=HYMENOPTERA)
    parser.add_argument("--skip-full-decode", action="store_true",
                        help="leave out the full-decode runs (the accuracy comparison), the slowest part")
    args = parser.parse_args()
    started = time.perf_counter()
    phone = make_phone_photos(args.cache)
    print(f"phone photos ready in {time.perf_counter() - started:.0f} s: "
          f"{sum(f.stat().st_size for f in phone.rglob('*.jpg')) / 300 / 2**20:.1f} MB a file", flush=True)
    work = Path(tempfile.mkdtemp(prefix="tl_bench_phone_"))
    results: dict[str, list[dict]] = {"ants/bees": [], "phone, reduced decode": [], "phone, full decode": []}
    if args.skip_full_decode:
        del results["phone, full decode"]
    try:
        baseline = baseline_checkout(args.baseline_rev, work / "baseline")
        scans = {"this checkout": [], f"baseline {args.baseline_rev}": []}
        for repeat in range(args.repeats):  # interleaved, so that load on the machine hits all alike
            for label, data, full in (("ants/bees", args.ants_bees, False), ("phone, reduced decode", phone, False),
                                      ("phone, full decode", phone, True)):
                if label not in results:
                    continue
                run = train(data, work / f"run_{len(results[label])}_{label.replace(' ', '_').replace('/', '_')}",
                            args.epochs, full_decode=full)
                results[label].append(run)
                print(f"repeat {repeat + 1} {label}: epoch 1 {run['epoch1_seconds']:.1f} s = "
                      f"{run['images_per_s']:.1f} images/s, best val acc {run['best_val_acc']:.4f}, "
                      f"whole command {run['wall']:.1f} s", flush=True)
            scans["this checkout"].append(scan_seconds(phone, ROOT))
            scans[f"baseline {args.baseline_rev}"].append(scan_seconds(phone, baseline))
        print("\nMEDIANS")
        median = {label: statistics.median(r["images_per_s"] for r in runs) for label, runs in results.items()}
        for label, runs in results.items():
            print(f"  {label}: epoch 1 {median[label]:.1f} images/s, best val acc "
                  f"{statistics.median(r['best_val_acc'] for r in runs):.4f}, whole command "
                  f"{statistics.median(r['wall'] for r in runs):.1f} s")
        print(f"  phone (reduced) / ants-bees first-epoch images/s: {median['phone, reduced decode'] / median['ants/bees']:.2f}x"
              " (target >= 0.7x)")
        if "phone, full decode" in median:
            print(f"  phone (full decode) / ants-bees: {median['phone, full decode'] / median['ants/bees']:.2f}x; "
                  f"reduced / full decode: {median['phone, reduced decode'] / median['phone, full decode']:.2f}x")
        for label, seconds in scans.items():
            print(f"  scan of the phone folder, {label}: {statistics.median(seconds):.2f} s (median of {len(seconds)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
