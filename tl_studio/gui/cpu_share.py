"""Sharing the CPU between background torch work and the window (ARCHITECTURE.md §3)."""

from __future__ import annotations

import os


def leave_a_core_for_the_window() -> None:
    """On the CPU torch would take every core; one fewer keeps the window responsive. Process-wide,
    as the training worker does; call it from the background task, which imports torch anyway."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
