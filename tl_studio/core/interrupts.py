"""A Ctrl-C held back while a native library loads, and delivered as soon as it has.

Python raises KeyboardInterrupt at the next bytecode it runs, which can be inside the Python calls a C
extension makes while it initialises. onnx's extension (onnx.onnx_cpp2py_export) does not survive that:
`tl-studio export --format onnx` ended by SIGSEGV once when Ctrl-C came during `import onnx` (the
interrupt tests, with faulthandler's stack: create_module of onnx/__init__.py line 82). The interrupt is
not lost, only moved to the end of the import, where it ends the command as usual (one line, exit 130).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Holds SIGINT for the block, then hands it to the handler that was in place (the default raises
    KeyboardInterrupt; train's handler asks the run to stop). Only the main thread can set a handler:
    elsewhere the block runs as it is (a signal is handled in the main thread anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            _deliver(previous)


def _deliver(handler) -> None:
    if handler is signal.SIG_DFL:  # the process was to end by the signal itself: let it
        os.kill(os.getpid(), signal.SIGINT)
    elif callable(handler):
        handler(signal.SIGINT, None)
    # SIG_IGN, or None (a handler set outside Python): the interrupt was not for Python to act on
