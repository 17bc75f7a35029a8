"""A whole fine-tuning run against the PyTorch transfer-learning tutorial's whole run (issue 15).

Both sides are whole processes, timed from start to exit, as a user waits for them:

  A) the tutorial's script (written out below, run as ``python bench_whole_run.py --tutorial DATA``):
     imports, ImageFolder train/val, RandomResizedCrop(224) + flip / Resize(256) + CenterCrop(224),
     resnet18, SGD momentum 0.9, StepLR; per epoch a train phase and a val phase with running loss and
     accuracy, ``torch.save`` of the state dict whenever val accuracy improves, the best weights loaded
     at the end (the tutorial's ``train_model``);
  B) ``tl-studio train DATA --out RUN --model resnet18 --weights none --freeze none --epochs E
     --batch-size 16 --workers 2 --augment standard`` with everything it does besides: scan, checkpoints
     (``last.ckpt``/``best.ckpt``, model + optimizer state), metrics, events, the calibrated ``model.pt2``.

Both use batch 16 and 2 loader workers. Every tl-studio run gets an empty cache folder
(TL_STUDIO_CACHE_DIR) holding only the model catalogue (built once before the pairs, as a user's first
``tl-studio`` command does), so none reuses what an earlier one stored (features, exported programs). On a CPU
with bf16 matrix units tl-studio trains resnet18 in bf16 (core/device.py); ``--no-amp`` passes the flag
on, for float32 on both sides, the tutorial's arithmetic. The runs are paired (A B A B ...) so a drift of the machine's
speed hits both; the report gives each pair's wall ratio B/A, the median ratio, and the training
images/s of each side (the tutorial's train phase; tl-studio's metrics.csv column), median B/A.

Usage: .venv/bin/python benchmarks/bench_whole_run.py [--pairs 5] [--epochs 1] [--data DIR] [--no-amp]
"""

from __future__ import annotations

import argparse
import csv
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


def tutorial_run(data: Path, epochs: int) -> None:
    """The tutorial's whole run; prints its training images/s as its last line."""
    import os
    import torch
    import torchvision
    from torch import nn
    from torchvision import datasets, transforms

    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    data_transforms = {
        "train": transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                     transforms.ToTensor(), normalize]),
        "val": transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                   normalize]),
    }
    image_datasets = {x: datasets.ImageFolder(str(data / x), data_transforms[x]) for x in ("train", "val")}
    loaders = {x: torch.utils.data.DataLoader(image_datasets[x], batch_size=16, shuffle=x == "train", num_workers=2)
               for x in ("train", "val")}
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, len(image_datasets["train"].classes))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    train_rates = []
    with tempfile.TemporaryDirectory() as tempdir:
        best_path = os.path.join(tempdir, "best_model_params.pt")
        torch.save(model.state_dict(), best_path)
        best_acc = 0.0
        for _ in range(epochs):
            for phase in ("train", "val"):
                model.train() if phase == "train" else model.eval()
                running_loss, running_corrects, seen = 0.0, 0, 0
                started = time.perf_counter()
                for inputs, labels in loaders[phase]:
                    optimizer.zero_grad()
                    with torch.set_grad_enabled(phase == "train"):
                        outputs = model(inputs)
                        _, preds = torch.max(outputs, 1)
                        loss = criterion(outputs, labels)
                        if phase == "train":
                            loss.backward()
                            optimizer.step()
                    running_loss += loss.item() * inputs.size(0)
                    running_corrects += torch.sum(preds == labels.data)
                    seen += inputs.size(0)
                if phase == "train":
                    scheduler.step()
                    train_rates.append(seen / (time.perf_counter() - started))
                epoch_acc = running_corrects.double() / seen
                if phase == "val" and epoch_acc > best_acc:
                    best_acc = epoch_acc
                    torch.save(model.state_dict(), best_path)
        model.load_state_dict(torch.load(best_path, weights_only=True))
    print(f"train_images_per_s {statistics.median(train_rates):.3f}")


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-amp", action="store_true", help="tl-studio in float32, as the tutorial")
    parser.add_argument("--tutorial", type=Path, help=argparse.SUPPRESS)  # one tutorial run (the A side)
    args = parser.parse_args()
    if args.tutorial:
        tutorial_run(args.tutorial, args.epochs)
        return
    work = Path(tempfile.mkdtemp(prefix="tl_bench_whole_run_"))
    walls, rates = {"tutorial": [], "tl-studio": []}, {"tutorial": [], "tl-studio": []}
    tl_studio = str(ROOT / ".venv" / "bin" / "tl-studio")
    try:
        timed([tl_studio, "models"], env={**os.environ, "TL_STUDIO_CACHE_DIR": str(work / "catalog")})
        for i in range(args.pairs):
            wall, out = timed([sys.executable, __file__, "--tutorial", str(args.data), "--epochs", str(args.epochs)])
            walls["tutorial"].append(wall)
            rates["tutorial"].append(float(out.split()[-1]))
            run, cache = work / f"run{i}", work / f"cache{i}"
            cache.mkdir()
            shutil.copyfile(work / "catalog" / "model_catalog.json", cache / "model_catalog.json")
            wall, _ = timed([tl_studio, "train", str(args.data), "--out", str(run),
                             "--model", "resnet18", "--weights", "none", "--freeze", "none", "--epochs",
                             str(args.epochs), "--batch-size", "16", "--workers", "2", "--augment", "standard",
                             "--json", *(["--no-amp"] if args.no_amp else [])],
                            env={**os.environ, "TL_STUDIO_CACHE_DIR": str(cache)})
            walls["tl-studio"].append(wall)
            rows = list(csv.DictReader(open(run / "metrics.csv")))
            rates["tl-studio"].append(statistics.median(float(r["train_images_per_s"]) for r in rows))
            shutil.rmtree(run, ignore_errors=True)
            print(f"pair {i + 1}: tutorial {walls['tutorial'][-1]:.1f} s ({rates['tutorial'][-1]:.1f} img/s), "
                  f"tl-studio {walls['tl-studio'][-1]:.1f} s ({rates['tl-studio'][-1]:.1f} img/s), wall ratio "
                  f"{walls['tl-studio'][-1] / walls['tutorial'][-1]:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall_ratios = [b / a for a, b in zip(walls["tutorial"], walls["tl-studio"])]
    rate_ratios = [b / a for a, b in zip(rates["tutorial"], rates["tl-studio"])]
    print(f"MEDIAN whole run: tutorial {statistics.median(walls['tutorial']):.1f} s, tl-studio "
          f"{statistics.median(walls['tl-studio']):.1f} s, wall ratio {statistics.median(wall_ratios):.3f} "
          f"(range {min(wall_ratios):.3f}-{max(wall_ratios):.3f}; target <= 1.10); train images/s ratio "
          f"{statistics.median(rate_ratios):.3f} (target >= 1.0)")


if __name__ == "__main__":
    main()
