"""Reading run folders off the GUI thread, and following the ones that are still training.

``RunLoader`` lists and summarises every run under some roots on a thread pool of its own and hands
the summaries to the GUI thread (queued signals), so the window never waits for a disk. It does not
import torch (the project's TaskRunner loads the libraries first, which a listing does not need).

Rows are handed over at most every BATCH_SECONDS, not one batch per few folders: the reading thread
holds Python's GIL most of the time, and a table repainting meanwhile calls into Python for every
cell, waiting for the GIL at each call (measured: 300 runs in small batches stalled the window for
0.6 s; handed over at the end, the reading takes 0.25 s with the window free).

``LiveRuns`` re-reads a running run only when one of the files the engine appends to has changed
(size or modification time): a timer tick costs a few ``stat`` calls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from tl_studio.core import run_folder as names
from tl_studio.core.run_history import discover_runs, summarize_run

log = logging.getLogger(__name__)

BATCH_SECONDS = 1.0
PROGRESS_EVERY = 50  # runs read between two "N runs read" updates


class _Signals(QObject):
    batch = Signal(int, list)  # generation, [RunSummary]
    progress = Signal(int, int)  # generation, runs read so far
    done = Signal(int, int)  # generation, number of runs


class _ListJob(QRunnable):
    def __init__(self, generation: int, roots: list[str], signals: _Signals, cancelled: threading.Event):
        super().__init__()
        self.generation, self.roots, self.signals, self.cancelled = generation, roots, signals, cancelled

    def run(self) -> None:
        count, batch = 0, []
        last_batch = time.monotonic()
        try:
            for path in discover_runs(self.roots):
                if self.cancelled.is_set():
                    return
                try:
                    batch.append(summarize_run(path))
                except OSError:
                    continue  # a folder removed while being read
                count += 1
                if count % PROGRESS_EVERY == 0:
                    self.signals.progress.emit(self.generation, count)
                if time.monotonic() - last_batch >= BATCH_SECONDS:
                    self.signals.batch.emit(self.generation, batch)
                    batch, last_batch = [], time.monotonic()
            if batch:
                self.signals.batch.emit(self.generation, batch)
        except Exception:  # never let a worker thread die silently: the table would wait forever
            log.exception("listing runs failed")
        finally:
            self.signals.done.emit(self.generation, count)


class RunLoader(QObject):
    """``load(roots)`` starts a fresh listing; results of an older listing are dropped."""

    runsRead = Signal(list)  # [RunSummary], in the GUI thread
    progress = Signal(int)  # runs read so far
    finished = Signal(int)  # how many runs the listing found

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._signals = _Signals(self)
        self._signals.batch.connect(self._on_batch)
        self._signals.done.connect(self._on_done)
        self._signals.progress.connect(lambda generation, count: self.progress.emit(count)
                                       if generation == self._generation else None)
        self._generation = 0
        self._cancelled = threading.Event()
        self.loading = False

    def load(self, roots) -> None:
        self._cancelled.set()  # an older listing still running stops at its next folder
        self._cancelled = threading.Event()
        self._generation += 1
        self.loading = True
        self.pool.start(_ListJob(self._generation, [str(r) for r in roots], self._signals, self._cancelled))

    def _on_batch(self, generation: int, runs: list) -> None:
        if generation == self._generation:
            self.runsRead.emit(runs)

    def _on_done(self, generation: int, count: int) -> None:
        if generation == self._generation:
            self.loading = False
            self.finished.emit(count)

    def shutdown(self) -> None:
        self._cancelled.set()
        self.pool.waitForDone()


def _fingerprint(paths) -> tuple:
    found = []
    for path in paths:
        try:
            info = os.stat(path)
            found.append((info.st_size, info.st_mtime_ns))
        except OSError:
            found.append(None)
    return tuple(found)


class LiveRuns(QObject):
    """Follows running runs: ``changed`` with a fresh summary when one's files moved on, and
    ``rootsChanged`` when a run folder may have appeared (a root's listing changed)."""

    changed = Signal(object)  # RunSummary
    rootsChanged = Signal()
    WATCHED = (names.STATUS, names.METRICS, names.EVENTS)

    def __init__(self, interval_ms: int = 1500, parent=None):
        super().__init__(parent)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self._runs: dict[str, tuple] = {}
        self._roots: dict[str, tuple] = {}

    def follow(self, runs) -> None:
        """The runs to watch (the running ones); others are forgotten."""
        wanted = {run.path for run in runs if run.status == "running"}
        self._runs = {path: self._runs.get(path) or self._files_of(path) for path in wanted}

    def watch_roots(self, roots) -> None:
        self._roots = {str(root): _fingerprint([root]) for root in roots}

    def _files_of(self, path: str) -> tuple:
        return _fingerprint([Path(path) / name for name in self.WATCHED])

    def check(self) -> None:
        for path, before in list(self._runs.items()):
            now = self._files_of(path)
            if now == before:
                continue
            self._runs[path] = now
            try:
                summary = summarize_run(path)
            except OSError:
                continue
            if summary.status != "running":
                del self._runs[path]
            self.changed.emit(summary)
        roots_now = {root: _fingerprint([root]) for root in self._roots}
        if roots_now != self._roots:
            self._roots = roots_now
            self.rootsChanged.emit()
