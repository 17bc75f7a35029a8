"""The C allocator's habits, for commands that run a model over many batches on the CPU.

glibc gives a freed block back to the system at once when it was larger than its mmap threshold (at most
32 MiB by its own adjustment) or sat at the top of the heap above the trim threshold; the next batch then
asks for the same memory again and the kernel faults in and zeroes every page of it. A batch of 32
through efficientnet_lite0 at 224 px allocates activations of 50-150 MB: measured on a 2-core VM,
290,000 page faults and 0.44 s of system time per batch (0.9 s of user time), against 24,000 faults and
0.04 s once freed memory is kept for the next batch. ``keep_freed_memory`` sets that, for the whole
process: call it from a command that exits when done (``predict``, ``evaluate``), not from the app.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB of free heap is kept
_TOP_PAD_BYTES = 256 << 20  # the heap grows in steps of 256 MiB rather than page by page


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
