"""How the CLI shows a training run: a progress bar on stderr, or JSON Lines on stdout."""

from __future__ import annotations

import json
import math
import sys
import time

from tl_studio.core import events
from tl_studio.core.callbacks import Callback
from tl_studio.core.safe_text import for_terminal
from tl_studio.core.wording import counted, time_left


class ProgressBar(Callback):
    """One line redrawn in place (at most 10 times a second) and a summary line per epoch."""

    WIDTH = 24

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.epochs = 0
        self.epoch_seconds: list[float] = []
        self.last_draw = 0.0
        self.epoch_started = time.perf_counter()

    def _line(self, text: str, final: bool = False) -> None:
        end = "\n" if final else ""
        self.stream.write("\r\033[K" + text + end if self.stream.isatty() else (text + "\n" if final else ""))
        self.stream.flush()

    def on_fit_start(self, event: events.FitStart) -> None:
        self.epochs = event.epochs
        cache = ", features cached" if event.feature_cache else ""
        print(f"Training on {event.num_train} images, validating on {event.num_val}, {len(event.classes)} classes, "
              f"{event.device}; {event.trainable_params:,} of {event.total_params:,} parameters train{cache}.",
              file=self.stream)
        for note in event.notes:  # a note can name the user's files
            print(f"Note: {for_terminal(note)}", file=self.stream)
        # the epochs the time left is judged by: not one that computed the features (37 s, then 0.3 s
        # an epoch), nor another phase's
        self.epoch_seconds = [e.seconds for e in event.history if not e.feature_images_per_s]
        self.epoch_started = time.perf_counter()

    def on_phase_start(self, event: events.PhaseStart) -> None:
        if event.name != "train":  # a one-phase run's parameter counts are already in the "Training on" line
            print(event.description, file=self.stream)
        self.epoch_seconds = []  # a new phase trains at its own rate

    def on_feature_progress(self, event: events.FeatureProgress) -> None:
        if time.perf_counter() - self.last_draw > 0.1 or event.done == event.total:
            self.last_draw = time.perf_counter()
            left = event.seconds / event.done * (event.total - event.done) if event.done else math.inf
            rate = event.done / event.seconds if event.seconds > 0 else 0.0
            self._line(f"computing features {self._bar(event.done / max(1, event.total))} {event.done}/{event.total} "
                       f"{rate:.1f} img/s, time left {time_left(left)}")

    def on_batch_end(self, event: events.BatchEnd) -> None:
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and event.batch != event.num_batches:
            return
        self.last_draw = now
        if event.batch == 1:
            self.epoch_started = now
        self._line(f"epoch {event.epoch}/{self.epochs} {self._bar(event.batch / event.num_batches)} "
                   f"{event.batch}/{event.num_batches} loss {event.loss:.4f} lr {event.lr:.2e} "
                   f"{event.images_per_s:.1f} img/s, time left {time_left(self._time_left(event))}")

    def _time_left(self, event: events.BatchEnd) -> float:
        elapsed = time.perf_counter() - self.epoch_started
        this_epoch = elapsed / event.batch * (event.num_batches - event.batch)
        typical = sorted(self.epoch_seconds)[len(self.epoch_seconds) // 2] if self.epoch_seconds else \
            elapsed / event.batch * event.num_batches
        return this_epoch + typical * (self.epochs - event.epoch)

    def _bar(self, fraction: float) -> str:
        filled = int(round(self.WIDTH * min(1.0, fraction)))
        return "[" + "#" * filled + "." * (self.WIDTH - filled) + "]"

    def on_epoch_end(self, event: events.EpochEnd) -> None:
        if not event.feature_images_per_s:
            self.epoch_seconds.append(event.seconds)
        best = "  *best*" if event.is_best else ""
        skipped = f", {counted(event.skipped_images, 'image')} skipped" if event.skipped_images else ""
        features = f", features {event.feature_images_per_s:.1f} img/s" if event.feature_images_per_s else ""
        # the rate is the training pass's; the seconds are the whole epoch's, validation included: said so,
        # or "9.0 s, 72.2 img/s" for 245 images read as a sum that does not add up
        self._line(f"epoch {event.epoch}/{self.epochs}: train loss {event.train_loss:.4f} acc {event.train_acc:.3f} | "
                   f"val loss {event.val_loss:.4f} acc {event.val_acc:.3f} | {event.seconds:.1f} s (training "
                   f"{event.train_images_per_s:.1f} img/s{features}{event.gpu_memory_text()}){skipped}{best}",
                   final=True)

    def on_image_skipped(self, event: events.ImageSkipped) -> None:
        self._line(f"skipped {for_terminal(event.path)}: {event.reason}", final=True)

    def on_notice(self, event: events.Notice) -> None:
        self._line(event.message, final=True)


class JsonLines(Callback):
    """One JSON object per epoch on stdout, and a last one when the run ends."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def _emit(self, payload: dict) -> None:
        self.stream.write(json.dumps(payload) + "\n")
        self.stream.flush()

    def on_epoch_end(self, event: events.EpochEnd) -> None:
        self._emit({"event": "epoch", **event.to_row()})

    def on_fit_end(self, event: events.RunFinished) -> None:
        self._emit({"event": "done", "status": event.status, "best_val_acc": event.best_val_acc,
                    "best_epoch": event.best_epoch, "model_file": event.model_file, "seconds": event.seconds,
                    "message": event.message})


class StatusLine:
    """One line on a terminal's stderr, rewritten in place by each progress event (an event with
    ``text``); ``clear()`` removes it before the result is printed."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.shown = False

    def __call__(self, event) -> None:
        self.show(event.text)

    def show(self, text: str) -> None:
        # shown first: a Ctrl-C that arrives during the write (KeyboardInterrupt is raised between two
        # bytecodes, here right after flush) must still have clear() wipe the line before "interrupted"
        self.shown = True
        self.stream.write("\r\033[K" + text)
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def finish(self) -> None:
        """Leaves the line on screen and moves to the next one."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def run_with_status_line(command: str, work):
    """``work(progress)`` with a StatusLine on a terminal's stderr (no line when stderr is piped).
    Ctrl-C (or a cancel) prints "tl-studio COMMAND: interrupted" and returns None: exit 130."""
    from tl_studio.core.errors import Cancelled

    progress = StatusLine() if sys.stderr.isatty() else None
    try:
        return work(progress)
    except (KeyboardInterrupt, Cancelled):
        pass
    finally:
        if progress:
            progress.clear()
    print(f"tl-studio {command}: interrupted", file=sys.stderr)
    return None


def print_wrapped(sentence: str, width: int = 100) -> None:
    """A long sentence that may name the user's files (what the dataset scan found), on lines of ``width``:
    shown as written on a terminal, and never broken at a hyphen (`tl-studio scan` stays whole)."""
    import textwrap

    print(textwrap.fill(for_terminal(sentence), width=width, break_on_hyphens=False))
