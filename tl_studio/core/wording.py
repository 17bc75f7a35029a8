"""Counts in the sentences the app shows: "1 image", "2 images" (a confusion-matrix cell, a single
dropped photo and a one-image folder are everyday cases, not edge ones); and times left, the same in
the window and on the command line."""

from __future__ import annotations

import math

# a run stopped during its first epoch (the command, the window, status.json): its folder stays, with its
# settings and log, so "nothing was saved" was not true
STOPPED_IN_FIRST_EPOCH = "Stopped before the first epoch finished: there is no epoch to keep, resume or export."


def counted(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def clock(seconds: float) -> str:
    """mm:ss, or h:mm:ss from an hour; --:-- when unknown."""
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


def time_left(seconds: float) -> str:
    """``clock`` rounded up: 0.7 s still to go is "00:01" left, not "00:00" while the work goes on."""
    return clock(math.ceil(seconds) if math.isfinite(seconds) else seconds)


# Sizes are in SI units everywhere in the app, as macOS and most Linux file managers show them: a
# 46,830,571-byte file is "46.8 MB" in the window, on the command line and in the file manager.
MB = 10**6


def megabytes(n_bytes: float, digits: int = 1) -> str:
    return f"{n_bytes / MB:.{digits}f} MB"
