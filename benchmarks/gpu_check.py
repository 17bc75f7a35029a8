"""The CUDA path, checked in one short run on a GPU machine (prints what it finds; exits 1 on a failure).

1. Device and mixed precision: the engine picks CUDA and bf16 (or fp16 with a grad scaler).
2. A real run on generated data with pinned memory and loader workers: epochs finish, GPU memory
   is reported (EpochEnd.peak_memory_mb), the model file is written and checked.
3. Out-of-memory recovery: a batch size far too large; the engine halves it until it fits, says so,
   and the run completes.
4. Throughput: training images per second of resnet50 fine-tuning at 224 px, batch 128, with the
   engine, against the same model in a plain loop with the same AMP setting (ratio).

Usage (on the device machine): python benchmarks/gpu_check.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_data(folder: Path, per_class: int) -> Path:
    from tests.helpers import make_image_folder

    return make_image_folder(folder, classes=("red", "green", "blue", "yellow"), per_class=per_class, size=256)


def run(config, run_dir: Path):
    from tl_studio.core.callbacks import Recorder
    from tl_studio.core.engine import Trainer

    recorder = Recorder()
    trainer = Trainer(config, run_dir, [recorder])
    finished = trainer.fit()
    if trainer.error is not None:
        raise trainer.error
    return finished, recorder


def check(condition: bool, message: str, failures: list) -> None:
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def plain_loop_images_per_s(data: Path, batch: int, steps: int, dtype) -> float:
    import torch
    import torchvision

    model = torchvision.models.resnet50(weights=None, num_classes=4).cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,), device="cuda")
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - started)


def main() -> int:
    import torch

    from tl_studio.core import events
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.device import resolve_device

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failures: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="tl_gpu_"))
    device = resolve_device("auto")
    check(device.is_cuda, f"auto picks CUDA: {device.description}", failures)
    check(device.amp_dtype in (torch.bfloat16, torch.float16), f"mixed precision dtype {device.amp_dtype}", failures)
    check(device.pin_memory, "pinned memory on", failures)
    data = make_data(work / "data", 64 if args.quick else 256)

    base = TrainConfig(data_dir=str(data), model="resnet50", weights="none", freeze="none", epochs=2,
                       batch_size=64, workers=4, augment="standard")
    finished, recorder = run(base, work / "run")
    epochs = recorder.of_type(events.EpochEnd)
    check(finished.status == "completed", f"fine-tuning run: {finished.status} {finished.message}", failures)
    check(all(e.peak_memory_mb and e.peak_memory_mb > 0 for e in epochs),
          f"GPU memory reported: {[round(e.peak_memory_mb or 0) for e in epochs]} MB", failures)
    check(bool(finished.model_file), f"model file written and checked: {finished.model_file}", failures)

    torch.cuda.empty_cache()
    huge = base.replace(model="resnet152", batch_size=32768, img_size=384, epochs=1)
    finished, recorder = run(huge, work / "oom")
    notices = [n.message for n in recorder.of_type(events.Notice)]
    check(finished.status == "completed" and any("out of memory" in n for n in notices),
          f"out-of-memory recovery: {finished.status}; notices: {notices[:3]}…", failures)

    torch.cuda.empty_cache()
    fast = base.replace(batch_size=128, epochs=2, workers=8)
    _, recorder = run(fast, work / "speed")
    ours = recorder.of_type(events.EpochEnd)[-1].train_images_per_s
    plain = plain_loop_images_per_s(data, 128, 20, device.amp_dtype)
    print(f"throughput resnet50 224 px batch 128: engine {ours:.0f} img/s (with data loading), "
          f"plain loop on GPU-resident tensors {plain:.0f} img/s, ratio {ours / plain:.2f}")
    print("FAILURES: " + "; ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
