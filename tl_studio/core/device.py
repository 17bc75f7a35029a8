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


def peak_memory_mb(info: DeviceInfo) -> float | None:
    if info.is_cuda:
        return torch.cuda.max_memory_allocated(info.device) / 2**20
    return None
