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


def explain_cpu(description: str) -> str:
    """A device description as the window's runs will use it: "CPU (2 threads)" measured before the
    window took its core becomes "CPU (1 thread; 1 core left to the window)". Other devices unchanged."""
    if not description.startswith("CPU"):
        return re.sub(r"CPU \(\d+ threads?\)", lambda m: explain_cpu(m.group(0)), description)
    threads = work_threads()
    spare = (os.cpu_count() or 2) - threads
    left = f"; {spare} core left to the window" if spare > 0 else ""
    return f"CPU ({threads} thread{'s' if threads != 1 else ''}{left})"
