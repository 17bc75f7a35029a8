"""Which device to train on, and what it can do (mixed precision, pinned memory)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tl_studio.core.errors import UserError


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
        return DeviceInfo(torch.device("cpu"), f"CPU ({threads} thread{'s' if threads != 1 else ''})", None, False)
    raise UserError(f"Unknown device {name!r}; use auto, cpu, cuda or mps.")


def available_devices() -> list[tuple[str, str]]:
    """(setting, description) for every device the user could pick; "auto" first, saying what it picks."""
    found = []
    if torch.cuda.is_available():
        found.append(("cuda", resolve_device("cuda").description))
    if _mps_available():
        found.append(("mps", resolve_device("mps").description))
    found.append(("cpu", resolve_device("cpu").description))
    return [("auto", f"Automatic: {found[0][1]}")] + found


# Measured on this project's 2-core Xeon CPU (AVX-512, oneDNN) with benchmarks/bench_channels_last.py:
# batch 32, 224 px, medians of 5, contiguous time / channels_last time:
#   efficientnet_lite0  eval 2.07x, train step 2.15x  (depthwise convolutions gain most from NHWC)
#   resnet18            eval 1.26x, train step 0.76x  (its backward pass is slower in NHWC on the CPU)
# Families not measured stay in the default layout on the CPU.
_CPU_CHANNELS_LAST = {"eval": ("efficientnet", "resnet"), "train": ("efficientnet",)}


def use_channels_last(device: DeviceInfo | torch.device, model: "torch.nn.Module | str", *, training: bool) -> bool:
    """Whether to run ``model`` with channels_last (NHWC) tensors and weights on ``device``, for
    training steps or for inference (feature extraction, validation). The one place this is decided.

    CUDA: always (cuDNN's NHWC kernels and tensor cores). Apple MPS: no (no measured gain). CPU: for
    the model families where it measured faster here, per mode (see the table above)."""
    kind = device.device.type if isinstance(device, DeviceInfo) else torch.device(device).type
    if kind == "cuda":
        return True
    if kind != "cpu":
        return False
    name = model if isinstance(model, str) else getattr(model, "tl_name", type(model).__name__.lower())
    return str(name).startswith(_CPU_CHANNELS_LAST["train" if training else "eval"])


def is_channels_last(model: "torch.nn.Module") -> bool:
    """Whether the model's first 4-D weight (a convolution's) is stored channels_last."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            return parameter.is_contiguous(memory_format=torch.channels_last) and not parameter.is_contiguous()
    return False


def peak_memory_mb(info: DeviceInfo) -> float | None:
    if info.is_cuda:
        return torch.cuda.max_memory_allocated(info.device) / 2**20
    return None
