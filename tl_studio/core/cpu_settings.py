"""Process-wide settings for commands that run a model over many batches on the CPU (``predict``,
``evaluate``): they exit when done, so what suits batches suits the whole process. Not for the app.

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
  0.04 s once freed memory is kept for the next batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
