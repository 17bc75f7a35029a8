"""Memory layout and precision on this machine's CPU (issue 15): channels_last against the default
(contiguous) layout, and bfloat16 autocast against float32 where the CPU does bf16 arithmetic in hardware
(AMX matrix units or AVX512-BF16 instructions: device.cpu_bf16_support).

For each model (random weights: the same arithmetic as pretrained ones), batch 32 at 224 px: the eval
forward pass (what feature extraction and validation do) and one training step (forward, backward,
SGD step), in every combination of layout and precision. The combinations alternate within each
repetition, so that load from other processes hits all alike; the medians of --repeats repetitions
are printed with their speed against float32 contiguous (above 1 = faster). ``device.use_channels_last``
and ``device.autocast_dtype`` encode the outcome.

Usage: /work/main/.venv/bin/python benchmarks/bench_channels_last.py [--repeats 5] [--models efficientnet_lite0 resnet18]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from tl_studio.core.device import cpu_bf16_support
from tl_studio.core.models import build_model

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def precisions() -> dict[str, torch.dtype | None]:
    return {"fp32": None, **({"bf16": torch.bfloat16} if cpu_bf16_support() else {})}


def time_eval(model: nn.Module, images: torch.Tensor, dtype) -> float:
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        started = time.perf_counter()
        model(images)
    return time.perf_counter() - started


def time_train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, dtype) -> float:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss = nn.functional.cross_entropy(model(images).float(), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def measure(name: str, repeats: int, batch: int) -> dict[tuple[str, str], list[float]]:
    torch.manual_seed(0)
    variants = [(fmt, precision) for fmt in FORMATS for precision in precisions()]
    models = {fmt: build_model(name, 3, weights="none").to(memory_format=memory) for fmt, memory in FORMATS.items()}
    models["channels_last"].load_state_dict(models["contiguous"].state_dict())
    images = torch.rand(batch, 3, 224, 224)
    labels = torch.randint(0, 3, (batch,))
    inputs = {fmt: images.contiguous(memory_format=memory) for fmt, memory in FORMATS.items()}
    dtypes = precisions()
    times: dict[tuple[str, str], list[float]] = {}
    for fmt, precision in variants:  # warm-up: first calls pick kernels and allocate
        time_eval(models[fmt], inputs[fmt], dtypes[precision])
        time_train_step(models[fmt], inputs[fmt], labels, dtypes[precision])
    for _ in range(repeats):
        for fmt, precision in variants:
            variant = f"{precision} {fmt}"
            times.setdefault(("eval", variant), []).append(time_eval(models[fmt], inputs[fmt], dtypes[precision]))
            times.setdefault(("train step", variant), []).append(
                time_train_step(models[fmt], inputs[fmt], labels, dtypes[precision]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"medians of {args.repeats}, precisions: {', '.join(precisions())} (bf16 arithmetic: {cpu_bf16_support()})")
    for name in args.models:
        times = measure(name, args.repeats, args.batch)
        for mode in ("eval", "train step"):
            base = statistics.median(times[(mode, "fp32 contiguous")])
            cells = [f"{variant} {statistics.median(spent):6.3f} s ({base / statistics.median(spent):4.2f}x)"
                     for (kind, variant), spent in times.items() if kind == mode]
            print(f"{name:20s} {mode:10s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
