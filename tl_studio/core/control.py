"""RunControl: stop and pause a long run from another thread (the GUI, a signal handler).

The training loop calls ``checkpoint()`` at every batch. Stopping raises ``StopRequested`` inside the
loop, which unwinds through the callbacks' after-hooks, so the last checkpoint is written and a
"stopped" RunFinished event always arrives. Pausing blocks the loop between batches. ``clock()`` stands
still meanwhile: epoch times and images per second count the time the run ran, not the time it waited
for the user (a 15 s pause read as a 30 s epoch, and its images/s halved).
"""

from __future__ import annotations

import threading
import time


class StopRequested(Exception):
    """Raised inside the loop when a stop was requested; the engine turns it into status "stopped"."""


class RunControl:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._paused_seconds = 0.0  # the loop's time held by pauses, so far; the loop's thread alone adds to it

    # called from any thread
    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused loop must wake up to notice the stop

    def pause(self) -> None:
        if not self._stop.is_set():
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # called from the loop
    def checkpoint(self) -> None:
        """Blocks while paused; raises StopRequested once a stop was requested."""
        if not self._running.is_set():
            began = time.perf_counter()
            self._running.wait()
            self.held_by_pause(time.perf_counter() - began)
        if self._stop.is_set():
            raise StopRequested()

    def held_by_pause(self, seconds: float) -> None:
        """The loop waited ``seconds`` for a pause to end somewhere other than ``checkpoint`` (the
        processes of a distributed run wait for the first one's word)."""
        self._paused_seconds += seconds

    def clock(self) -> float:
        """``time.perf_counter()`` less the time the loop was held by pauses: what the loop's timings read."""
        return time.perf_counter() - self._paused_seconds

    def is_cancelled(self) -> bool:
        """For scan/download style ``cancel`` callbacks."""
        return self._stop.is_set()


class FolderRequests:
    """Applies the stop/pause/continue requests written to a run folder (``RunFolder.request``) to a
    RunControl, from a background thread: how a run in other processes (started by torchrun) is
    stopped or paused by the launcher or the window. Requests made before it started are ignored."""

    POLL_SECONDS = 0.2

    def __init__(self, folder, control: RunControl):
        import time

        self.folder, self.control = folder, control
        self.since = time.time()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="run-folder-requests", daemon=True)

    def start(self) -> "FolderRequests":
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()

    def _follow(self) -> None:
        applied = None
        while not self._done.wait(self.POLL_SECONDS):
            request = self.folder.requested(self.since)
            if request == applied:
                continue
            applied = request
            if request == "stop":
                self.control.request_stop()
            elif request == "pause":
                self.control.pause()
            elif request == "continue":
                self.control.resume()
