"""Sharing the CPU between background torch work and the window (ARCHITECTURE.md §3)."""

from __future__ import annotations

import os
import re


def work_threads() -> int:
    """Threads torch gets for work started from the window: every core but one, which is left to the
    window so it keeps repainting (the training worker sets the same number)."""
    return max(1, (os.cpu_count() or 2) - 1)


def leave_a_core_for_the_window() -> None:
    """On the CPU torch would take every core; one fewer keeps the window responsive. Process-wide,
    as the training worker does; call it from the background task, which imports torch anyway."""
    import torch

    torch.set_num_threads(work_threads())


def explain_cpu(description: str, short: bool = False) -> str:
    """A device description as the window's runs will use it: "CPU (2 threads)", measured before the
    window took its core, becomes "CPU (1 of 2 cores; one is left to keep the window responsive)",
    or "CPU (1 of 2 cores)" when ``short`` (a combo box). Other devices are unchanged."""
    if not description.startswith("CPU"):
        return re.sub(r"CPU \(\d+ threads?\)", lambda m: explain_cpu(m.group(0), short), description)
    threads, cores = work_threads(), os.cpu_count() or 2
    if threads >= cores:
        return f"CPU ({threads} thread{'s' if threads != 1 else ''})"
    why = "" if short else f"; {'one is' if cores - threads == 1 else f'{cores - threads} are'} left to keep " \
                           f"the window responsive"
    return f"CPU ({threads} of {cores} cores{why})"
