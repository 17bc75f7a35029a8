"""The CUDA path, checked in one short run on a GPU machine (issue 15's GPU point). Prints one line per
check ("ok" or "FAIL") and a throughput table; exits 1 when a check failed.

1. Device: ``auto`` picks CUDA, mixed precision (bf16, or fp16 with a grad scaler), pinned memory.
2. A real run: resnet50 fine-tuning on generated photo-like JPEGs with loader workers: the epochs
   finish, GPU memory is reported (EpochEnd.peak_memory_mb), the model file is written and checked.
3. Out-of-memory recovery: a batch far too large; the engine halves it until it fits, says so, and the
   run completes.
4. Full fine-tuning throughput, resnet50 and efficientnet_b0 (224 px, batch 128, AMP + channels_last):
   the engine's training images/s in each of two epochs, as it runs by default and with ``--decode gpu``
   (core/gpu_decoding.py: its loaders only read the files, the step decodes them with nvJPEG), against
   a plain AMP loop written out below on the same JPEG folder (torchvision ImageFolder, the same
   augmentation, workers and pinned memory): the target is at least 0.95x. Beside them the plain loop
   with the JPEGs decoded, cropped and flipped on the device (nvJPEG through torchvision.io), and with
   ``--bounds`` what bounds the loops: the same loop on random tensors already on the GPU (the GPU's
   ceiling, with cuDNN's autotuner off as the engine has it, and on) and the loader alone (decoding and
   augmenting on the CPU, no model; its second epoch). On the H200 the bounds were measured twice
   (stops 38-39: the GPU alone 2,600-4,300 images/s, the loaders 830), so they are off by default.
5. Feature extraction (a frozen backbone: the feature cache's first fill): the engine's first-epoch
   feature images/s against a plain no-grad AMP loop over the same folder with the evaluation
   preprocessing. Measured before the fine-tuning rows of 4 (no device call has reached it after them).

Each measurement of 4 and 5 runs in a process of its own (``in_fresh_process``), as a user's command
does: in one process the second loop to run a network found its kernels prepared by the first.

On the device machine (its image has torch, torchvision, timm, Pillow and numpy; this project's other
runtime needs travel as wheels: here, in the checkout, ``echo /.whl/ >> .git/info/exclude`` then
``python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl picklescan
send2trash``), one call with ``carry: [".whl"]``:

    mount -o remount,size=32g /dev/shm 2>/dev/null; \\
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 timeout 560 python3 benchmarks/gpu_check.py | tee $OUT/gpu_check.log

with the call's timeout_s about 590. On the H200 the whole check ran past 440 s (the real run, the
out-of-memory run, then each measurement starting a CUDA process of its own, about 40 s apiece);
``--throughput-only`` skips 2 and 3 (for a device where they passed) and printed both models' rows in
about 350 s with the bounds (without them, and with the engine decoding on the GPU added: about the
same, estimated). The next device session's one call (``--profile-first-epoch`` about 90 s more):

    ... timeout 560 python3 benchmarks/gpu_check.py --throughput-only --profile-first-epoch efficientnet_b0

The throughput rows are printed as they are measured, so a run cut short keeps them. Each
first step's seconds (the loaders' start and each kernel's first use, paid once per process) are
printed beside them: a first epoch of ten steps mostly measures those. ``--profile-first-epoch MODEL``
first runs one epoch of MODEL in the engine and in the plain loop, each in a fresh process under
cProfile, and prints where each one's main thread spent its time (waiting for the loaders shows as
``poll``; the run's imports, model build and validation are in the engine's too): on the H200,
efficientnet_b0's first engine epoch took 13 s more than the plain loop's.

The remount gives the loader processes room in shared memory where the machine allows it: 8 workers at
batch 128 keep about 2.5 GB of batches in flight, and the plain loops (PyTorch's own collate) fail where
it is smaller; the engine would send them through a pipe instead (core/dataset.py). The first line
printed says how much there is.

Without a GPU, ``--cpu-dry-run`` runs every step but the device and out-of-memory checks small on the
CPU (resnet18 and mobilenet_v3_small in place of resnet50 and efficientnet_b0: the same kinds of
network, trained and exported in a fraction of the time), so that the script is known to work before
device time is spent on it (tests/test_gpu_check.py runs it in the suite).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ("amber", "moss", "sky", "slate")
TINTS = {"amber": (60, 20, -40), "moss": (-20, 40, -20), "sky": (-30, 0, 50), "slate": (0, 0, 0)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Sizes:
    """What one check runs with: the full sizes on the GPU, small ones for the CPU dry run."""
    per_class: int
    photo: tuple[int, int]  # width, height of the generated JPEGs
    crop: int
    batch: int
    workers: int
    plain_steps: int  # steps of the GPU-resident loop
    oom_batch: int
    models: tuple[str, str]  # a ResNet and an EfficientNet-like network (the second also for the features)
    epochs: int  # of each fine-tuning run: the first decodes every image, later ones find them in the cache


GPU = Sizes(per_class=320, photo=(500, 375), crop=224, batch=128, workers=8, plain_steps=20, oom_batch=32768,
            models=("resnet50", "efficientnet_b0"), epochs=2)
# the same code paths with networks of the same kinds that train and export in a fraction of the time
CPU_DRY_RUN = Sizes(per_class=8, photo=(160, 120), crop=64, batch=8, workers=2, plain_steps=2, oom_batch=0,
                    models=("resnet18", "mobilenet_v3_small"), epochs=1)


# ---- data ------------------------------------------------------------------------------------------
def _photo(job: tuple[Path, str, int, tuple[int, int]]) -> None:
    """A photo-like JPEG: smooth random shapes of light and colour, sensor-like noise, a class tint,
    saved at quality 90 (about 70 KB at 500 x 375; ants/bees' JPEGs: 24-166 KB, median 102 KB)."""
    import numpy as np
    from PIL import Image

    path, name, seed, (width, height) = job
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 12, (height, width, 3)) + TINTS[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_photos(folder: Path, sizes: Sizes) -> Path:
    """``folder/train/<class>`` (per_class images of each class) and ``folder/val/<class>`` (a quarter
    as many): the engine trains on every image the plain loops train on (``folder/train``), where a
    split of one folder had it train on four fifths of them, and its first epoch's fixed start-up made
    fewer images/s."""
    jobs = [(folder / split / name / f"{name}_{i:04d}.jpg", name, 1000 * c + i + offset, sizes.photo)
            for split, count, offset in (("train", sizes.per_class, 0), ("val", max(1, sizes.per_class // 4), 500))
            for c, name in enumerate(CLASSES) for i in range(count)]
    with Pool(min(16, os.cpu_count() or 1)) as pool:
        pool.map(_photo, jobs, chunksize=16)
    return folder


# ---- the engine ------------------------------------------------------------------------------------
def run(config, run_dir: Path, model_file: bool = True):
    """A whole run as ``train`` makes it; ``model_file=False``: without the model file at its end (the
    throughput runs, which time the training passes)."""
    from tl_studio.core.callbacks import Recorder
    from tl_studio.core.engine import Trainer

    recorder = Recorder()
    trainer = Trainer(config, run_dir, [recorder], model_file_writer=None if model_file else _no_model_file)
    finished = trainer.fit()
    if trainer.error is not None:
        raise trainer.error
    return finished, recorder


def _no_model_file(run_dir, path, validation):
    return None


def check(condition: bool, message: str, failures: list) -> None:
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


# ---- the plain loops, written out as a user would ----------------------------------------------------
def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _plain_model(name: str, classes: int, device):
    import torch
    import torchvision

    model = torchvision.models.get_model(name, weights=None, num_classes=classes)
    return model.to(device).to(memory_format=torch.channels_last)


def _loader(data: Path, transform, sizes: Sizes, device, shuffle: bool):
    import torch
    import torchvision

    dataset = torchvision.datasets.ImageFolder(str(data), transform)
    # training drops a last partial batch (as the engine does), where a single image would fail BatchNorm
    return torch.utils.data.DataLoader(dataset, batch_size=sizes.batch, shuffle=shuffle, num_workers=sizes.workers,
                                       pin_memory=device.type == "cuda", persistent_workers=sizes.workers > 0,
                                       drop_last=shuffle)


def _train_transform(crop: int):
    from torchvision import transforms as T

    return T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _eval_transform(crop: int):
    from torchvision import transforms as T

    return T.Compose([T.Resize(round(crop * 256 / 224)), T.CenterCrop(crop), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _autocast(device, dtype):
    import torch

    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


class _PlainSteps:
    """One network, AdamW, and the usual AMP training step (a grad scaler with fp16)."""

    def __init__(self, name: str, device, dtype):
        import torch

        self.device, self.dtype = device, dtype
        self.model = _plain_model(name, len(CLASSES), device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step(self, images, labels) -> None:
        import torch.nn.functional as F

        with _autocast(self.device, self.dtype):
            loss = F.cross_entropy(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


@dataclass(frozen=True)
class Timed:
    """Training images/s of each epoch, and the seconds from the first epoch's start to the end of its
    first step: the loaders' start and the first use of each kernel, which a fresh process pays once."""
    rates: list[float]
    first_step: float


def _timed_epochs(loader, steps: _PlainSteps, sizes: Sizes, device, on_device) -> Timed:
    """Each of ``sizes.epochs`` passes over ``loader`` timed; ``on_device(item)`` gives a loader item's
    (images, labels) on the device."""
    import torch

    rates, first_step = [], None
    for _ in range(sizes.epochs):
        seen = 0
        _synchronize(device)
        started = time.perf_counter()
        for item in loader:
            images, labels = on_device(item)
            steps.step(images.contiguous(memory_format=torch.channels_last), labels)
            seen += len(labels)
            if first_step is None:  # one wait for the device, in the first step only
                _synchronize(device)
                first_step = time.perf_counter() - started
        _synchronize(device)
        rates.append(seen / (time.perf_counter() - started))
    return Timed(rates, first_step or 0.0)


def plain_fine_tuning(name: str, data: Path, sizes: Sizes, device, dtype) -> Timed:
    """Training images/s of each epoch of the usual AMP loop on the JPEG folder."""
    loader = _loader(data, _train_transform(sizes.crop), sizes, device, shuffle=True)
    return _timed_epochs(loader, _PlainSteps(name, device, dtype), sizes, device,
                         lambda item: (item[0].to(device, non_blocking=True), item[1].to(device, non_blocking=True)))


class _FileBytes:
    """The folder's files as raw bytes with their labels: loader processes that only read files, for
    decoding on the device. Bytes, not tensors: a batch of many small tensors is handed over as as many
    shared-memory file descriptors, and the loader lost some of them ("Bad file descriptor", then waited
    for ever)."""

    def __init__(self, data: Path):
        import torchvision

        self.samples = torchvision.datasets.ImageFolder(str(data)).samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with open(path, "rb") as file:
            return file.read(), label


def _bytes_and_labels(items):
    import torch

    return [data for data, _ in items], torch.tensor([label for _, label in items])


def plain_device_decoding(name: str, data: Path, sizes: Sizes, device, dtype) -> Timed:
    """Training images/s of each epoch of the plain AMP loop with the JPEGs decoded on the device in
    batches (torchvision.io.decode_jpeg: nvJPEG on CUDA) and cropped, flipped and normalised there; the
    loader processes only read the files. Beside the loops that decode on the CPU, what decoding on the
    GPU would gain before the engine is built to do it. Two things such an engine must handle that this
    loop need not (the generated JPEGs have no EXIF tags): torchvision 0.29's CUDA path ignores
    apply_exif_orientation (the orientation would be read from the file's header on the CPU), and
    decode_jpeg is marked deprecated in favour of TorchCodec."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms import v2

    loader = torch.utils.data.DataLoader(_FileBytes(data), batch_size=sizes.batch, shuffle=True,
                                         num_workers=sizes.workers, collate_fn=_bytes_and_labels, drop_last=True,
                                         persistent_workers=sizes.workers > 0)
    augment = v2.Compose([v2.RandomResizedCrop(sizes.crop, antialias=True), v2.RandomHorizontalFlip()])
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255

    def on_device(item):
        files, labels = item
        files = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in files]
        images = decode_jpeg(files, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        batch = (torch.stack([augment(image) for image in images]).float() - mean) / std
        return batch, labels.to(device, non_blocking=True)

    return _timed_epochs(loader, _PlainSteps(name, device, dtype), sizes, device, on_device)


def plain_on_device_tensors(name: str, sizes: Sizes, device, dtype, cudnn_benchmark: bool) -> float:
    """Training images/s of the same loop on random tensors already on the device: no loading at all."""
    import torch

    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        steps = _PlainSteps(name, device, dtype)
        images = torch.rand(sizes.batch, 3, sizes.crop, sizes.crop, device=device)
        images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, len(CLASSES), (sizes.batch,), device=device)
        warm = 3
        for step in range(sizes.plain_steps + warm):
            if step == warm:
                _synchronize(device)
                started = time.perf_counter()
            steps.step(images, labels)
        _synchronize(device)
        return sizes.batch * sizes.plain_steps / (time.perf_counter() - started)
    finally:
        torch.backends.cudnn.benchmark = previous


def loader_alone(data: Path, sizes: Sizes, device) -> float:
    """Images/s of decoding and augmenting the folder on the CPU (workers, pinned memory), no model, in
    the second of two epochs (the workers started, as the "last" columns find them). Timing a fresh
    iterator after ``iter(loader)`` had measured two epochs' work: the first iterator's prefetched
    batches are still made before the second's begin."""
    loader = _loader(data, _train_transform(sizes.crop), sizes, device, shuffle=True)
    for epoch in range(2):
        seen = 0
        started = time.perf_counter()
        for images, _labels in loader:
            seen += len(images)
    return seen / (time.perf_counter() - started)


def plain_features(name: str, data: Path, sizes: Sizes, device, dtype) -> float:
    """Images/s of a no-grad AMP pass of the backbone (the classifier removed) over the folder."""
    import torch

    loader = _loader(data, _eval_transform(sizes.crop), sizes, device, shuffle=False)
    model = _plain_model(name, len(CLASSES), device).eval()
    model.classifier = torch.nn.Identity()
    seen = 0
    _synchronize(device)
    started = time.perf_counter()
    with torch.no_grad(), _autocast(device, dtype):
        for images, _labels in loader:
            model(images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))
            seen += len(images)
    _synchronize(device)
    return seen / (time.perf_counter() - started)


# ---- each measurement in a process of its own ---------------------------------------------------------
def _spawned_pool():
    """A pool of one spawned process. It is not a daemon, so the loaders in it can start their workers,
    and they start as this process's would (forked on Linux): a spawned process's own default is to
    spawn them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=multiprocessing.set_start_method,
                               initargs=(multiprocessing.get_start_method(), True))


# The dry run's one spawned process, reused for every measurement: it checks that each one pickles,
# starts and returns there, without a torch import for each (the suite runs it; timings mean nothing).
_dry_run_pool = None


def in_fresh_process(function, *args):
    """``function(*args)`` in a new Python process, as a user's command runs. In one process, whichever
    loop ran a network first paid for the CUDA allocator's first allocations and cuDNN's preparation of
    its kernels, and the next looked faster (first H200 run, all in one process: efficientnet_b0's
    first engine epoch 34 images/s, the plain loop's right after it 677; warming the network up on
    random tensors first still left 64 against 560)."""
    if _dry_run_pool is not None:
        return _dry_run_pool.submit(function, *args).result()
    with _spawned_pool() as pool:
        return pool.submit(function, *args).result()


PROFILE_LINES = 18  # the functions each profile lists


def profiled(function, *args) -> tuple[object, str]:
    """``function(*args)`` under cProfile (this process's main thread: the training loop, not its loader
    processes): its result, and the functions that took the most time of their own."""
    import cProfile
    import io
    import pstats

    profile = cProfile.Profile()
    result = profile.runcall(function, *args)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).strip_dirs().sort_stats("tottime").print_stats(PROFILE_LINES)
    return result, text.getvalue()



def engine_rates(config, run_dir: Path, cpu_decodes_for_gpu: bool = False) -> tuple[Timed, float | None]:
    """The engine's training images/s of each epoch with its first step's seconds (from the first
    batch's images/s so far), and the feature cache's fill rate (None when the run filled none), from a
    run in this process. ``cpu_decodes_for_gpu``: the dry run's config asking to decode on the GPU runs
    that path with the CPU as the device (the engine itself leaves a CPU run's decoding to its loaders)."""
    from tl_studio.core import events, run_data
    from tl_studio.core.dataset import batches_through_pipe

    if cpu_decodes_for_gpu:
        run_data.decodes_on_gpu = lambda device, decode, augment: decode == "gpu"

    _, recorder = run(config, run_dir, model_file=False)
    epochs = recorder.of_type(events.EpochEnd)
    if batches_through_pipe():
        print(f"{config.model}: {batches_through_pipe()} of the engine's batches did not fit in shared memory "
              f"(through the pipe)", flush=True)
    first = next((b for b in recorder.of_type(events.BatchEnd) if b.epoch == epochs[0].epoch), None)
    first_step = config.batch_size / first.images_per_s if first and first.images_per_s else 0.0
    return Timed([e.train_images_per_s for e in epochs], first_step), epochs[0].feature_images_per_s


def bounds(name: str, data: Path, sizes: Sizes, device, dtype) -> tuple[list[float], float]:
    """What bounds the training loops: the GPU (plain_on_device_tensors with cuDNN's autotuner off, as
    the engine has it, then on) and the CPU's loading (loader_alone). One process: neither measures
    the other's work."""
    return [plain_on_device_tensors(name, sizes, device, dtype, tuned) for tuned in (False, True)], \
        loader_alone(data, sizes, device)


# ---- the checks ------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="every step but the device and out-of-memory checks, small, on the CPU")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the throughput figures (4 and 5), for a device whose run of the checks passed")
    parser.add_argument("--bounds", action="store_true",
                        help="also what bounds each model's loops: the loop on tensors already on the GPU, and the "
                             "loaders alone (about 40 s a model more)")
    parser.add_argument("--profile-first-epoch", metavar="MODEL",
                        help="first, one epoch of MODEL (e.g. efficientnet_b0) in the engine and in the plain loop, "
                             "each in a fresh process under cProfile: where a first epoch's time goes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl_gpu_"))
    # a cache folder of its own: the feature fill must compute, and nothing lands in the user's cache
    os.environ["TL_STUDIO_CACHE_DIR"] = str(work / "cache")
    global _dry_run_pool
    if args.cpu_dry_run:
        _dry_run_pool = _spawned_pool()
    try:
        return checks(CPU_DRY_RUN if args.cpu_dry_run else GPU, args.cpu_dry_run, work, args.throughput_only,
                      args.profile_first_epoch, args.bounds)
    finally:
        if _dry_run_pool is not None:
            _dry_run_pool.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def checks(sizes: Sizes, cpu_dry_run: bool, work: Path, throughput_only: bool = False,
           profile_model: str | None = None, with_bounds: bool = False) -> int:
    import torch

    from tl_studio.core.config import TrainConfig
    from tl_studio.core.device import resolve_device

    failures: list[str] = []
    started = time.perf_counter()
    if hasattr(os, "statvfs") and os.path.isdir("/dev/shm"):
        shm = os.statvfs("/dev/shm")
        print(f"shared memory (/dev/shm): {shm.f_bavail * shm.f_frsize / 2**30:.1f} GB free", flush=True)
    info = resolve_device("cpu" if cpu_dry_run else "auto")
    if not cpu_dry_run:
        check(info.is_cuda, f"auto picks CUDA: {info.description}", failures)
        check(info.amp_dtype in (torch.bfloat16, torch.float16), f"mixed precision dtype {info.amp_dtype}", failures)
        check(info.pin_memory, "pinned memory on", failures)
    data = make_photos(work / "data", sizes)
    print(f"generated {len(CLASSES) * sizes.per_class} training JPEGs of {sizes.photo[0]} x {sizes.photo[1]} "
          f"in {time.perf_counter() - started:.1f} s", flush=True)

    device_name = "cpu" if cpu_dry_run else "auto"
    base = TrainConfig(data_dir=str(data), model=sizes.models[0], weights="none", freeze="none",
                       epochs=sizes.epochs, batch_size=sizes.batch // 2, workers=sizes.workers // 2,
                       augment="standard", img_size=sizes.crop, device=device_name)
    if profile_model:
        profile_first_epochs(base.replace(model=profile_model, batch_size=sizes.batch, workers=sizes.workers, epochs=1),
                             data, sizes, info, work)
    if not throughput_only:
        run_checks(base, sizes, cpu_dry_run, work, failures)

    # the feature pass first: the fine-tuning rows take most of a device call, and a call cut short keeps it
    feature_config = base.replace(model=sizes.models[1], freeze="all", batch_size=sizes.batch,
                                  workers=sizes.workers, epochs=1)
    _, ours_features = in_fresh_process(engine_rates, feature_config, work / "features")
    ours_features = ours_features or 0.0
    # over both splits' images (ImageFolder takes train and val for classes), as the engine's fill
    plain_feature_rate = in_fresh_process(plain_features, sizes.models[1], data, sizes, info.device,
                                          info.amp_dtype)
    check(ours_features > 0, f"feature extraction images/s reported: {ours_features:.0f}", failures)
    print(f"feature extraction {sizes.models[1]}: engine {ours_features:.0f}, plain no-grad loop "
          f"{plain_feature_rate:.0f} images/s ({ours_features / plain_feature_rate:.2f}x)", flush=True)

    print(f"\nthroughput, {sizes.crop} px, batch {sizes.batch}, {sizes.workers} loader workers, "
          f"{info.description}, AMP {info.amp_dtype}, channels_last (images/s; each row as it is measured):",
          flush=True)
    print(f"{'model':18} {'engine e1':>10} {'engine last':>11} {'gpu-dec e1':>10} {'gpu-dec last':>12} "
          f"{'plain e1':>9} {'plain last':>10} {'ratio e1':>9} {'ratio last':>10} {'gpu-dec ratios':>14} "
          f"{'dev-dec e1':>10} {'dev-dec last':>12} {'1st step s (engine/gpu-dec/plain/dev-dec)':>42}", flush=True)
    ratios_seen = []
    for name in sizes.models:
        config = base.replace(model=name, batch_size=sizes.batch, workers=sizes.workers)
        engine, _ = in_fresh_process(engine_rates, config, work / f"speed_{name}")
        # the engine with its JPEGs decoded on the GPU (--decode gpu); the dry run's CPU stands in for it
        engine_gpu, _ = in_fresh_process(engine_rates, config.replace(decode="gpu"), work / f"gpu_dec_{name}",
                                         cpu_dry_run)
        plain_loop = in_fresh_process(plain_fine_tuning, name, data / "train", sizes, info.device, info.amp_dtype)
        ours, ours_gpu, plain = engine.rates, engine_gpu.rates, plain_loop.rates
        ratios = [a / b for a, b in zip(ours, plain)]
        gpu_ratios = [a / b for a, b in zip(ours_gpu, plain)]
        decoding_there = in_fresh_process(plain_device_decoding, name, data / "train", sizes, info.device,
                                          info.amp_dtype)
        decoded_there = decoding_there.rates
        print(f"{name:18} {ours[0]:10.0f} {ours[-1]:11.0f} {ours_gpu[0]:10.0f} {ours_gpu[-1]:12.0f} {plain[0]:9.0f} "
              f"{plain[-1]:10.0f} {ratios[0]:9.2f} {ratios[-1]:10.2f} {gpu_ratios[0]:9.2f} / {gpu_ratios[-1]:4.2f} "
              f"{decoded_there[0]:10.0f} {decoded_there[-1]:12.0f} {engine.first_step:21.1f} / "
              f"{engine_gpu.first_step:4.1f} / {plain_loop.first_step:4.1f} / {decoding_there.first_step:4.1f}",
              flush=True)
        if with_bounds:
            ceiling, loading = in_fresh_process(bounds, name, data / "train", sizes, info.device, info.amp_dtype)
            print(f"{'':18} bounds: the loop on tensors already on the GPU {ceiling[0]:.0f} images/s (cuDNN's "
                  f"autotuner on: {ceiling[1]:.0f}); the loaders alone {loading:.0f}", flush=True)
        ratios_seen += ratios + gpu_ratios
        for what, seen in (("", ratios), (" decoding on the GPU", gpu_ratios)):
            check(min(seen) >= 0.95 or cpu_dry_run,
                  f"{name} fine-tuning{what} images/s against the plain AMP loop: "
                  f"{', '.join(f'{r:.2f}' for r in seen)} (each epoch; target >= 0.95)", failures)

    print(f"median engine/plain over models and epochs: {statistics.median(ratios_seen):.2f}; "
          f"whole check {time.perf_counter() - started:.0f} s")
    print("FAILURES: " + "; ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


def profile_first_epochs(config, data: Path, sizes: Sizes, info, work: Path) -> None:
    """One epoch of ``config.model`` in the engine, then in the plain loop, each in a fresh process under
    cProfile; prints each one's images/s, first step and busiest functions."""
    import dataclasses

    one_epoch = dataclasses.replace(sizes, epochs=1)
    (engine, _), engine_profile = in_fresh_process(profiled, engine_rates, config, work / "profiled")
    plain, plain_profile = in_fresh_process(profiled, plain_fine_tuning, config.model, data / "train", one_epoch,
                                            info.device, info.amp_dtype)
    for name, timed, text in (("engine", engine, engine_profile), ("plain loop", plain, plain_profile)):
        print(f"\n{config.model}, {name}, one epoch in a fresh process under cProfile: {timed.rates[0]:.0f} "
              f"images/s, first step {timed.first_step:.1f} s\n{text.strip()}", flush=True)


def run_checks(base, sizes: Sizes, cpu_dry_run: bool, work: Path, failures: list) -> None:
    """2 and 3 of the module's docstring: a real run, its memory reports and model file; the recovery
    from running out of memory."""
    import torch

    from tl_studio.core import events

    finished, recorder = run(base, work / "run")
    epochs = recorder.of_type(events.EpochEnd)
    check(finished.status == "completed" and len(epochs) == sizes.epochs,
          f"fine-tuning run: {finished.status} {finished.message}", failures)
    if not cpu_dry_run:
        check(all(e.peak_memory_mb and e.peak_memory_mb > 0 for e in epochs),
              f"GPU memory reported: {[round(e.peak_memory_mb or 0) for e in epochs]} MB", failures)
    check(bool(finished.model_file) and Path(finished.model_file).is_file(),
          f"model file written and checked: {finished.model_file}", failures)
    if not cpu_dry_run:
        torch.cuda.empty_cache()
        huge = base.replace(model="resnet152", batch_size=sizes.oom_batch, img_size=384, epochs=1)
        finished, recorder = run(huge, work / "oom")
        notices = [n.message for n in recorder.of_type(events.Notice)]
        check(finished.status == "completed" and any("out of memory" in n for n in notices),
              f"out-of-memory recovery: {finished.status}; notices: {notices[:3]}", failures)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
