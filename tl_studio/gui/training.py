"""Training in a background QThread (the Qt worker-object pattern, ARCHITECTURE.md §3).

``TrainingController`` owns the thread and the worker. The worker runs the core engine and emits
signals with immutable payloads (the engine's frozen events); it never touches a widget. Batch events
are buffered and sent in chunks at most every 100 ms, so the GUI thread is never flooded. Each run has
an id; signals from an older run are ignored. Stop and pause go through the engine's RunControl.
"""

from __future__ import annotations

import threading

import itertools
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from tl_studio.core import events
from tl_studio.core.callbacks import Callback
from tl_studio.core.control import RunControl
from tl_studio.gui.cpu_share import share_the_cpu_with_the_window

BATCH_CHUNK_SECONDS = 0.1


class SignalBridge(Callback):
    """Turns engine events into the worker's typed signals; batches are buffered (one chunk per
    100 ms at most)."""

    def __init__(self, worker: "TrainingWorker"):
        self.worker = worker
        self.run_id = worker.run_id
        self.pending: list[events.BatchEnd] = []
        self.last_flush = 0.0

    def _flush(self) -> None:
        if self.pending:
            self.worker.batches.emit(self.run_id, tuple(self.pending))
            self.pending = []
        self.last_flush = time.monotonic()

    def on_fit_start(self, event):
        self.worker.fitStarted.emit(self.run_id, event)
        if event.start_epoch > 1:  # a resumed run: its loss curve so far, read here off the window's thread
            from tl_studio.core.run_follow import earlier_batches

            earlier = earlier_batches(Path(event.run_dir), event.start_epoch)
            if earlier:
                self.worker.batches.emit(self.run_id, tuple(earlier))

    def on_phase_start(self, event):
        self.worker.phaseStarted.emit(self.run_id, event)

    def on_feature_progress(self, event):
        if time.monotonic() - self.last_flush >= BATCH_CHUNK_SECONDS or event.done == event.total:
            self.last_flush = time.monotonic()
            self.worker.featureProgress.emit(self.run_id, event)

    def on_batch_end(self, event):
        self.pending.append(event)
        if time.monotonic() - self.last_flush >= BATCH_CHUNK_SECONDS:
            self._flush()

    def on_epoch_end(self, event):
        self._flush()
        self.worker.epochEnded.emit(self.run_id, event)

    def on_sample_predictions(self, event):
        self.worker.samplesReady.emit(self.run_id, event)

    def on_image_skipped(self, event):
        self.worker.imageSkipped.emit(self.run_id, event)

    def on_notice(self, event):
        self.worker.notice.emit(self.run_id, event)

    def on_fit_end(self, event):
        self._flush()


