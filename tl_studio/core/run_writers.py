"""The built-in callbacks that write a run folder (layout: run_folder.py).

``run_folder_writers()`` is the one place that decides who writes the run folder: the engine attaches
these after it holds the folder's lock, for every front end, and with several processes (DDP) in
rank 0 only.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import queue
import threading
import time

from tl_studio.core import checkpoint as ckpt
from tl_studio.core import events
from tl_studio.core import run_folder as names
from tl_studio.core.callbacks import Callback
from tl_studio.core.errors import UserError
from tl_studio.core.run_folder import RunFolder
from tl_studio.core.run_model_file import export_best, model_file_bytes

log = logging.getLogger(__name__)


def run_folder_writers(folder: RunFolder, model_file_writer=None) -> list[Callback]:
    """In call order: checkpoints first (metrics.csv then never lists an epoch that no checkpoint
    holds), then the files other processes read, then the model file at the end of the run. The
    checkpoints, metrics.csv and status.json of each epoch reach the disk in that order on one
    background thread (OrderedWrites), so the next epoch does not wait for them."""
    writes = OrderedWrites()
    return [Checkpointer(folder, writes), MetricsCsvWriter(folder.file(names.METRICS), writes), EventsLog(folder),
            RunRecord(folder, writes), ModelFileWriter(folder, model_file_writer, writes)]


class OrderedWrites:
    """Writes done one after another, in the order they were asked for, on a background thread: a
    resnet18 + AdamW checkpoint is ~140 MB, half a second to write and fsync here, which the next
    epoch no longer waits for. At most ``QUEUED_AT_MOST`` writes wait (about one epoch's), so memory
    holds at most about one epoch's serialised checkpoints, and a run killed at any moment loses at most
    the epoch in progress and the one before it.

    A write that fails (a full disk) drops the writes queued after it (metrics.csv must not list an
    epoch whose checkpoint is missing); its error is raised once, by the next ``check`` or ``wait``,
    which the training loop's hooks call (an event hook such as on_epoch_end only logs a callback's
    error and the run went on: a read-only run folder printed a traceback and trained another epoch);
    writes asked for after that run again (the run's final status)."""

    QUEUED_AT_MOST = 4

    def __init__(self):
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUED_AT_MOST)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._failed_since = False  # the error happened and has not been raised yet: drop writes
        self.ever_failed = False  # a write of this run failed (raised or not): what trained is not all on disk
        self._thread = None

    def submit(self, write) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="run-folder-writes", daemon=True)
            self._thread.start()
        self._queue.put(write)

    def wait(self) -> None:
        """Returns when every write asked for so far is on the disk; raises a failed one's error."""
        self._queue.join()
        self.check()

    def check(self) -> None:
        with self._lock:
            error, self._error, self._failed_since = self._error, None, False
        if error is not None:
            raise error

    def _work(self) -> None:
        while True:
            write = self._queue.get()
            try:
                with self._lock:
                    dropped = self._failed_since
                if not dropped:
                    write()
            except BaseException as error:  # kept for the training thread, which reports it
                with self._lock:
                    self._error, self._failed_since, self.ever_failed = error, True, True
            finally:
                self._queue.task_done()


# ---- checkpoints ----------------------------------------------------------------------------------
class Checkpointer(Callback):
    """``best.ckpt`` when an epoch is the best so far, ``last.ckpt`` after every epoch (everything a
    resume needs, including every callback's state)."""

    def __init__(self, folder: RunFolder, writes: OrderedWrites):
        self.folder, self.writes = folder, writes

    def before_epoch(self, trainer, epoch: int) -> None:
        self.writes.check()  # a full disk found while the last epoch's files were written ends the run now

    def after_epoch(self, trainer, event: events.EpochEnd) -> None:
        self.writes.check()  # the last epoch's files failed: this one's cannot be written either
        state = trainer.state
        model_state = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
        common = state.common_payload()
        files = []  # serialised now (a snapshot: the next epoch changes the weights), written in the background
        if event.is_best:
            files.append((names.BEST_CHECKPOINT, ckpt.serialise_checkpoint({
                **common, "model": model_state, "epoch": event.epoch, "val_acc": event.val_acc})))
        files.append((names.LAST_CHECKPOINT, ckpt.serialise_checkpoint({
            **common, "model": model_state, **state.resume_payload_fields(),
            "callbacks": trainer.callbacks.state_dicts()})))
        ckpt.check_free_space(self.folder.path, sum(len(data) for _, data in files), what="a checkpoint")
        for name, data in files:
            self.writes.submit(functools.partial(ckpt.write_checkpoint, self.folder.file(name), data))


