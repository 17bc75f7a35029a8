"""How long `tl-studio scan` takes on a folder of 20,000 small JPEGs in 10 classes, as a whole process
(Python start-up included), with the files already in the operating system's cache.

    .venv/bin/python benchmarks/bench_scan.py [--images N] [--runs 5] [--profile]

The images are generated once and cached (TL_STUDIO_BENCH_DIR, default: the temp folder). The target
on a 2-core machine is a median of at most 3 s. ``--profile`` also prints where an in-process scan
spends its time.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = 10
TARGET_SECONDS = 3.0


def dataset_folder(images: int) -> Path:
    base = Path(os.environ.get("TL_STUDIO_BENCH_DIR", tempfile.gettempdir()))
    return base / f"tl_studio_bench_scan_{images}"


def generate(folder: Path, images: int) -> None:
    """Small distinct JPEGs (48 px, a random colour and rectangle). A marker file, which the scan
    ignores as hidden, says the folder is complete."""
    from PIL import Image, ImageDraw

    if (folder / ".complete").exists():
        return
    print(f"generating {images} JPEGs in {folder} (once)...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(0)
    for index in range(images):
        class_folder = folder / f"class_{index % CLASSES:02d}"
        class_folder.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (48, 48), tuple(rng.randrange(256) for _ in range(3)))
        x, y = rng.randrange(40), rng.randrange(40)
        ImageDraw.Draw(image).rectangle((x, y, x + 8, y + 8), fill=tuple(rng.randrange(256) for _ in range(3)))
        image.save(class_folder / f"img_{index:06d}.jpg", quality=85)
    (folder / ".complete").touch()


def tl_studio_command() -> str:
    beside_python = Path(sys.executable).parent / "tl-studio"
    found = str(beside_python) if beside_python.exists() else shutil.which("tl-studio")
    if not found:
        sys.exit("tl-studio is not installed next to this Python; run this with the project's .venv/bin/python")
    return found


def time_scan(command: str, folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run([command, "scan", str(folder)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def profile_scan(folder: Path) -> None:
    import cProfile
    import pstats

    from tl_studio.core.data import scan_dataset

    profiler = cProfile.Profile()
    profiler.runcall(scan_dataset, folder)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    folder = dataset_folder(args.images)
    generate(folder, args.images)
    command = tl_studio_command()
    time_scan(command, folder)  # warm-up: the files and Python's own modules into the OS cache
    runs = [time_scan(command, folder) for _ in range(args.runs)]
    median = statistics.median(runs)
    print(f"tl-studio scan of {args.images} JPEGs in {CLASSES} classes ({os.cpu_count()} CPUs), whole process:")
    print("  runs:   " + ", ".join(f"{run:.3f} s" for run in runs))
    verdict = "met" if median <= TARGET_SECONDS else "MISSED"
    print(f"  median: {median:.3f} s  (target <= {TARGET_SECONDS:.1f} s: {verdict})")
    if args.profile:
        profile_scan(folder)


if __name__ == "__main__":
    main()
