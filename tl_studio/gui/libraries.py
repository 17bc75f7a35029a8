"""Loading torch and friends once, in the background, one thread at a time.

The window shows before torch is imported (start-up time). Afterwards several background tasks may
need torch at the same moment (the model catalogue, the device list, a training run); Python's
per-module import locks do not protect packages with import cycles such as torchvision from two
threads importing them at once ("partially initialized module"). Every background task therefore
calls ``load_libraries()`` first: the first caller imports, the others wait for it.

The objects the imports create (several hundred thousand: torch, torchvision, timm) live as long as
the app. Every full collection of the garbage collector would walk them all while holding the GIL:
150 to 250 ms during which the window cannot repaint (measured as the worst event-loop stalls at the
start of a training run, and while importing). So the collector is off during the imports and the
imported objects are then moved out of its reach with ``gc.freeze()``.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_loaded = False


def load_libraries() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        import importlib

        collecting = gc.isenabled()
        gc.disable()
        try:
            for name in ("torch", "torchvision", "torchvision.transforms.v2", "timm", "tl_studio.core.engine",
                         "tl_studio.core.models", "tl_studio.core.export"):
                importlib.import_module(name)
        finally:
            gc.freeze()
            if collecting:
                gc.enable()
        _loaded = True


def libraries_loaded() -> bool:
    return _loaded
