"""Process-wide settings for the commands (``tl_studio.cli``): each is a process that ends when its
work is done, so what suits its batches and its exit suits the whole process. Not for the app, which
lives on after a run.

- ``let_waiting_threads_sleep``: torch's CPU parallelism is OpenMP (libgomp). By default its threads spin
  for a while after each parallel operation, waiting for the next one. On a small machine doing other work
  (another PyTorch job, our own loader process) the spinning takes the cores the others need, and every
  operation waits at its barrier for a thread that lost its core. Sleeping at once
  (``OMP_WAIT_POLICY=PASSIVE``) costs a wake-up per operation, a few hundred per batch: nothing beside a
  batch of 32. Measured on the 2-core machine with another PyTorch job running: 13-15 -> 23-24 images/s;
  with other sessions' work on it (load average 4-5): 10-29 -> 41-46.
- ``keep_freed_memory``: glibc gives a freed block back to the system at once when it was larger than its
  mmap threshold (at most 32 MiB by its own adjustment) or sat at the top of the heap above the trim
  threshold; the next batch then asks for the same memory again and the kernel faults in and zeroes every
  page of it. A batch of 32 through efficientnet_lite0 at 224 px allocates activations of 50-150 MB:
  290,000 page faults and 0.44 s of system time per batch (0.9 s of user time), against 24,000 faults and
  0.04 s once freed memory is kept for the next batch. Every command that owns its process takes it
  (cli/main.py): a first ``train`` of ants/bees (efficientnet_lite0 features of 398 images) spent 4.1 s
  of system time and 12.4-13.3 s in all, against 1.8-2.1 s and 11.6-12.2 s with it.
- ``leave_to_the_exit``: torch, torchvision and torch.export create well over a million Python objects
  that live until the process ends, yet every full garbage collection walks them all, and so does the
  interpreter's last collection at exit: 0.8-1.1 s after a ``train``, against 0.25 s with the objects
  frozen (gc.freeze) first.
- ``optimizers_without_dynamo``: torch.optim marks ``Optimizer.add_param_group`` and ``zero_grad`` as never to
  be compiled with a wrapper (torch._compile._disable_dynamo) that imports torch._dynamo at their first call,
  0.9 s here, only to put that mark on them. A command never compiles anything, so the mark has nothing to
  act on: with it set aside, an ``advise`` whose features are all stored (a linear probe fitted with L-BFGS,
  no model built, so nothing else imports torch._dynamo) took 1.6 s instead of 2.5 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB of free heap is kept
_TOP_PAD_BYTES = 256 << 20  # the heap grows in steps of 256 MiB rather than page by page


def let_waiting_threads_sleep() -> bool:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy. OpenMP reads it when torch loads it, so
    this only works before torch is first imported; returns whether it could still take effect."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def keep_freed_memory() -> bool:
    """Asks glibc to keep freed memory for reuse; True when it took the settings (Linux with glibc),
    False elsewhere, where nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in (
        (_M_MMAP_THRESHOLD, _KEEP_BYTES), (_M_TRIM_THRESHOLD, _KEEP_BYTES), (_M_TOP_PAD, _TOP_PAD_BYTES)))


def leave_to_the_exit() -> None:
    """Exempts every object alive now from later garbage collections, the one at exit included (they
    are the libraries' and the command's, and the process ends soon: the system takes the memory
    back at once). Objects made after the call are collected as usual. An object frozen here that
    becomes cyclic garbage later is freed only at exit, which is why the app never calls this."""
    gc.freeze()


def optimizers_without_dynamo() -> bool:
    """Lets torch.optim's optimizers be made and zeroed without importing torch._dynamo, in a process that
    never compiles (a command; not the app). torch's wrapper keeps the function it would call in the
    wrapped function's ``__dynamo_disable`` slot, filled at the first call after importing torch._dynamo;
    filled beforehand with the plain function, the wrapper calls that. Returns whether it took effect:
    False when torch._dynamo is loaded already (nothing to save) or the methods are not wrapped that way
    (another torch: nothing changes, the import just happens)."""
    if "torch._dynamo" in sys.modules:
        return False
    from torch.optim import Optimizer

    plain = [getattr(getattr(Optimizer, name), "__wrapped__", None) for name in ("add_param_group", "zero_grad")]
    if any(function is None or getattr(function, "__code__", None) is None for function in plain):
        return False
    for function in plain:
        setattr(function, "__dynamo_disable", function)
    return True
