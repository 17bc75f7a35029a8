"""Observers of a training run. Each hook is a typed no-op; a callback overrides what it needs.

The console progress bar, the CSV writer, the checkpoint saver and the GUI bridge are peers: the
engine calls them all in order and knows nothing about any of them.
"""

from __future__ import annotations

import logging

from tl_studio.core import events

log = logging.getLogger(__name__)


class Callback:
    def on_fit_start(self, event: events.FitStart) -> None: ...
    def on_phase_start(self, event: events.PhaseStart) -> None: ...
    def on_feature_progress(self, event: events.FeatureProgress) -> None: ...
    def on_batch_end(self, event: events.BatchEnd) -> None: ...
    def on_epoch_end(self, event: events.EpochEnd) -> None: ...
    def on_sample_predictions(self, event: events.SamplePredictions) -> None: ...
    def on_image_skipped(self, event: events.ImageSkipped) -> None: ...
    def on_notice(self, event: events.Notice) -> None: ...
    def on_fit_end(self, event: events.RunFinished) -> None: ...


class CallbackList(Callback):
    """Calls every callback in order. A failing observer must not kill the run, except in tests."""

    def __init__(self, callbacks=(), *, strict: bool = False):
        self.callbacks = list(callbacks)
        self.strict = strict

    def _call(self, hook: str, event) -> None:
        for callback in self.callbacks:
            try:
                getattr(callback, hook)(event)
            except Exception:
                if self.strict:
                    raise
                log.exception("callback %s.%s failed", type(callback).__name__, hook)

    def on_fit_start(self, event): self._call("on_fit_start", event)
    def on_phase_start(self, event): self._call("on_phase_start", event)
    def on_feature_progress(self, event): self._call("on_feature_progress", event)
    def on_batch_end(self, event): self._call("on_batch_end", event)
    def on_epoch_end(self, event): self._call("on_epoch_end", event)
    def on_sample_predictions(self, event): self._call("on_sample_predictions", event)
    def on_image_skipped(self, event): self._call("on_image_skipped", event)
    def on_notice(self, event): self._call("on_notice", event)
    def on_fit_end(self, event): self._call("on_fit_end", event)


class Recorder(Callback):
    """Keeps every event it sees, in order. Handy for tests and for scripted use."""

    def __init__(self):
        self.events: list = []

    def _keep(self, event) -> None:
        self.events.append(event)

    on_fit_start = on_phase_start = on_feature_progress = on_batch_end = _keep
    on_epoch_end = on_sample_predictions = on_image_skipped = on_notice = on_fit_end = _keep

    def of_type(self, kind) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class MetricsCsvWriter(Callback):
    """Writes ``metrics.csv``: one row per epoch, epochs numbered from 1. The whole file is rewritten
    atomically each epoch, so a resumed run continues it and a crash never leaves half a row."""

    HEADER = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "train_images_per_s")

    def __init__(self, path):
        from pathlib import Path

        self.path = Path(path)
        self.rows: list[dict] = []

    def on_fit_start(self, event: events.FitStart) -> None:
        self.rows = [e.to_row() for e in event.history]

    def on_epoch_end(self, event: events.EpochEnd) -> None:
        self.rows.append(event.to_row())
        self._write()

    def _write(self) -> None:
        from tl_studio.core.fileio import atomic_write_text

        lines = [",".join(self.HEADER)]
        for row in self.rows:
            lines.append(",".join(_csv_value(row[key]) for key in self.HEADER))
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def _csv_value(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"
