# PyInstaller runtime hook: runs in the frozen app before any of its own code.
# Loads the stand-in CUDA libraries that packaging/torchvision_shim.py builds when a CUDA-linked
# torchvision is bundled beside a CPU torch (see that file for why). RTLD_GLOBAL so that torchvision's
# compiled extension finds their symbols when it loads. Absent from bundles that do not need them.
import ctypes
import os
import sys

_shim_dir = os.path.join(sys._MEIPASS, "torchvision_shim")
for _name in ("libc10_cuda.so", "libtorch_cuda.so"):  # the first one defines every stub
    _path = os.path.join(_shim_dir, _name)
    if os.path.exists(_path):
        ctypes.CDLL(_path, mode=os.RTLD_GLOBAL)
