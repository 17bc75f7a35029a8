"""A progress line for the commands that work through many images (``predict``, ``evaluate``):
``Classifying: 640/2000 images, 85.3 img/s, time left 00:16`` on stderr, redrawn in place at most
ten times a second. Only on a terminal: a redirected stderr gets nothing, so logs stay clean."""

from __future__ import annotations

import math
import sys
import time


def clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class ProgressLine:
    INTERVAL_S = 0.1

    def __init__(self, verb: str, total: int, stream=None):
        self.verb = verb
        self.total = total
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.last_draw = -math.inf
        self.shown = False

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.shown and now - self.last_draw < self.INTERVAL_S and done != self.total:
            return
        self.last_draw = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else math.inf
        self.stream.write(f"\r\033[K{self.verb}: {done}/{self.total} images, {rate:.1f} img/s, "
                          f"time left {clock(left)}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erases the line, so that other output on the same terminal starts on a clean line."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def finish(self) -> None:
        """Leaves the last figures on screen and moves to the next line."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def progress_for(verb: str, total: int, enabled: bool) -> ProgressLine | None:
    """A progress line when ``enabled`` and stderr is a terminal; else None."""
    return ProgressLine(verb, total) if enabled and sys.stderr.isatty() else None
