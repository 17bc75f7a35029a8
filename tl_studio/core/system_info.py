"""What this machine and this installation can do, for Help > About, Help > Copy diagnostics and the
first-run check: the PyTorch build (CPU, CUDA x.y, MPS), the GPUs present and whether PyTorch can use
them, and when an NVIDIA GPU sits unused because of the build, the one command that fixes it.

Finding facts (``detect_*``) is kept apart from judging them (``gpu_summary``, ``install_advice``), so
the judgements are plain functions of values a test can make up: no GPU is needed to test them.
"""

from __future__ import annotations

import logging
import platform
import re
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

# PyTorch's wheel indexes by CUDA version (download.pytorch.org/whl/<tag>), newest first. A driver
# runs every build up to the CUDA version it reports, so the newest tag the driver reaches is right.
CUDA_WHEEL_TAGS = (("13.0", "cu130"), ("12.8", "cu128"), ("12.6", "cu126"))
PACKAGES = ("PySide6-Essentials", "numpy", "pillow", "timm", "onnx", "onnxruntime", "pyqtgraph")


@dataclass(frozen=True)
class TorchBuild:
    version: str  # "2.13.0+cpu"
    torchvision: str | None
    cuda: str | None  # the CUDA version the build targets ("13.0"), None for a CPU build
    mps_built: bool = False  # Apple-silicon builds

    @property
    def kind(self) -> str:
        if self.cuda:
            return f"CUDA {self.cuda}"
        return "MPS (Apple GPU)" if self.mps_built else "CPU only"


@dataclass(frozen=True)
class Accelerators:
    nvidia_gpus: tuple[str, ...] = ()  # what the NVIDIA driver lists, whatever PyTorch can do
    driver_cuda: str | None = None  # the newest CUDA version the driver supports ("13.0")
    cuda_devices: tuple[str, ...] = ()  # the GPUs PyTorch can use
    mps_usable: bool = False


@dataclass(frozen=True)
class SystemReport:
    app_version: str
    python: str
    platform: str
    frozen: bool  # the packaged app (PyInstaller) rather than a pip/source install
    torch: TorchBuild
    accelerators: Accelerators
    packages: dict = field(default_factory=dict)
    last_error: str | None = None


def _base_version(version: str) -> str:
    return version.split("+", 1)[0]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def wheel_tag_for_driver(driver_cuda: str | None) -> str | None:
    """The newest PyTorch CUDA wheel tag the driver can run; None when the driver is too old."""
    if driver_cuda is None:
        return CUDA_WHEEL_TAGS[-1][1]  # unknown driver: the oldest build asks the least of it
    for cuda, tag in CUDA_WHEEL_TAGS:
        if _version_tuple(driver_cuda) >= _version_tuple(cuda):
            return tag
    return None


def gpu_summary(report: SystemReport) -> str:
    """One sentence: where training will run."""
    found = report.accelerators
    if found.cuda_devices:
        return f"Training runs on the GPU: {', '.join(found.cuda_devices)}."
    if found.mps_usable:
        return "Training runs on the Apple GPU (MPS)."
    if found.nvidia_gpus:
        return f"An NVIDIA GPU is present ({', '.join(found.nvidia_gpus)}) but PyTorch cannot use it: training runs on the CPU."
    return "No GPU found: training runs on the CPU."


def install_advice(report: SystemReport, python: str = sys.executable) -> str | None:
    """When an NVIDIA GPU is present but this PyTorch cannot use it: one sentence that says why and
    gives the exact command that installs the right build. None when there is nothing to fix."""
    found, build = report.accelerators, report.torch
    if not found.nvidia_gpus or found.cuda_devices:
        return None
    tag = wheel_tag_for_driver(found.driver_cuda)
    if tag is None:
        return (f"Your NVIDIA driver supports CUDA {found.driver_cuda}, older than any PyTorch CUDA build "
                f"(12.6 or newer): update the NVIDIA driver, then restart TL Studio.")
    if report.frozen and build.cuda is None:
        return ("This TL Studio app bundles the CPU build of PyTorch; to train on your NVIDIA GPU, build "
                "the CUDA app from the source with: make package TORCH_VARIANT=cuda")
    packages = f"torch=={_base_version(build.version)}"
    if build.torchvision:
        packages += f" torchvision=={_base_version(build.torchvision)}"
    command = f"{python} -m pip install --force-reinstall {packages} --index-url https://download.pytorch.org/whl/{tag}"
    if build.cuda is None:
        return f"This PyTorch is the CPU-only build; install the CUDA build with: {command}"
    if found.driver_cuda and _version_tuple(found.driver_cuda) < _version_tuple(build.cuda):
        return (f"This PyTorch needs CUDA {build.cuda} but your NVIDIA driver supports only CUDA "
                f"{found.driver_cuda}; update the driver, or install the matching build with: {command}")
    return ("PyTorch's CUDA build cannot reach the GPU although the driver lists it; check that "
            "`nvidia-smi` works in a terminal, then restart TL Studio.")