class TrainingWorker(QObject):
    # (run id, payload): the payload is the engine's frozen event of that kind (for batches, a tuple
    # of BatchEnd); the controller re-emits the current run's under the same names
    fitStarted = Signal(int, object)  # FitStart
    phaseStarted = Signal(int, object)  # PhaseStart
    featureProgress = Signal(int, object)  # FeatureProgress
    batches = Signal(int, object)  # tuple[BatchEnd, ...]
    epochEnded = Signal(int, object)  # EpochEnd
    samplesReady = Signal(int, object)  # SamplePredictions
    imageSkipped = Signal(int, object)  # ImageSkipped
    notice = Signal(int, object)  # Notice
    finished = Signal(int, object)  # RunFinished

    def __init__(self, run_id: int, config, run_dir: Path, control: RunControl, resume: bool, scan=None):
        super().__init__()
        self.run_id = run_id
        self.config = config
        self.run_dir = Path(run_dir)
        self.control = control
        self.resume = resume
        self.scan = scan
        self.skip_model_file = threading.Event()

    @Slot()
    def run(self) -> None:
        """The thread's entry (the one slot: an override in a subclass would not be a Qt slot of the
        worker, and PySide would call it in the window's thread); ``work()`` is what differs."""
        finished = None
        try:
            finished = self.work()
        finally:
            # Back to the GUI thread so that deleteLater destroys the worker there (see tasks.py).
            self.moveToThread(QCoreApplication.instance().thread())
            self.finished.emit(self.run_id, finished)

    def work(self):
        """Trains in this process; returns the RunFinished event."""
        from tl_studio.gui.libraries import load_libraries

        try:
            load_libraries()  # one thread at a time imports torch (see libraries.py)
            from tl_studio.core.engine import Trainer

            share_the_cpu_with_the_window()  # gui/cpu_share.py: every core, below the window's priority
            from tl_studio.gui.processes import child_process_context, write_model_file_in_child_process

            def model_file_writer(run_dir, path, validation):
                # Quitting the app: the checkpoints are kept and `export` or a resumed run writes the
                # model file later, so the window does not wait for a whole export to close.
                if self.skip_model_file.is_set():
                    return None
                return write_model_file_in_child_process(run_dir, path, validation)

            trainer = Trainer(self.config, self.run_dir,
                              [SignalBridge(self)],
                              self.control, scan=self.scan, mp_context=child_process_context(),
                              model_file_writer=model_file_writer)
            return trainer.fit(resume=self.resume)
        except Exception as error:  # set-up errors before the engine's own reporting (e.g. bad config)
            return events.RunFinished("failed", 0, None, None, None, 0.0, str(error))


class ProcessTreeWorker(TrainingWorker):
    """A run in several processes: ``tl-studio train --nproc-per-node N`` (torchrun) as a child process
    tree. The window follows it through the run folder's events.jsonl (core/run_follow.py) with the
    same signals as a run in this process; stop and pause become requests in the run folder."""

    POLL_SECONDS = 0.1

    def __init__(self, run_id: int, config, run_dir: Path, control: RunControl, resume: bool, processes: int):
        super().__init__(run_id, config, run_dir, control, resume)
        self.processes = processes

    def command(self, config_file: Path) -> list[str]:
        import sys

        arguments = ["train", self.config.data_dir, "--out", str(self.run_dir), "--config", str(config_file),
                     "--nproc-per-node", str(self.processes), "--json"]
        if self.resume:
            arguments.append("--resume")
        return [sys.executable, "-m", "tl_studio", *arguments]

    def work(self):
        import subprocess
        import tempfile

        from tl_studio.core.run_folder import RunFolder
        from tl_studio.core.run_follow import RunFollower

        finished = None
        bridge = SignalBridge(self)
        folder = RunFolder(self.run_dir)
        try:
            with tempfile.TemporaryDirectory(prefix="tl_studio_run_") as scratch:
                config_file = Path(scratch) / "config.json"
                self.config.save(config_file)
                follower = RunFollower(folder)
                with open(Path(scratch) / "stderr.txt", "w+", encoding="utf-8", errors="replace") as errors:
                    launcher = subprocess.Popen(self.command(config_file), stdout=subprocess.DEVNULL,
                                                stderr=errors)
                    finished = self._follow(launcher, follower, folder, bridge)
                    errors.seek(0)
                    lines = [line for line in errors.read().splitlines() if line.startswith("tl-studio train")]
                if finished is None:
                    finished = _finished_from_status(folder, lines[-1] if lines else "")
        except Exception as error:  # could not start the processes (e.g. no Python to run them)
            finished = events.RunFinished("failed", 0, None, None, None, 0.0, f"The training processes could not "
                                          f"start: {error}")
        bridge.on_fit_end(finished)
        return finished

    def _follow(self, launcher, follower, folder, bridge):
        """Relays events until the launcher ends; passes stop and pause on as folder requests."""
        finished, sent = None, {"stop": False, "paused": False}
        while True:
            ended = launcher.poll() is not None
            for event in follower.poll():
                if isinstance(event, events.RunFinished):
                    finished = event
                else:
                    _relay(bridge, event)
            if ended:
                return finished
            if self.control.stop_requested and not sent["stop"]:
                folder.request("stop")
                sent["stop"] = True
            elif self.control.paused != sent["paused"] and not sent["stop"]:
                folder.request("pause" if self.control.paused else "continue")
                sent["paused"] = self.control.paused
            time.sleep(self.POLL_SECONDS)  # a worker thread: sleeping here never blocks the window


