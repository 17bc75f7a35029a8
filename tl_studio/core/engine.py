"""The training engine: one loop, many callbacks (ARCHITECTURE.md §2).

    fit -> phase -> epoch -> batch

``fit`` and each phase run inside ``_with_events`` (fastai's pattern): the callbacks' before-hook, the
body, then the after-hook, which runs however the body ends (completed, stopped, failed), with that
outcome. An epoch's after-hook (``after_epoch(trainer, event)``) runs when the epoch finished, since
only then are there results to judge and save. Batches report through ``on_batch_end`` and give stop
and pause their chance (RunControl) before each batch.

Judging epochs (epoch_rules.py) and everything written to the run folder (run_writers.py) are built-in
callbacks; the Trainer holds the folder's lock while it writes. Stopping unwinds through the same
after-hooks as success, so the model file is written and a ``RunFinished`` event always arrives.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from tl_studio.core import events
from tl_studio.core.callbacks import CallbackList
from tl_studio.core.config import Phase, TrainConfig, plan_phases
from tl_studio.core.control import RunControl, StopRequested
from tl_studio.core.data import scan_for
from tl_studio.core.epoch_rules import BestEpoch, EarlyStopping
from tl_studio.core.errors import UserError
from tl_studio.core.fileio import check_writable_folder
from tl_studio.core.loader_notice import SharedMemoryNotice
from tl_studio.core.run_folder import RunFolder, export_later_clause
from tl_studio.core.run_state import RunState
from tl_studio.core.run_writers import run_folder_writers
from tl_studio.core.wording import STOPPED_IN_FIRST_EPOCH

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path, callbacks=(), control: RunControl | None = None, *,
                 scan=None, mp_context=None, model_file_writer=None, strict_callbacks: bool = False,
                 strategy=None):
        """``model_file_writer(run_dir, path, validation) -> path`` replaces the in-process export of
        the model file (the GUI writes it in a child process, see gui/processes.py; ``validation`` is
        (logits, labels) of the best epoch on the val split for its calibration, or None when this
        process did not keep them); ``mp_context`` is how loader worker processes start; ``strategy``
        where the work runs (core/strategy.py: one process, or this one of several started by torchrun,
        of which only rank 0 writes the run folder)."""
        from tl_studio.core.strategy import SingleProcess

        if scan is not None:
            # The run is validated on this scan's split (the window's Data step sets it): recorded as the
            # run's own settings, or a resume, the model file's calibration and `evaluate` would split the
            # folder with other ones and count training images as validation.
            config = config.replace(val_fraction=scan.val_fraction, test_fraction=scan.test_fraction, seed=scan.seed)
        self.config = config.validate()
        self.folder = RunFolder(run_dir)
        self.run_dir = self.folder.path
        self.user_callbacks = list(callbacks)
        self.strict_callbacks = strict_callbacks
        self.callbacks = CallbackList(self.user_callbacks, strict=strict_callbacks)
        self.control = control or RunControl()
        self.scan = scan
        self.mp_context = mp_context
        self.model_file_writer = model_file_writer
        self.strategy = strategy or SingleProcess()
        self.state: RunState | None = None
        self.best = BestEpoch()
        self.stop_early = ""  # EarlyStopping's sentence, said after the epoch that ends the run
        self.model_file: str | None = None
        self.model_file_error = ""
        self.error: BaseException | None = None  # the unexpected exception behind a "failed" run

    # ---- the run -------------------------------------------------------------------------------
    def fit(self, resume: bool = False, overwrite: bool = False) -> events.RunFinished:
        started = time.perf_counter()
        outcome, message, lock = "failed", "", None
        try:
            writer = self.strategy.is_writer
            if writer:
                self.folder.check_new_run(resume=resume, overwrite=overwrite)  # before anything is written
            scan = self.scan or scan_for(self.config)
            if writer:
                check_writable_folder(self.run_dir)
                lock = self.folder.lock()
                self.folder.start_run(resume=resume, overwrite=overwrite)
            self._attach_builtin_callbacks()
            payload = _checkpoint_to_resume(self.folder) if resume else None
            if payload is not None:
                self.callbacks.load_state_dicts(_callback_states(payload))
            self.state = RunState.prepare(self.config, scan, payload, self.callbacks, self.control, self.mp_context,
                                          self.strategy)
            self.config = self.state.config  # with what "auto" settings resolved to (the loader workers)
            outcome = self._with_events("fit", self._fit)
        except StopRequested:
            outcome = "stopped"
        except KeyboardInterrupt:  # a second Ctrl-C: end now, without the model file
            outcome = "aborted"
        except UserError as error:
            message = str(error)
        except Exception as error:  # a bug or an environment failure: keep it for the log and the caller
            if (reason := self.folder.unwritable_reason(error)) is not None:
                message = reason  # the run folder moved away or made read-only mid-run: the user's doing
            else:
                log.exception("training failed")
                self.error = error
                message = _describe_failure(error)
        finally:
            if self.model_file_error and outcome != "failed":
                outcome, message = "failed", self.model_file_error
            finished = self._finished(outcome, message, time.perf_counter() - started)
            self.callbacks.on_fit_end(finished)
            if self.state is not None:
                self.state.data.close()
            if lock is not None:
                lock.release()
        return finished

    def _attach_builtin_callbacks(self) -> None:
        """Called once the folder's lock is held: only the process that holds it writes the folder. The
        judges of epochs run in every process (on the same reduced numbers: the same decisions)."""
        writers = run_folder_writers(self.folder, self.model_file_writer) if self.strategy.is_writer else []
        builtin = [self.best, EarlyStopping(self.config.early_stopping_patience), SharedMemoryNotice(), *writers]
        self.callbacks = CallbackList([*builtin, *self.user_callbacks], strict=self.strict_callbacks)

    def _with_events(self, name: str, body, *args) -> str:
        self.callbacks.call_loop_hook(f"before_{name}", self, *args)
        outcome = "failed"
        try:
            outcome = body(*args)
        except StopRequested:
            outcome = "stopped"
            raise
        except KeyboardInterrupt:
            outcome = "aborted"
            raise
        finally:
            self.callbacks.call_loop_hook(f"after_{name}", self, *args, outcome)
        return outcome

    def _fit(self) -> str:
        state = self.state
        phases = plan_phases(self.config)
        remaining = [p for p in phases if p.last_epoch > state.epoch] or phases[-1:]
        start = state.fit_start_event(self.run_dir, remaining[0])
        if state.epoch:  # a resume: read before this start is logged
            start = dataclasses.replace(start, notes=(*start.notes, *_changed_data(self.folder, start)))
        self.callbacks.on_fit_start(start)
        for phase in phases:
            if phase.last_epoch > state.epoch:  # else finished before a resume
                if self._with_events("phase", self._phase, phase) == "early-stopped":
                    return "early-stopped"
        return "completed"

    def _phase(self, phase: Phase) -> str:
        state = self.state
        self.callbacks.on_phase_start(state.enter_phase(phase))
        for epoch in range(max(phase.first_epoch, state.epoch + 1), phase.last_epoch + 1):
            self._epoch(epoch)
            if self.stop_early:
                self.callbacks.on_notice(events.Notice(self.stop_early))
                return "early-stopped"
        return "completed"

    def _epoch(self, epoch: int) -> None:
        from tl_studio.core.device import peak_memory_mb, reset_peak_memory

        state = self.state
        self.callbacks.call_loop_hook("before_epoch", self, epoch)
        reset_peak_memory(state.device)
        clock = self.control.clock  # stands still while paused: the epoch's time is the time it ran
        started = clock()
        result = state.run_epoch(epoch)
        train, val = result.train, result.val
        event = events.EpochEnd(
            epoch=epoch, train_loss=train.loss, train_acc=train.accuracy, val_loss=val.loss, val_acc=val.accuracy,
            lr=state.policy.current_lr, seconds=clock() - started,
            train_images_per_s=result.train_images / max(result.train_seconds, 1e-9),
            is_best=self.best.judge(epoch, val.accuracy, val.loss), skipped_images=result.skipped_images,
            peak_memory_mb=peak_memory_mb(state.device), phase=state.phase.name,
            feature_images_per_s=result.feature_images_per_s)
        state.finish_epoch(event)
        self.callbacks.call_loop_hook("after_epoch", self, event)  # early stopping, then checkpoints
        self.callbacks.on_epoch_end(event)
        self.callbacks.on_sample_predictions(state.data.sample_predictions(epoch, val.probabilities))

    # ---- the end of a run ----------------------------------------------------------------------
    def _finished(self, outcome: str, message: str, seconds: float) -> events.RunFinished:
        state = self.state
        status = "stopped" if outcome == "aborted" else outcome
        if not message and state is not None:
            message = _summary(status, self.best, self.model_file, state.epoch, self.config.epochs, self.run_dir)
        return events.RunFinished(
            status=status, epochs_done=state.epoch if state else 0, best_epoch=self.best.epoch,
            best_val_acc=self.best.val_acc, model_file=self.model_file, seconds=seconds, message=message,
            skipped_images=tuple(state.skipped.values()) if state else ())


def _summary(status: str, best: BestEpoch, model_file, epochs_done: int, planned: int, run_dir) -> str:
    """The run's last word (status.json's reason, the Runs step's Status): how it ended, then its best."""
    if best.epoch is None:
        return STOPPED_IN_FIRST_EPOCH if status == "stopped" else ""
    text = f"Best val accuracy {best.val_acc:.3f} at epoch {best.epoch}"
    if model_file:
        text += f"; model saved to {model_file}."
    elif status == "stopped":  # a second Ctrl-C stops at once, before the model file
        text += export_later_clause(run_dir)
    else:
        text += "."
    return f"Stopped after epoch {epochs_done} of {planned}. {text}" if status == "stopped" else text


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return "The computer ran out of memory; lower the batch size or the image size."
    return f"{type(error).__name__}: {error}"