def as_text(report: SystemReport) -> str:
    """The report for a bug report (Help > Copy diagnostics): plain text, one fact a line."""
    found = report.accelerators
    lines = [f"TL Studio {report.app_version} ({'packaged app' if report.frozen else 'Python install'})",
             f"Python {report.python} on {report.platform}",
             f"PyTorch {report.torch.version} ({report.torch.kind}), torchvision {report.torch.torchvision or 'missing'}",
             f"NVIDIA GPUs (driver): {', '.join(found.nvidia_gpus) or 'none'}"
             + (f"; driver supports CUDA {found.driver_cuda}" if found.driver_cuda else ""),
             f"GPUs PyTorch can use: {', '.join(found.cuda_devices) or ('Apple MPS' if found.mps_usable else 'none')}",
             gpu_summary(report)]
    advice = install_advice(report)
    if advice:
        lines.append(advice)
    lines += [f"{name} {version}" for name, version in report.packages.items()]
    lines.append(f"Last error: {report.last_error}" if report.last_error else "Last error: none")
    return "\n".join(lines)


# ---- finding the facts --------------------------------------------------------------------------
def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def detect_nvidia() -> tuple[tuple[str, ...], str | None]:
    """The NVIDIA GPUs the driver lists and the CUDA version it supports, without PyTorch: this is
    what tells "no GPU" apart from "a GPU this PyTorch cannot use"."""
    names = tuple(line.strip() for line in _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
                  .splitlines() if line.strip())
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", _run(["nvidia-smi"])) if names else None
    if not names:  # no nvidia-smi on PATH: the kernel driver still lists its GPUs
        names = tuple(match.group(1).strip() for info in Path("/proc/driver/nvidia/gpus").glob("*/information")
                      for match in [re.search(r"Model:\s*(.+)", info.read_text(errors="replace"))] if match)
    return names, cuda.group(1) if cuda else None


def detect_torch() -> tuple[TorchBuild, tuple[str, ...], bool]:
    import torch

    try:
        import torchvision

        torchvision_version = torchvision.__version__
    except Exception:  # a broken torchvision is itself worth reporting
        torchvision_version = None
    mps = getattr(torch.backends, "mps", None)
    build = TorchBuild(torch.__version__, torchvision_version, torch.version.cuda, bool(mps and mps.is_built()))
    devices = ()
    if torch.cuda.is_available():
        devices = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return build, devices, bool(mps and mps.is_available())


def installed_versions(names=PACKAGES) -> dict:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect_report() -> SystemReport:
    """Every fact, found now (imports torch; runs nvidia-smi: call it off the GUI thread)."""
    from tl_studio import __version__

    build, cuda_devices, mps_usable = detect_torch()
    nvidia_gpus, driver_cuda = detect_nvidia()
    return SystemReport(
        app_version=__version__, python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} ({platform.machine()})",
        frozen=bool(getattr(sys, "frozen", False)), torch=build,
        accelerators=Accelerators(nvidia_gpus, driver_cuda, cuda_devices, mps_usable),
        packages=installed_versions(), last_error=last_error())


# ---- the last error ---------------------------------------------------------------------------------
class _LastError(logging.Handler):
    """Keeps the last error logged under "tl_studio" (background tasks log theirs with the traceback)
    and the last uncaught exception, for the diagnostics a user pastes into a bug report."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.text: str | None = None
        self.lock_text = threading.Lock()

    def remember(self, text: str) -> None:
        with self.lock_text:
            self.text = text.strip()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.remember(text)


_last_error = _LastError()


def record_errors() -> None:
    """Start keeping the last error (idempotent): a log handler on "tl_studio" and a hook that sees
    uncaught exceptions before Python's own hook prints them."""
    logger = logging.getLogger("tl_studio")
    if _last_error in logger.handlers:
        return
    logger.addHandler(_last_error)
    previous = sys.excepthook

    def hook(kind, value, tb):
        _last_error.remember("".join(traceback.format_exception(kind, value, tb)))
        previous(kind, value, tb)

    sys.excepthook = hook


def remember_error(text: str) -> None:
    _last_error.remember(text)


def last_error() -> str | None:
    return _last_error.text