def _relay(bridge: SignalBridge, event) -> None:
    handler = {events.FitStart: bridge.on_fit_start, events.PhaseStart: bridge.on_phase_start,
               events.FeatureProgress: bridge.on_feature_progress, events.BatchEnd: bridge.on_batch_end,
               events.EpochEnd: bridge.on_epoch_end, events.SamplePredictions: bridge.on_sample_predictions,
               events.ImageSkipped: bridge.on_image_skipped, events.Notice: bridge.on_notice}.get(type(event))
    if handler is not None:
        handler(event)


def _finished_from_status(folder, error_line: str):
    """The processes ended without a RunFinished event (one was killed): what status.json says."""
    status = folder.status()
    reason = (status.reason if status is not None and status.reason else
              error_line.partition(": ")[2] or "The training processes ended before the run started.")
    state = status.state if status is not None and status.state in ("stopped", "failed") else "failed"
    return events.RunFinished(state, status.epochs_done if status else 0, status.best_epoch if status else None,
                              status.best_val_acc if status else None, None, 0.0, reason)


def process_limit() -> int:
    """How many processes a run may use: one per CUDA GPU; TL_STUDIO_CPU_PROCESSES=N allows N CPU
    processes (for trying and testing the multi-process path without GPUs). 1: the setting is off."""
    import os

    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        cpu = int(os.environ.get("TL_STUDIO_CPU_PROCESSES", "0"))
    except ValueError:
        cpu = 0
    return max(1, gpus, cpu)


