"""No overhead over a plain PyTorch loop (issue: engine acceptance).

Full fine-tuning of resnet18 (weights=None), batch 16, 2 loader workers, standard augmentation, on
the ants/bees training images: the training images per second of

  A) the loop of the official PyTorch transfer-learning tutorial (written out below: ImageFolder,
     RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize, SGD momentum 0.9,
     zero_grad / forward / loss / backward / step, running loss and accuracy), and
  B) ``tl-studio train ... --model resnet18 --weights none --freeze none --batch-size 16 --workers 2
     --augment standard`` (its metrics.csv column train_images_per_s),

measured alternately in the same process run, one epoch each, several rounds; prints each round's
figures, the medians and B/A. Validation time is excluded from both.

Usage: .venv/bin/python benchmarks/bench_overhead.py [--rounds 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision import datasets, transforms

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"


def tutorial_epoch(data: Path) -> float:
    """One training epoch of the tutorial's loop; returns training images per second."""
    transform = transforms.Compose([
        transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    dataset = datasets.ImageFolder(str(data / "train"), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True, num_workers=2)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 2)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    model.train()
    running_loss, running_corrects, seen = 0.0, 0, 0
    started = time.perf_counter()
    for inputs, labels in loader:
        optimizer.zero_grad()
        with torch.set_grad_enabled(True):
            outputs = model(inputs)
            _, preds = torch.max(outputs, 1)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
        running_loss += loss.item() * inputs.size(0)
        running_corrects += torch.sum(preds == labels.data)
        seen += inputs.size(0)
    scheduler.step()
    return seen / (time.perf_counter() - started)


def tl_studio_epoch(data: Path, out: Path) -> float:
    command = [str(ROOT / ".venv" / "bin" / "tl-studio"), "train", str(data), "--out", str(out), "--model", "resnet18",
               "--weights", "none", "--freeze", "none", "--batch-size", "16", "--workers", "2", "--augment",
               "standard", "--epochs", "1", "--json"]
    subprocess.run(command, check=True, capture_output=True)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    return float(rows[0]["train_images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl_bench_overhead_"))
    tutorial, ours = [], []
    try:
        for i in range(args.rounds):
            tutorial.append(tutorial_epoch(args.data))
            ours.append(tl_studio_epoch(args.data, work / f"run{i}"))
            print(f"round {i + 1}: tutorial loop {tutorial[-1]:.2f} img/s, tl-studio {ours[-1]:.2f} img/s, "
                  f"ratio {ours[-1] / tutorial[-1]:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = statistics.median(tutorial), statistics.median(ours)
    print(f"MEDIAN tutorial loop {a:.2f} img/s, tl-studio {b:.2f} img/s, ratio {b / a:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
