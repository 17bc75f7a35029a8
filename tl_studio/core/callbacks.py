"""Callbacks: everything that happens around the training loop besides the training itself.

Two kinds of hook, both no-ops here so a callback overrides only what it needs:

- observer hooks ``on_*(event)`` receive the engine's frozen events (console, CSV, events log, GUI);
- loop hooks ``before_*/after_*(trainer, ...)`` (fastai's ``_with_events`` style, see engine.py) let
  the built-in callbacks act on the run: judge the best epoch, stop early, write checkpoints and the
  model file. After-hooks run when a run is stopped or fails too.

A callback with state that a resumed run must continue (best epoch, early-stopping patience) returns it
from ``state_dict()``; the checkpoint keeps it under the callback's ``name`` and ``load_state_dict()``
restores it.
"""

from __future__ import annotations

import logging

from tl_studio.core import events

log = logging.getLogger(__name__)

OBSERVER_HOOKS = ("on_fit_start", "on_phase_start", "on_feature_progress", "on_batch_end", "on_epoch_end",
                  "on_sample_predictions", "on_image_skipped", "on_notice", "on_fit_end")
LOOP_HOOKS = ("before_fit", "after_fit", "before_phase", "after_phase", "before_epoch", "after_epoch")


class Callback:
    name = ""  # set by callbacks that have state to keep in the checkpoint

    # observer hooks
    def on_fit_start(self, event: events.FitStart) -> None: ...
    def on_phase_start(self, event: events.PhaseStart) -> None: ...
    def on_feature_progress(self, event: events.FeatureProgress) -> None: ...
    def on_batch_end(self, event: events.BatchEnd) -> None: ...
    def on_epoch_end(self, event: events.EpochEnd) -> None: ...
    def on_sample_predictions(self, event: events.SamplePredictions) -> None: ...
    def on_image_skipped(self, event: events.ImageSkipped) -> None: ...
    def on_notice(self, event: events.Notice) -> None: ...
    def on_fit_end(self, event: events.RunFinished) -> None: ...

    # loop hooks (``outcome`` of an after-hook: "completed", "stopped", "failed"...)
    def before_fit(self, trainer) -> None: ...
    def after_fit(self, trainer, outcome: str) -> None: ...
    def before_phase(self, trainer, phase) -> None: ...
    def after_phase(self, trainer, phase, outcome: str) -> None: ...
    def before_epoch(self, trainer, epoch: int) -> None: ...
    def after_epoch(self, trainer, event: events.EpochEnd) -> None: ...

    # resume
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class CallbackList(Callback):
    """Calls every callback in order. A failing observer must not kill the run, except in tests; a
    failing loop hook of a built-in callback (a checkpoint that cannot be written) does."""

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

    def call_loop_hook(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def state_dicts(self) -> dict:
        return {c.name: c.state_dict() for c in self.callbacks if c.name}

    def load_state_dicts(self, states: dict) -> None:
        for callback in self.callbacks:
            if callback.name and callback.name in states:
                callback.load_state_dict(states[callback.name])

    def find(self, kind):
        return next((c for c in self.callbacks if isinstance(c, kind)), None)

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
