"""A progress line for the commands that work through many images (``predict``, ``evaluate``):
``Classifying: 640/2000 images, 85.3 img/s, time left 00:16`` on stderr, redrawn in place at most
ten times a second. Only on a terminal: a redirected stderr gets nothing, so logs stay clean."""

from __future__ import annotations

import math
import sys
import time

from tl_studio.cli.reporters import StatusLine
from tl_studio.core.wording import time_left


class ProgressLine:
    INTERVAL_S = 0.1

    def __init__(self, verb: str, total: int, stream=None):
        self.verb = verb
        self.total = total
        self.line = StatusLine(stream or sys.stderr)
        self.started = time.perf_counter()
        self.last_draw = -math.inf

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.line.shown and now - self.last_draw < self.INTERVAL_S and done != self.total:
            return
        self.last_draw = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else math.inf
        self.line.show(f"{self.verb}: {done}/{self.total} images, {rate:.1f} img/s, time left {time_left(left)}")

    def clear(self) -> None:
        """Erases the line, so that other output on the same terminal starts on a clean line."""
        self.line.clear()

    def finish(self) -> None:
        """Leaves the last figures on screen and moves to the next line."""
        self.line.finish()


def progress_for(verb: str, total: int, enabled: bool) -> ProgressLine | None:
    """A progress line when ``enabled`` and stderr is a terminal; else None."""
    return ProgressLine(verb, total) if enabled and sys.stderr.isatty() else None
