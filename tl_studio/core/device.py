"""Which device to train on, and what it can do (mixed precision, pinned memory)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tl_studio.core.config import CPU_LOADER_WORKERS, MAX_GPU_LOADER_WORKERS
from tl_studio.core.errors import UserError
from tl_studio.core.wording import MB


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    description: str  # for people: "NVIDIA GeForce RTX 4090 (24.0 GB)", "CPU (16 threads)"
    amp_dtype: torch.dtype | None  # None: full precision
    pin_memory: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto", amp: bool = True) -> DeviceInfo:
    """``auto`` picks CUDA, then Apple MPS, then the CPU. Asking for a device that is not there is an
    error the user can fix, said in one sentence."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("No CUDA GPU is available (no NVIDIA driver or a CPU-only PyTorch); "
                            "use --device cpu or --device auto.")
        props = torch.cuda.get_device_properties(0)
        # bf16 needs no loss scaling; older GPUs get fp16 with a GradScaler (see the engine).
        dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None
        return DeviceInfo(torch.device("cuda", 0), f"{props.name} ({props.total_memory / 2**30:.1f} GB)", dtype, True)
    if name == "mps":
        if not _mps_available():
            raise UserError("Apple MPS is not available on this machine; use --device cpu or --device auto.")
        return DeviceInfo(torch.device("mps"), "Apple GPU (MPS)", None, False)
    if name == "cpu":
        threads = torch.get_num_threads()
        dtype = torch.bfloat16 if amp and cpu_bf16_support() else None  # see autocast_dtype
        return DeviceInfo(torch.device("cpu"), f"CPU ({threads} thread{'s' if threads != 1 else ''})", dtype, False)
    raise UserError(f"Unknown device {name!r}; use auto, cpu, cuda or mps.")


