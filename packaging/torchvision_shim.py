"""Make PyPI's CUDA-linked torchvision importable beside a CPU-only torch, when nothing better exists.

Why this exists: the CPU build of torchvision lives only on download.pytorch.org/whl/cpu. Where that
index cannot be reached (an offline build machine with a local PyPI mirror), the only torchvision at
hand is PyPI's, whose ``torchvision/_C.so`` is linked against ``libc10_cuda.so`` and
``libtorch_cuda.so``. A CPU torch has neither library, ``_C.so`` fails to load, and ``import
torchvision`` then stops with "operator torchvision::nms does not exist".

The CUDA entry points ``_C.so`` references (``c10::cuda::*``, ``at::cuda::*``) run only for CUDA
tensors, which a CPU torch can never make. So this script gives them a home: it reads the missing
symbols from ``_C.so`` itself, writes one C function per symbol that aborts with a message, and links
the result into two small libraries with the missing sonames. Loaded once (``RTLD_GLOBAL``) before
torchvision, they satisfy the dynamic linker; every CPU code path stays torchvision's own.

When torchvision's libraries match torch (a real ``+cpu`` torchvision, or the CUDA pair), the script
says so and builds nothing. Usage::

    python packaging/torchvision_shim.py OUT_DIR     # run with the build venv's python
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

# The CUDA-only torch libraries a CUDA torchvision links to; a CPU torch ships none of them.
CUDA_TORCH_LIBRARIES = ("libc10_cuda.so", "libtorch_cuda.so")
# Demangled prefixes of the symbols those libraries provide to torchvision.
CUDA_NAMESPACES = ("_ZN3c104cuda", "_ZNK3c104cuda", "_ZN2at4cuda", "_ZNK2at4cuda")


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # no import: torchvision's import is what fails
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed in {sys.prefix}.")
    return Path(list(spec.submodule_search_locations)[0])


def needed_libraries(library: Path) -> list[str]:
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]


def missing_cuda_libraries(extension: Path, torch_lib: Path) -> list[str]:
    return [name for name in needed_libraries(extension)
            if name in CUDA_TORCH_LIBRARIES and not (torch_lib / name).exists()]


def cuda_symbols(extension: Path) -> list[str]:
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(extension)],
                               capture_output=True, text=True, check=True).stdout
    names = (line.split()[-1] for line in undefined.splitlines() if line.strip())
    return sorted({name for name in names if name.startswith(CUDA_NAMESPACES) and "@" not in name})


def stub_source(symbols: list[str]) -> str:
    lines = ["#include <stdio.h>", "#include <stdlib.h>", "",
             "static void cuda_unavailable(const char *name) {",
             '    fprintf(stderr, "TL Studio: %s needs CUDA, which this CPU build of PyTorch does not have.\\n", name);',
             "    abort();", "}", ""]
    for number, symbol in enumerate(symbols):
        lines.append(f'void stub_{number}(void) __asm__("{symbol}");')
        lines.append(f'void stub_{number}(void) {{ cuda_unavailable("{symbol}"); }}')
    return "\n".join(lines) + "\n"


def build(out_dir: Path) -> list[Path]:
    """The shim libraries written to out_dir (an empty list when torchvision needs none)."""
    torchvision = package_dir("torchvision")
    extension = next(torchvision.glob("_C*.so"), None)
    if extension is None:
        raise SystemExit(f"No compiled extension in {torchvision}; is this a torchvision wheel?")
    missing = missing_cuda_libraries(extension, package_dir("torch") / "lib")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.so"):  # from an earlier build venv; the spec bundles what is here
        stale.unlink()
    if not missing:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "cuda_stubs.c"
        source.write_text(stub_source(cuda_symbols(extension)))
        built = []
        # The first library defines every stub; the others only carry their soname. Loaded with
        # RTLD_GLOBAL, the stubs resolve for any library that asks, whatever its DT_NEEDED says.
        for index, name in enumerate(missing):
            inputs = [str(source)] if index == 0 else ["-x", "c", "/dev/null"]
            target = out_dir / name
            subprocess.run(["cc", "-shared", "-fPIC", "-O1", f"-Wl,-soname,{name}", "-o", str(target), *inputs],
                           check=True)
            built.append(target)
    return built


def write_preload(libraries: list[Path]) -> Path:
    """A .pth file in this venv's site-packages that loads the stand-ins at start-up, so that
    torchvision imports in the build venv (PyInstaller's analysis and hooks import it)."""
    import sysconfig

    pth = Path(sysconfig.get_paths()["purelib"]) / "tl_studio_torchvision_shim.pth"
    loads = "; ".join(f"ctypes.CDLL({str(lib.resolve())!r}, mode=os.RTLD_GLOBAL)" for lib in libraries)
    pth.write_text(f"import ctypes, os; {loads}\n" if libraries else "")
    return pth


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python packaging/torchvision_shim.py OUT_DIR", file=sys.stderr)
        return 2
    built = build(Path(argv[0]))
    write_preload(built)
    if built:
        print("torchvision is linked to CUDA torch libraries; built stand-ins:", *map(str, built))
    else:
        print("torchvision matches the installed torch; no stand-in libraries needed.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
