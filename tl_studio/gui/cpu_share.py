"""Sharing the CPU between background torch work and the window (ARCHITECTURE.md §3).

Where the kernel lets one thread lower its own priority (Linux: the nice value is a thread's own), a
background task's thread does so and torch gets every core: the kernel runs the window's thread first
whenever it has work, and the task takes all the rest. The OpenMP threads torch starts for that thread
inherit its priority, and so do the processes it starts. Measured on the 2-core machine, a default first
run in the window (frozen efficientnet_lite0, empty feature cache, 2 epochs): 15.8-16.1 s with one core
left to the window, 12.6-12.8 s with both cores at nice 10; the 10 ms event-loop probe's p99 13 ms in
both, worst gap 34-35 ms and 38-53 ms. Elsewhere torch gets every core but one, left to the window.
"""

from __future__ import annotations

import os
import re
import sys
import threading

BACKGROUND_NICE = 10  # a nice-0 thread gets about nine times the CPU of a nice-10 one when both want it


def lowers_background_priority() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "setpriority")


def work_threads() -> int:
    """Threads torch gets for work started from the window (the training worker sets the same number)."""
    cores = os.cpu_count() or 2
    return cores if lowers_background_priority() else max(1, cores - 1)


def share_the_cpu_with_the_window() -> None:
    """Called by a background task in its own thread, before its torch work: lowers the thread's
    priority where that is possible and gives torch work_threads() threads (process-wide, as torch has
    one number). Never lowers the window's own thread."""
    import torch

    if lowers_background_priority() and threading.current_thread() is not threading.main_thread():
        try:
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            if current < BACKGROUND_NICE:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except OSError:  # a sandbox that refuses it: the thread keeps its priority
            pass
    torch.set_num_threads(work_threads())


def explain_cpu(description: str, short: bool = False) -> str:
    """A device description as the window's runs will use it: "CPU (2 threads)", measured before the
    window's share was settled, becomes "CPU (2 threads; the window keeps priority)" where background
    work runs at a lower priority, else "CPU (1 of 2 cores; one is left to keep the window
    responsive)"; the short forms (a combo box) leave out the reason. Other devices are unchanged."""
    if not description.startswith("CPU"):
        return re.sub(r"CPU \(\d+ threads?\)", lambda m: explain_cpu(m.group(0), short), description)
    threads, cores = work_threads(), os.cpu_count() or 2
    if threads >= cores:
        why = "" if short or not lowers_background_priority() else "; the window keeps priority"
        return f"CPU ({threads} thread{'s' if threads != 1 else ''}{why})"
    why = "" if short else f"; {'one is' if cores - threads == 1 else f'{cores - threads} are'} left to keep " \
                           f"the window responsive"
    return f"CPU ({threads} of {cores} cores{why})"
