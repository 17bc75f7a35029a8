"""The Train step's progress bar: batches done over the whole run, images/s and time left (time spent
paused left out), the feature pass's own progress, and what the bar says while a run stops or saves."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QProgressBar

from tl_studio.core.wording import time_left


PAUSED_TEXT = "Paused · press Continue to go on"


class RunProgress:
    """Progress bar maths: overall batches done, throughput and time left."""

    def __init__(self, bar: QProgressBar):
        self.bar = bar
        self.epochs = 1
        self.batches = 1
        self.done_at_start = 0
        now = time.monotonic()
        self._features = (now, 0, 0)  # (when this pass began, images done then, images done now)
        # (when, batches done then) that the time left is measured from: reset by a feature pass or a new
        # phase, whose batches run at another rate (a cached-feature run's epoch 5 of 19 said 00:57
        # left from epoch 1's 37 s of features; the other 14 epochs took 3 s)
        self._rate_origin: tuple[float, int] | None = (now, 0)
        self.stopping = False  # Stop was pressed: the bar says so until the run has ended
        self._paused_at: float | None = None
        self._before_pause = ""  # the bar's text when Pause was pressed, shown again on Resume

    def paused(self, paused: bool) -> None:
        """Time spent paused is not training time: leave it out of the rate, or time left would grow
        with every minute the run waited for the user."""
        now = time.monotonic()
        if paused:
            self._paused_at = self._paused_at or now
            if not self.stopping:  # the last batch's rate and time left stood as if it ran on
                self._before_pause = self.bar.format()
                self.bar.setFormat(PAUSED_TEXT)
        elif self._paused_at is not None:
            if not self.stopping and self.bar.format() == PAUSED_TEXT:
                self.bar.setFormat(self._before_pause)
            gap, self._paused_at = now - self._paused_at, None
            if self._rate_origin is not None:
                self._rate_origin = (self._rate_origin[0] + gap, self._rate_origin[1])
            began, done_then, done_last = self._features
            self._features = (began + gap, done_then, done_last)

    def start(self, event) -> None:
        self.epochs, self.batches = event.epochs, event.batches_per_epoch
        self.done_at_start = (event.start_epoch - 1) * self.batches
        now = time.monotonic()
        self._features = (now, 0, 0)
        self._rate_origin = (now, self.done_at_start)
        self.stopping = False
        self._paused_at = None
        self.bar.setRange(0, self.epochs * self.batches)
        self.bar.setValue(self.done_at_start)
        self.bar.setFormat(f"Starting epoch {event.start_epoch} of {self.epochs}...")

    def batch(self, event) -> None:
        done = (event.epoch - 1) * event.num_batches + event.batch
        if done <= self.done_at_start:  # a resumed run's earlier curve, replayed: not this start's progress
            return
        self.batches = event.num_batches
        self.bar.setRange(0, self.epochs * self.batches)
        self.bar.setValue(done)
        if self._paused_at is not None:  # the batch in flight when Pause was pressed: the bar keeps "Paused"
            return
        now = time.monotonic()
        if self._rate_origin is None:  # the first batch after a feature pass or at a phase's start
            self._rate_origin = (now, done)
        since, done_then = self._rate_origin
        rate = (done - done_then) / (now - since) if now > since and done > done_then else 0
        left = (self.bar.maximum() - done) / rate if rate > 0 else float("nan")
        if self.stopping:
            return
        if done >= self.bar.maximum():  # the batches are done, not the run: "0:00 left" stood for seconds
            self.bar.setFormat(f"Epoch {event.epoch}/{self.epochs} · validating…")
        else:
            self.bar.setFormat(f"Epoch {event.epoch}/{self.epochs} · batch {event.batch}/{event.num_batches} · "
                               f"{event.images_per_s:.0f} img/s · {time_left(left)} left")

    def phase_started(self) -> None:
        """A new phase (the two-phase schedule's fine-tuning after the head) trains at its own rate."""
        self._rate_origin = None

    def epoch_ended(self, event) -> None:
        """After the last epoch the run still writes its model file and checks it (10-40 s on a CPU):
        say so, not a full bar at "0:00 left"."""
        if not self.stopping and event.epoch >= self.epochs:
            self.bar.setFormat("Saving the best epoch as the run's model file and checking it…")

    def stop_requested(self, epoch_finished: bool) -> str:
        """After Stop the run still finishes its batch and then saves the best epoch as a model file,
        which can take a minute on a CPU: say so instead of leaving the last batch's time left standing.
        Before its first epoch has finished there is nothing to save: said too."""
        self.stopping = True
        # the bar holds one line (at 1000 x 620 the long sentence wrapped and was clipped): the status
        # line gets the whole of it
        if epoch_finished:
            self.bar.setFormat("Stopping: saving the best epoch so far…")
            return "Stopping after the current batch, then saving the best epoch so far (this can take a minute)…"
        self.bar.setFormat("Stopping: nothing of this run is kept yet")
        return "Stopping after the current batch; no epoch has finished yet, so nothing of this run is kept."

    def features(self, event) -> str:
        """Feature extraction (frozen backbone) can take minutes before the first epoch: its own
        progress, rate and time left. Returns the text, for the status line too."""
        now = time.monotonic()
        began, done_then, done_last = self._features
        self._rate_origin = None  # the batches after it run at their own rate
        if event.done < done_last:  # a new pass (the validation images after the training images)
            began, done_then = now, 0
        self._features = (began, done_then, event.done)
        elapsed = now - began
        rate = (event.done - done_then) / elapsed if elapsed > 0 and event.done > done_then else 0.0
        left = (event.total - event.done) / rate if rate > 0 else float("nan")
        self.bar.setRange(0, max(1, event.total))
        self.bar.setValue(event.done)
        text = (f"Computing features once (frozen backbone): {event.done}/{event.total} images · "
                f"{rate:.0f} img/s · {time_left(left)} left")
        if self.stopping:
            return self.bar.format()
        self.bar.setFormat(text)
        return text

    def finish(self, completed: bool) -> None:
        if self.bar.maximum() == 0:
            # still the busy bar of "Starting…": a run that failed in its set-up kept it moving beside
            # "Failed" (a busy bar shows no text at all on some styles)
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
        if completed:
            self.bar.setValue(self.bar.maximum())