# ---- metrics.csv ----------------------------------------------------------------------------------
class MetricsCsvWriter(Callback):
    """Writes ``metrics.csv``: one row per epoch, epochs numbered from 1. The whole file is rewritten
    atomically each epoch, so a resumed run continues it and a crash never leaves half a row."""

    HEADER = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "train_images_per_s",
              "feature_images_per_s", "gpu_memory_peak_mb")

    def __init__(self, path, writes: OrderedWrites):
        from pathlib import Path

        self.path = Path(path)
        self.writes = writes
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
            lines.append(",".join(_csv_value(row.get(key)) for key in self.HEADER))
        self.writes.submit(functools.partial(atomic_write_text, self.path, "\n".join(lines) + "\n", make_folder=False))


def _csv_value(value) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


# ---- events.jsonl ---------------------------------------------------------------------------------
def event_record(event) -> dict:
    """An engine event as a JSON-ready dict: ``{"event": "EpochEnd", "time": ..., fields...}``.
    Sample thumbnails (pixel arrays) are left out; the image paths say which images they were."""
    if isinstance(event, events.SamplePredictions):
        fields = {"epoch": event.epoch, "classes": list(event.classes),
                  "samples": [{"path": s.path, "true_label": s.true_label, "top_labels": list(s.top_labels),
                               "top_probs": list(s.top_probs)} for s in event.samples]}
    else:
        fields = dataclasses.asdict(event)
    return {"event": type(event).__name__, "time": round(time.time(), 3), **fields}


class EventsLog(Callback):
    """Appends every event to ``events.jsonl`` and flushes it at once, so another process (the GUI
    following a run it did not start, a run-history table) can follow the run as it happens."""

    def __init__(self, folder: RunFolder):
        self.path = folder.file(names.EVENTS)
        self.handle = None

    def _append(self, event) -> None:
        if self.handle is None:
            self.handle = open(self.path, "a", encoding="utf-8")
        self.handle.write(json.dumps(event_record(event), default=_plain) + "\n")
        self.handle.flush()

    on_fit_start = on_phase_start = on_feature_progress = on_batch_end = _append
    on_epoch_end = on_sample_predictions = on_image_skipped = on_notice = _append

    def on_fit_end(self, event: events.RunFinished) -> None:
        try:
            self._append(event)
        except OSError as error:  # a folder gone or read-only: the run's last word says so already
            if RunFolder(self.path.parent).unwritable_reason(error) is None:
                raise
        finally:
            if self.handle is not None:
                self.handle.close()
            self.handle = None


def _plain(value):
    """numpy scalars and other odd values in an event: as plain numbers or text."""
    try:
        return value.item()
    except AttributeError:
        return str(value)


# ---- config.json and status.json ------------------------------------------------------------------
FINAL_STATES = {"completed": "done", "early-stopped": "done", "stopped": "stopped", "failed": "failed"}


class RunRecord(Callback):
    """``config.json`` when the run starts; ``status.json`` at the start, after every epoch and at the
    end (see run_folder.RunStatus)."""

    def __init__(self, folder: RunFolder, writes: OrderedWrites):
        self.folder, self.writes = folder, writes
        self.status = None
        self.on_disk = None  # the last status the writes thread wrote: the epochs whose checkpoints are there

    def before_fit(self, trainer) -> None:
        from tl_studio.core.run_folder import new_status

        trainer.config.save(self.folder.file(names.CONFIG))
        self.status = new_status(trainer.config, epochs_done=trainer.state.epoch)
        earlier = self.folder.status() if trainer.state.epoch else None
        if earlier is not None and earlier.started:  # a resume: the run's date stays the day it began
            self.status = dataclasses.replace(self.status, started=earlier.started)
        self._write(best_epoch=trainer.best.epoch, best_val_acc=trainer.best.val_acc)
        self.on_disk = self.status

    def on_epoch_end(self, event: events.EpochEnd) -> None:
        if self.status is not None:
            best = {"best_epoch": event.epoch, "best_val_acc": event.val_acc} if event.is_best else {}
            self.status = dataclasses.replace(self.status, epochs_done=event.epoch, **best)
            self.writes.submit(functools.partial(self._write_epoch, self.status))

    def _write_epoch(self, status) -> None:
        """On the writes thread, after the epoch's checkpoints: a failed one drops this write too."""
        self.folder.write_status(status)
        self.on_disk = status

    def on_fit_end(self, event: events.RunFinished) -> None:
        try:
            self.writes.wait()  # every epoch's files are on the disk before the final status
        except Exception:  # already reported: the run's outcome and message say so
            log.debug("an epoch's files could not be written", exc_info=True)
        if self.status is None:
            return
        saved = {"epochs_done": event.epochs_done, "best_epoch": event.best_epoch, "best_val_acc": event.best_val_acc}
        if self.writes.ever_failed and self.on_disk is not None:
            # a full disk: epochs trained after the last checkpoint that reached it are not in the run folder
            # (status.json said 3 epochs, best epoch 2, beside the checkpoints and model file of epoch 1)
            saved = {key: getattr(self.on_disk, key) for key in saved}
        try:
            self._write(state=FINAL_STATES.get(event.status, "failed"), reason=event.message, ended=time.time(),
                        **saved)
        except OSError as error:
            if self.folder.unwritable_reason(error) is None:
                raise
            log.debug("the final status could not be written: the run folder moved or became read-only")

    def _write(self, **changes) -> None:
        self.status = dataclasses.replace(self.status, **changes)
        self.folder.write_status(self.status)