class TrainingController(QObject):
    """Starts, pauses, resumes and stops runs; re-emits the current run's signals to the GUI."""

    fitStarted = Signal(object)
    phaseStarted = Signal(object)
    featureProgress = Signal(object)
    batches = Signal(object)
    epochEnded = Signal(object)
    samplesReady = Signal(object)
    imageSkipped = Signal(object)
    notice = Signal(object)
    finished = Signal(object)
    pausedChanged = Signal(bool)

    _ids = itertools.count(1)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.thread: QThread | None = None
        self.worker: TrainingWorker | None = None
        self.control: RunControl | None = None
        self.run_id = 0
        self._run_done = True

    @property
    def active(self) -> bool:
        return self.thread is not None

    def start(self, config, run_dir: Path, *, resume: bool = False, scan=None, processes: int = 1) -> int:
        """``processes`` > 1: the run goes to that many processes (torchrun), followed through its folder."""
        if self.active:
            if not self._run_done:
                raise RuntimeError("a run is already active")
            self.thread.wait()  # the previous run has finished; its thread is just winding down
            self._thread_done()
        self._run_done = False
        self.run_id = next(self._ids)
        self.control = RunControl()
        self.thread = QThread(self)
        self.thread.setObjectName(f"training-{self.run_id}")
        if processes > 1:
            self.worker = ProcessTreeWorker(self.run_id, config, run_dir, self.control, resume, processes)
        else:
            self.worker = TrainingWorker(self.run_id, config, run_dir, self.control, resume, scan)
        self.worker.moveToThread(self.thread)
        self._connect(self.worker)
        self.thread.started.connect(self.worker.run)
        # Direct: quit() is thread-safe, and a queued call would need the GUI thread, which may be
        # blocked waiting for this thread (stop_and_wait when the window closes).
        self.worker.finished.connect(self.thread.quit, Qt.DirectConnection)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.finished.connect(self._thread_done)
        self.thread.start()
        return self.run_id

    def _connect(self, worker: TrainingWorker) -> None:
        # Slots of this object (which lives in the GUI thread): queued connections, so the payloads
        # arrive in the GUI thread.
        worker.fitStarted.connect(self._on_fit_started)
        worker.phaseStarted.connect(self._on_phase_started)
        worker.featureProgress.connect(self._on_feature_progress)
        worker.batches.connect(self._on_batches)
        worker.epochEnded.connect(self._on_epoch_ended)
        worker.samplesReady.connect(self._on_samples_ready)
        worker.imageSkipped.connect(self._on_image_skipped)
        worker.notice.connect(self._on_notice)
        worker.finished.connect(self._on_finished)

    # an older run's late signals are dropped
    @Slot(int, object)
    def _on_fit_started(self, run_id: int, event) -> None:
        if run_id == self.run_id:
            self.fitStarted.emit(event)

    @Slot(int, object)
    def _on_phase_started(self, run_id: int, event) -> None:
        if run_id == self.run_id:
            self.phaseStarted.emit(event)

    @Slot(int, object)
    def _on_feature_progress(self, run_id: int, event) -> None:
        if run_id == self.run_id:
            self.featureProgress.emit(event)

    @Slot(int, object)
    def _on_batches(self, run_id: int, chunk) -> None:
        if run_id == self.run_id:
            self.batches.emit(chunk)

    @Slot(int, object)
    def _on_epoch_ended(self, run_id: int, event) -> None:
        if run_id == self.run_id:
            self.epochEnded.emit(event)

    @Slot(int, object)
    def _on_samples_ready(self, run_id: int, event) -> None:
        if run_id == self.run_id:
            self.samplesReady.emit(event)

    @Slot(int, object)
    def _on_image_skipped(self, run_id: int, event) -> None:
        if run_id == self.run_id:
            self.imageSkipped.emit(event)

    @Slot(int, object)
    def _on_notice(self, run_id: int, event) -> None:
        if run_id == self.run_id:
            self.notice.emit(event)

    @Slot(int, object)
    def _on_finished(self, run_id: int, payload) -> None:
        if run_id == self.run_id:
            self._run_done = True
            self.finished.emit(payload)

    def _thread_done(self) -> None:
        """Joins and releases the current run's thread once that run has reported its end.

        Called from ``start`` and, queued, from a thread's ``finished``. That signal may arrive late:
        Resume right after a stopped run calls ``start``, which joins the stopped run's thread and
        starts the next one while the old thread's ``finished`` is still in the GUI thread's queue.
        Delivered then, it must not touch the new run: dropping the new worker can delete it before its
        thread runs it, and waiting here for that thread then freezes the window for good. The new run
        has not reported its end (``_run_done`` is False) until its worker's ``finished`` arrives, which
        is always queued before its own thread's ``finished``."""
        if not self._run_done:
            return  # a late signal from an earlier run's thread, already joined by start()
        thread, self.thread, self.worker = self.thread, None, None
        if thread is not None:
            thread.wait()  # finished is emitted just before the thread returns; never delete it earlier
            thread.deleteLater()

    def pause(self) -> None:
        if self.control and not self.control.paused:
            self.control.pause()
            self.pausedChanged.emit(True)

    def resume(self) -> None:
        if self.control and self.control.paused:
            self.control.resume()
            self.pausedChanged.emit(False)

    def stop(self, *, quitting: bool = False) -> None:
        """``quitting``: the app is closing, so the run stops without writing model.pt2 (its checkpoints
        are kept: resume the run or export it to write the file)."""
        if quitting and self.worker is not None:
            try:
                self.worker.skip_model_file.set()
            except RuntimeError:  # the worker is already gone: the run has ended
                pass
        if self.control:
            self.control.request_stop()
            self.pausedChanged.emit(False)

    def stop_and_wait(self, timeout_ms: int = 120_000) -> bool:
        """For closing the window: stop, then wait for the thread (the engine writes its checkpoint)."""
        thread = self.thread
        if thread is None:
            return True
        self.stop(quitting=True)
        return thread.wait(timeout_ms)
