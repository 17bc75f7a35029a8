"""channels_last against the default (contiguous) memory format on this machine's CPU (issue 15).

For efficientnet_lite0 and resnet18 (random weights: the same arithmetic as pretrained ones), batch 32 at
224 px: the eval forward pass (what feature extraction does) and one training step (forward, backward,
SGD step). The two formats alternate within each repetition, so that load from other processes hits
both alike; the medians of --repeats repetitions and their ratio (contiguous time / channels_last time,
above 1 = channels_last is faster) are printed. ``device.use_channels_last`` encodes the outcome.

Usage: /work/main/.venv/bin/python benchmarks/bench_channels_last.py [--repeats 5] [--models efficientnet_lite0 resnet18]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from tl_studio.core.models import build_model

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def time_eval(model: nn.Module, images: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        started = time.perf_counter()
        model(images)
    return time.perf_counter() - started


def time_train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def measure(name: str, repeats: int, batch: int) -> dict[tuple[str, str], list[float]]:
    torch.manual_seed(0)
    models = {fmt: build_model(name, 3, weights="none").to(memory_format=memory) for fmt, memory in FORMATS.items()}
    models["channels_last"].load_state_dict(models["contiguous"].state_dict())
    images = torch.rand(batch, 3, 224, 224)
    labels = torch.randint(0, 3, (batch,))
    inputs = {fmt: images.contiguous(memory_format=memory) for fmt, memory in FORMATS.items()}
    times: dict[tuple[str, str], list[float]] = {}
    for fmt in FORMATS:  # warm-up: first calls pick kernels and allocate
        time_eval(models[fmt], inputs[fmt])
        time_train_step(models[fmt], inputs[fmt], labels)
    for _ in range(repeats):
        for fmt in FORMATS:
            times.setdefault(("eval", fmt), []).append(time_eval(models[fmt], inputs[fmt]))
            times.setdefault(("train step", fmt), []).append(time_train_step(models[fmt], inputs[fmt], labels))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"medians of {args.repeats}")
    for name in args.models:
        times = measure(name, args.repeats, args.batch)
        for mode in ("eval", "train step"):
            contiguous = statistics.median(times[(mode, "contiguous")])
            last = statistics.median(times[(mode, "channels_last")])
            print(f"{name:20s} {mode:10s} contiguous {contiguous:6.3f} s  channels_last {last:6.3f} s  "
                  f"ratio {contiguous / last:4.2f}x", flush=True)


if __name__ == "__main__":
    main()
