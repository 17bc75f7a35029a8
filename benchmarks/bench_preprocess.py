"""The loaders' evaluation preprocessing per image, on one core: the model file's module on the whole image
(pad, convert, crop, resize, normalise) against the loaders' crop-first path (core/preprocess.py), over the
same decoded ants/bees photos, with every result compared bit for bit.

Usage: .venv/bin/python benchmarks/bench_preprocess.py [--images 150] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from tl_studio.core.images import load_rgb
from tl_studio.core.preprocess import Preprocess, PreprocessSpec, preprocess_one, to_unit_tensor

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # what one loader worker has
    spec = PreprocessSpec()
    preprocess = Preprocess(spec)
    paths = sorted(HYMENOPTERA.glob("*/*/*.jpg"))[:args.images]
    images = [load_rgb(path, min_side=spec.resize_size) for path in paths]

    def whole(image):
        with torch.no_grad():
            return preprocess(to_unit_tensor(image).unsqueeze(0))[0]

    mismatches = sum(not torch.equal(whole(image), preprocess_one(preprocess, image)) for image in images)
    timings: dict[str, list[float]] = {"module on the whole image": [], "crop first (loaders)": []}
    for _ in range(args.repeats):  # alternating, so that a busy moment hits both
        for label, run in (("module on the whole image", whole),
                           ("crop first (loaders)", lambda image: preprocess_one(preprocess, image))):
            started = time.perf_counter()
            for image in images:
                run(image)
            timings[label].append((time.perf_counter() - started) / len(images) * 1e3)
    medians = {label: statistics.median(values) for label, values in timings.items()}
    for label, value in medians.items():
        print(f"{label}: {value:.2f} ms per image (median of {args.repeats})")
    ratio = medians["crop first (loaders)"] / medians["module on the whole image"]
    print(f"crop first / module: {ratio:.2f}x; results differing in any bit: {mismatches} of {len(images)}")


if __name__ == "__main__":
    main()
