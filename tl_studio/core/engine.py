"""The training engine: one loop, many observers (ARCHITECTURE.md §2).

``Trainer.fit()`` scans the data, builds the model, runs the planned phases epoch by epoch, writes
checkpoints after every epoch and ``model.pt2`` at the end, and reports everything through callbacks
with frozen event payloads. It knows nothing about who is watching (console, CSV, GUI).

Stop and pause come through a ``RunControl`` checked before every batch. Stopping unwinds through the
same ``finally`` as success, so the last checkpoint and model file are written and a ``RunFinished``
event always arrives.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from tl_studio.core import events
from tl_studio.core.callbacks import CallbackList
from tl_studio.core.config import TrainConfig
from tl_studio.core.control import RunControl, StopRequested
from tl_studio.core.errors import UserError
from tl_studio.core.run_state import RunState

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
MODEL_FILE = "model.pt2"


@dataclass(frozen=True)
class Phase:
    name: str  # "train", or "head" then "fine-tune" for the two-phase schedule
    first_epoch: int
    last_epoch: int
    freeze: str
    stage_lr_factor: float | None  # discriminative learning rates (fine-tune phase)


def plan_phases(config: TrainConfig) -> list[Phase]:
    if config.schedule == "fine-tune":
        k = config.freeze_epochs
        return [Phase("head", 1, k, "all", None),
                Phase("fine-tune", k + 1, config.epochs, config.freeze, config.stage_lr_factor)]
    return [Phase("train", 1, config.epochs, config.freeze, None)]


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path, callbacks=(), control: RunControl | None = None, *,
                 scan=None, mp_context=None, model_file_writer=None, strict_callbacks: bool = False):
        """``model_file_writer(run_dir, path) -> path`` replaces the in-process export of model.pt2
        (the GUI writes it in a child process, see gui/processes.py); ``mp_context`` is how loader
        worker processes start."""
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.callbacks = CallbackList(callbacks, strict=strict_callbacks)
        self.control = control or RunControl()
        self.scan = scan
        self.mp_context = mp_context
        self.model_file_writer = model_file_writer
        self.state: RunState | None = None
        self.error: BaseException | None = None  # the unexpected exception behind a "failed" run

    # ---- the run -------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> events.RunFinished:
        started = time.perf_counter()
        status, message = "failed", ""
        try:
            self.state = RunState.prepare(self, resume)
            self.config = self.state.config
            remaining = [p for p in plan_phases(self.config) if p.last_epoch > self.state.epoch] or \
                plan_phases(self.config)[-1:]
            self.callbacks.on_fit_start(self.state.fit_start_event(remaining[0]))
            status = self._run_phases()
        except StopRequested:
            status = "stopped"
        except UserError as error:
            message = str(error)
        except Exception as error:  # a bug or an environment failure: keep it for the log and the caller
            log.exception("training failed")
            self.error = error
            message = _describe_failure(error)
        finally:
            model_file, export_message = self._write_model_file()
            if export_message and status != "failed":
                status, message = "failed", export_message
            finished = self._finished(status, message, model_file, time.perf_counter() - started)
            self.callbacks.on_fit_end(finished)
        return finished

    def _run_phases(self) -> str:
        state = self.state
        for phase in plan_phases(self.config):
            if phase.last_epoch <= state.epoch:
                continue  # finished before a resume
            state.enter_phase(phase)
            for epoch in range(max(phase.first_epoch, state.epoch + 1), phase.last_epoch + 1):
                if state.run_epoch(epoch, phase):
                    return "early-stopped"
        return "completed"

    # ---- the end of a run ----------------------------------------------------------------------
    def _write_model_file(self) -> tuple[str | None, str]:
        """model.pt2 from the best epoch, when there is one; a failure is reported, not raised."""
        state = self.state
        if state is None or state.best_epoch is None:
            return None, ""
        try:
            if self.model_file_writer is not None:
                return str(self.model_file_writer(self.run_dir, self.run_dir / MODEL_FILE)), ""
            return str(state.export_best(self.run_dir / MODEL_FILE)), ""
        except UserError as error:
            return None, str(error)
        except Exception as error:
            log.exception("writing the model file failed")
            self.error = self.error or error
            return None, f"Training finished but the model file could not be written: {_describe_failure(error)}"

    def _finished(self, status: str, message: str, model_file, seconds: float) -> events.RunFinished:
        state = self.state
        best_acc = state.best_val_acc if state else None
        if not message and state is not None:
            message = _summary(status, state, model_file)
        return events.RunFinished(
            status=status, epochs_done=state.epoch if state else 0,
            best_epoch=state.best_epoch if state else None,
            best_val_acc=best_acc, model_file=model_file, seconds=seconds, message=message,
            skipped_images=tuple(state.skipped.values()) if state else ())


def _summary(status: str, state: RunState, model_file) -> str:
    if state.best_epoch is None:
        return "Stopped before the first epoch finished; nothing was saved." if status == "stopped" else ""
    text = f"Best val accuracy {state.best_val_acc:.3f} at epoch {state.best_epoch}"
    return text + (f"; model saved to {model_file}." if model_file else ".")


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return "The computer ran out of memory; lower the batch size or the image size."
    return f"{type(error).__name__}: {error}"


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    return max(1, math.ceil(num_images / batch_size))