# ---- model.pt2 ------------------------------------------------------------------------------------
class ModelFileWriter(Callback):
    """Exports the best epoch to ``model.pt2`` when the run ends (completed, stopped or failed, as
    long as an epoch finished). ``writer(run_dir, path, validation) -> path or None`` replaces the in-process
    export (the GUI writes the file in a child process, see gui/processes.py); ``validation`` is what the
    best epoch's validation computed for the calibration (RunState.best_val_logits), so that the writer
    need not run the network over the val images again, or None. The result is left on the trainer:
    ``trainer.model_file`` and, when writing failed, ``trainer.model_file_error`` (one sentence)."""

    def __init__(self, folder: RunFolder, writer, writes: OrderedWrites):
        self.folder = folder
        self.writer = writer
        self.writes = writes

    def after_fit(self, trainer, outcome: str) -> None:
        try:
            self.writes.wait()  # best.ckpt on the disk first: the model file is made from it
        except UserError as error:  # a full disk: the run fails with it; the best epoch that was saved is exported
            trainer.model_file_error = str(error)
        state = trainer.state
        if state is None or trainer.best.epoch is None:
            return
        path = self.folder.file(names.MODEL_FILE)
        if outcome == "aborted":
            trainer.model_file = _written_from_epoch(path, trainer.best.epoch)
            return
        from tl_studio.core.model_file import peek_metadata

        epoch_before = (peek_metadata(path) or {}).get("best_epoch")
        try:
            ckpt.check_free_space(self.folder.path, model_file_bytes(state.model), what="the model file")
            written = (self.writer(self.folder.path, path, state.best_val_logits) if self.writer
                       else export_best(state, path))
            # None: the front end chose not to write it now (quitting the app)
            trainer.model_file = str(written) if written is not None else _written_from_epoch(path, trainer.best.epoch)
            if written is not None and epoch_before is not None and epoch_before != trainer.best.epoch:
                self._say_older_exports(trainer)
        except UserError as error:
            trainer.model_file_error = str(error)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                trainer.model_file_error = ckpt.disk_full_message(self.folder.path, model_file_bytes(state.model))
            elif (reason := self.folder.unwritable_reason(error)) is not None:
                trainer.model_file_error = reason
            else:
                log.exception("writing the model file failed")
                trainer.model_file_error = f"Training finished but the model file could not be written: {error}"
        except Exception as error:
            log.exception("writing the model file failed")
            trainer.error = trainer.error or error
            trainer.model_file_error = ("Training finished but the model file could not be written: "
                                        f"{type(error).__name__}: {error}")


    def _say_older_exports(self, trainer) -> None:
        """A resumed run that found a better epoch: the other files exported into the run folder (model.onnx,
        model.ts, model.int8.onnx) hold the epoch before, which nothing said (evaluate gave 0.9216 for the
        run, 0.9150 for its model.onnx)."""
        from tl_studio.core.export_formats import EXPORT_FORMATS

        older = sorted(file.name for file in self.folder.path.glob("*")
                       if file.is_file() and file.name != names.MODEL_FILE
                       and any(fmt.opens(file) for fmt in EXPORT_FORMATS.values()))
        if older:
            them = "it" if len(older) == 1 else "them"
            trainer.callbacks.on_notice(events.Notice(
                f"{', '.join(older)} in the run folder {'was' if len(older) == 1 else 'were'} exported from an earlier "
                f"epoch; model.pt2 is now epoch {trainer.best.epoch}: export {them} again to bring {them} up to date."))


def _written_from_epoch(path, best_epoch: int) -> str | None:
    """``path`` when the model file there was written from this best epoch before (a resumed run that
    stopped before a better one): the run's status then names it, not the command that would write it."""
    from tl_studio.core.model_file import peek_metadata

    return str(path) if (peek_metadata(path) or {}).get("best_epoch") == best_epoch else None