def _changed_data(folder: RunFolder, start: events.FitStart) -> tuple[str, ...]:
    """A resumed run whose folder lost or gained images since it last trained says so: its best epoch
    was judged on the validation images of then, its next ones on these."""
    before = folder.last_event("FitStart") or {}
    counts = (before.get("num_train"), before.get("num_val"))
    if None in counts:
        return ()
    note = data_change_note(counts, (start.num_train, start.num_val))
    return (note,) if note else ()


def data_change_note(before: tuple[int, int], now: tuple[int, int]) -> str:
    """The note for (training, validation) image counts of before and now; only the counts that changed
    are named ("245 -> 245 training" read as a change), and what it means for the run's earlier epochs."""
    changes = [f"{then} -> {count} {kind}" for then, count, kind in zip(before, now, ("training", "validation"))
               if then != count]
    if not changes:
        return ""
    if before[1] != now[1]:
        meaning = (f"its earlier epochs were measured on the {before[1]} validation images of then, so their "
                   "accuracies and its best epoch compare loosely with the next ones.")
    else:
        meaning = f"its earlier epochs trained on the {before[0]} training images of then."
    return f"The data set changed since this run last trained: {' and '.join(changes)} images; {meaning}"


def _checkpoint_to_resume(folder: RunFolder) -> dict:
    from tl_studio.core import checkpoint as ckpt
    from tl_studio.core.run_folder import LAST_CHECKPOINT

    return ckpt.load_checkpoint(folder.file(LAST_CHECKPOINT))


def _callback_states(payload: dict) -> dict:
    """Checkpoints written before the callbacks kept their own state held it under "best"."""
    if "callbacks" in payload:
        return payload["callbacks"]
    best = payload["best"]
    return {"best_epoch": {"epoch": best["epoch"], "val_acc": best["val_acc"], "val_loss": best["val_loss"]},
            "early_stopping": {"lowest_val_loss": best["lowest_val_loss"],
                               "epochs_without_improvement": best["epochs_without_improvement"]}}