def cpu_bf16_support() -> str | None:
    """How this CPU does bfloat16 arithmetic, which oneDNN uses for convolutions and matrix products
    under bf16 autocast: "amx" (Intel AMX matrix units, Xeon 4th generation and later), "avx512_bf16"
    (bf16 dot-product instructions: AMD Zen 4 and later, Intel Cooper Lake), or None, where bf16 is
    converted back and forth around float32 arithmetic and runs slower than float32."""
    probes = (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        for name, probe in probes:  # torch's own CPU feature checks
            if getattr(torch.cpu, probe, lambda: False)():
                return name
    except (RuntimeError, AttributeError):
        pass
    return None


def available_devices() -> list[tuple[str, str]]:
    """(setting, description) for every device the user could pick; "auto" first, saying what it picks."""
    found = []
    if torch.cuda.is_available():
        found.append(("cuda", resolve_device("cuda").description))
    if _mps_available():
        found.append(("mps", resolve_device("mps").description))
    found.append(("cpu", resolve_device("cpu").description))
    return [("auto", f"Automatic: {found[0][1]}")] + found


# Measured with benchmarks/bench_channels_last.py: batch 32, 224 px, medians of 3, speed against float32
# in the contiguous layout, on two 2-core CPUs. A Xeon with AMX (cpu_bf16_support "amx"):
#                       float32 channels_last   bf16 contiguous        bf16 channels_last
#   efficientnet_lite0  eval 1.51x, train 1.53x eval 1.38x, train 1.47x eval 2.03x, train 1.55x
#   resnet18            eval 1.21x, train 1.18x eval 1.77x, train 2.17x eval 3.40x, train 3.11x
#   resnet50            eval 1.23x, train 1.32x eval 1.39x, train 1.82x eval 2.94x, train 2.80x
#   mobilenet_v3_large  eval 1.49x, train 1.46x eval 1.33x, train 1.08x eval 2.20x, train 1.20x
#   convnext_tiny       eval 1.28x, train 1.02x eval 2.04x, train 1.36x eval 1.81x, train 1.32x
# An AMD EPYC (Zen 4) with AVX512-BF16 and no AMX ("avx512_bf16"):
#   efficientnet_lite0  eval 1.39x, train 1.79x eval 2.11x, train 2.61x eval 3.68x, train 3.47x
#   resnet18            eval 1.15x, train 1.14x eval 1.92x, train 2.02x eval 2.04x, train 2.35x
#   resnet50            eval 1.15x, train 1.27x eval 1.71x, train 2.56x eval 2.06x, train 3.39x
#   mobilenet_v3_large  eval 1.51x, train 1.83x eval 1.92x, train 1.43x eval 2.71x, train 1.55x
#   convnext_tiny       eval 1.14x, train 1.03x eval 2.35x, train 2.39x eval 2.41x, train 2.45x
# (An earlier float32 measurement on the Xeon, medians of 5: efficientnet_lite0 2.07x / 2.15x, resnet18
# 1.26x / 0.76x: resnet training steps stay contiguous in float32.) bf16 is used where it beats the best
# float32 layout by a margin, in its fastest layout; both CPUs agree on where. EfficientNet's training
# step is the exception on the EPYC: 1.9x faster than float32 channels_last here, but in a whole
# `--freeze none` epoch of the engine (AdamW, the pretrained network) its backward pass and optimizer
# step took 9.0-11.9 s in bf16 against 6.7-7.5 s in float32 and the epoch was no faster, so it stays
# float32 on both, as does MobileNet's. Families not measured run in float32 in the default layout.
# CPUs with neither kind of bf16 arithmetic always run float32: there bf16 is slower.
_CPU_BF16 = {"eval": ("efficientnet", "resnet", "mobilenet", "convnext"), "train": ("resnet", "convnext")}
_CPU_CHANNELS_LAST = {
    ("float32", "eval"): ("efficientnet", "resnet", "mobilenet"),
    ("float32", "train"): ("efficientnet", "mobilenet"),  # resnet: its backward pass was slower in NHWC
    ("bf16", "eval"): ("efficientnet", "resnet", "mobilenet"),
    ("bf16", "train"): ("resnet",),
}


# Loader processes when the run does not say (TrainConfig.workers None; the numbers are config.py's). On
# the CPU two: the model's own threads need the other cores (the measured default of every CPU figure in
# docs/training.md). On a CUDA GPU the loaders are what bound training: on an H200 with 16 cores, a plain
# AMP loop with 8 workers trained resnet50 at 804-850 images/s where the GPU alone does 4,300
# (benchmarks/gpu_check.py), so a GPU run gets a worker per core it may use, less one for its own
# process, at most 8.


def loader_workers(requested: int | None, device: DeviceInfo, processes_on_this_machine: int = 1) -> int:
    """The loader processes a run uses: ``requested`` when given, else CPU_LOADER_WORKERS, or on a CUDA
    GPU one per CPU core of this process's share (``processes_on_this_machine``: torchrun's processes
    share the cores) less one, between CPU_LOADER_WORKERS and MAX_GPU_LOADER_WORKERS."""
    import os

    if requested is not None:
        return requested
    if not device.is_cuda:
        return CPU_LOADER_WORKERS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = cores // max(1, processes_on_this_machine)
    return max(CPU_LOADER_WORKERS, min(MAX_GPU_LOADER_WORKERS, share - 1))


def _family(model: "torch.nn.Module | str") -> str:
    return str(model if isinstance(model, str) else getattr(model, "tl_name", type(model).__name__.lower()))


PURPOSES = ("train", "features", "validate")


def autocast_dtype(device: DeviceInfo, model: "torch.nn.Module | str", *, purpose: str) -> torch.dtype | None:
    """The dtype to autocast ``model`` to on ``device``, or None for float32. The one place this is
    decided. ``purpose``: "train" (training steps), "features" (a frozen backbone's features of the
    training images, or of an analysis's images) or "validate" (validation: the accuracy a run reports
    and the logits the model file's calibration is fitted on).

    CUDA: the device's mixed precision (bf16, or fp16 with a grad scaler) for all three, unless it is
    turned off. CPU: bf16 for training steps and features where the CPU does bf16 arithmetic in hardware
    and it measured faster for the model family (see the tables above); validation in float32, so that
    the accuracy a run reports and its model file's calibration are those of the float32 file it
    writes."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    if device.amp_dtype is None or device.device.type != "cpu":
        return device.amp_dtype
    if purpose == "validate":
        return None
    return device.amp_dtype if _family(model).startswith(_CPU_BF16["train" if purpose == "train" else "eval"]) else None


def use_channels_last(device: DeviceInfo | torch.device, model: "torch.nn.Module | str", *, training: bool,
                      autocast: torch.dtype | None = None) -> bool:
    """Whether to run ``model`` with channels_last (NHWC) tensors and weights on ``device``, for
    training steps or for inference (feature extraction, validation), under ``autocast`` (the dtype
    autocast_dtype gives, None for float32). The one place this is decided.

    CUDA: always (cuDNN's NHWC kernels and tensor cores). Apple MPS: no (no measured gain). CPU: for the
    model families where it measured faster, per precision and mode (see the tables above)."""
    kind = device.device.type if isinstance(device, DeviceInfo) else torch.device(device).type
    if kind == "cuda":
        return True
    if kind != "cpu":
        return False
    precision = "bf16" if autocast == torch.bfloat16 else "float32"
    return _family(model).startswith(_CPU_CHANNELS_LAST[(precision, "train" if training else "eval")])


def normalises_on_device(device: DeviceInfo) -> bool:
    """Whether a run's training loaders hand over 8-bit pixels for the device to normalise
    (transforms.Normalise) instead of normalised floats. The one place this is decided.

    CUDA: yes; a batch takes the GPU microseconds, and the loaders, which bound training there, hand over
    a quarter of the bytes and spend no time on it. Elsewhere no: on the CPU the normalisation would move
    from the loader processes onto the cores the model trains on (0.6 ms an image there)."""
    return device.is_cuda


def decodes_on_gpu(device: DeviceInfo, decode: str, augment: str) -> bool:
    """Whether a run's training JPEGs are decoded on its GPU (gpu_decoding.py) rather than by its loader
    processes: when asked for (``decode`` "gpu") on a CUDA device, for the augmenting presets ("none" is
    the evaluation transform, which the loaders apply). "auto" keeps them on the loaders until the
    engine's GPU decoding has been measured on a GPU (docs/training.md)."""
    return decode == "gpu" and device.is_cuda and augment != "none"


def is_channels_last(model: "torch.nn.Module") -> bool:
    """Whether the model's first 4-D weight (a convolution's) is stored channels_last."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            return parameter.is_contiguous(memory_format=torch.channels_last) and not parameter.is_contiguous()
    return False


def reset_peak_memory(info: DeviceInfo) -> None:
    """Each epoch reports its own high-water mark: after an out-of-memory retry at a smaller batch the
    figure falls with it, where a run-long peak would still show the batch that did not fit."""
    if info.is_cuda:
        torch.cuda.reset_peak_memory_stats(info.device)


def peak_memory_mb(info: DeviceInfo) -> float | None:
    """The GPU memory PyTorch's tensors held at most since the last reset, in MB (10**6 bytes);
    None off CUDA (the CPU's memory is the system's to report)."""
    if info.is_cuda:
        return torch.cuda.max_memory_allocated(info.device) / MB
    return None
