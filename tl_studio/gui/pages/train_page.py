"""The Train step: settings, Start / Pause / Stop, live curves, progress and sample predictions."""

from __future__ import annotations

import shlex
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QMessageBox, QProgressBar,
                               QPushButton, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from tl_studio.core.diagnostics import CACHED_PASSES, overfitting_hint
from tl_studio.core import run_folder
from tl_studio.core.errors import UserError
from tl_studio.core.wording import counted
from tl_studio.gui.cpu_share import explain_cpu
from tl_studio.gui.literal_text import as_written, never_wider_than_its_room
from tl_studio.gui.plots import TrainingCurves
from tl_studio.gui.runs_folder import new_run_dir
from tl_studio.gui.sample_grid import SampleGrid, SampleScroll
from tl_studio.gui.train_settings import TrainSettings
from tl_studio.gui.train_progress import RunProgress
from tl_studio.gui.training import TrainingController

# The two-phase schedule's phases, as the summary names them beside the parameters that train.
PHASE_WORDS = {"head": "Phase 1 of 2, the new head: ", "fine-tune": "Phase 2 of 2, fine-tuning: "}


class TrainPage(QWidget):
    runFinished = Signal(object)
    resumeChosen = Signal()  # "Resume a run…": the window lists the runs to choose from (Runs step)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.controller = TrainingController(self)
        self.settings = TrainSettings(session)
        self._fit_start = None  # the running run's FitStart: the summary is made of it and the current phase
        self.skipped, self.skipped_line = [], ""  # the images the run could not read, and the line saying so
        self.curves = TrainingCurves()
        self.samples = SampleGrid()
        self.history: list = []
        self.current_run_dir: Path | None = None
        self.run_config = session.config  # the settings of the run shown (_begin)
        self.current_run_is_new = False
        self._build()
        self._connect()
        session.datasetChanged.connect(self._dataset_changed)
        session.scanningChanged.connect(lambda _: self._update_start_button())
        self._set_running(False)

    # ---- layout -------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("startButton")
        self.start_button.setToolTip("Start training (Ctrl+R)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pauseButton")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop after the current batch; the last finished epoch is kept")
        self.lr_button = QPushButton("Find learning rate…")
        self.lr_button.setToolTip("A short sweep of increasing learning rates on your data; suggests the rate "
                                  "where the loss falls fastest (the model you will train is not changed)")
        self.resume_button = QPushButton("Resume a run…")
        self.resume_button.setToolTip("Choose a stopped or crashed run to continue from its last checkpoint, or a "
                                      "finished one to train further (Runs step)")
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.settings)
        left_layout.addWidget(self.lr_button)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.resume_button)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)
        self.settings_scroll = scroll

        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setTextVisible(True)
        self.progress.setFormat("Not started")
        self.run_progress = RunProgress(self.progress)
        self.summary = never_wider_than_its_room(
            QLabel("Press Start to train. Curves and sample predictions appear here live."))
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.PlainText)  # it shows the user's file and folder names, never markup
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.hint = never_wider_than_its_room(QLabel())  # the run's notes name classes
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("QLabel { background: #fff3cd; color: #664d03; padding: 6px; border-radius: 4px; }")
        self.hint.hide()
        plots = QTabWidget()
        plots.addTab(self.curves.loss_plot, "Loss")
        plots.addTab(self.curves.accuracy_plot, "Accuracy")
        plots.addTab(self.curves.lr_plot, "Learning rate")
        split = QSplitter(Qt.Vertical)
        split.addWidget(plots)
        split.addWidget(SampleScroll(self.samples))  # at least one whole row of thumbnails and labels
        # Neither is dragged or squeezed out of view: at 1000 x 620 the samples were a sliver under the
        # curves (the tops of three images, no labels).
        split.setChildrenCollapsible(False)
        split.setSizes([380, 420])
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.summary)
        right_layout.addWidget(self.hint)
        right_layout.addWidget(split, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(scroll)
        layout.addWidget(right, 1)

    def _connect(self) -> None:
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resumeChosen)
        self.lr_button.clicked.connect(self.find_learning_rate)
        c = self.controller
        c.fitStarted.connect(self._on_fit_started)
        # a run's progress is said on the Train step whichever step is shown (a sentence said on another
        # step stood there, and the Train step kept "Epoch 3" while the bar read epoch 5)
        c.phaseStarted.connect(self._on_phase_started)
        c.featureProgress.connect(lambda e: self.session.say(self.run_progress.features(e), "Train"))
        c.batches.connect(self._on_batches)
        c.epochEnded.connect(self._on_epoch)
        c.samplesReady.connect(self.samples.show_predictions)
        c.notice.connect(lambda e: self._note(e.message))
        c.imageSkipped.connect(self._on_image_skipped)
        c.finished.connect(self._on_finished)
        c.pausedChanged.connect(self._on_paused)

    def after_window_shown(self) -> None:
        """Fills the device box: that imports torch, so it happens in the background after start-up."""
        from tl_studio.gui.tasks import TaskRunner

        def detect(report, cancelled):
            from tl_studio.core.device import available_devices
            from tl_studio.gui.cpu_share import explain_cpu

            from tl_studio.gui.training import process_limit

            # what a run started here will use (see cpu_share): the info line says the same
            return [(setting, explain_cpu(text, short=True)) for setting, text in available_devices()], process_limit()

        self.tasks = TaskRunner(self)
        self.tasks.start(detect, "detect-devices").succeeded.connect(self._devices_found)

    def _devices_found(self, result) -> None:
        devices, processes = result
        self.settings.set_devices(devices)
        self.settings.set_process_limit(processes)
        self._fit_settings_width()

    def _fit_settings_width(self) -> None:
        """The device names arrive after the layout was made, and a scroll area keeps the size its widget
        first asked for: widen the settings column now, so the device box shows its text whole. Each
        layout from the device box up is redone at once (a redone layout tells its parent), so the
        column's size hint is the new one, not one from before the names came."""
        scroll = self.settings_scroll
        widget = self.settings.device.parentWidget()
        while widget is not None and widget is not scroll.viewport():
            if widget.layout() is not None:
                widget.layout().activate()
            widget = widget.parentWidget()
        wanted = scroll.widget().sizeHint().width() + scroll.verticalScrollBar().sizeHint().width() \
            + 2 * scroll.frameWidth()
        scroll.setMinimumWidth(max(scroll.minimumWidth(), wanted))

    def shutdown(self) -> None:
        self.controller.stop_and_wait()
        if hasattr(self, "tasks"):
            self.tasks.shutdown()

    # ---- actions ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.controller.active and not self.controller._run_done

    def start(self) -> None:
        if self.running:
            return
        scan = self.session.scan
        if self.session.scanning:  # Train > Start Training while the folder just chosen is scanned
            self.session.say(f"Training starts once {self.session.scanning} is scanned; press Start then.")
            return
        if scan is None:
            QMessageBox.information(self, "No data set ready", "No data set is ready yet: choose a folder on the "
                                    "Data step, or wait for its scan to finish there.")
            return
        if self.session.split_pending:
            answer = QMessageBox.question(self, "Split not applied", f"{self.session.split_pending}\n\nTrain on the "
                                          "split as it is applied? (No: press Apply split on the Data step first.)")
            if answer != QMessageBox.Yes:
                self.session.say("Press Apply split on the Data step, then Start training.")
                return
        try:
            config = self.session.config.replace(data_dir=str(scan.root)).validate()
        except UserError as error:
            QMessageBox.warning(self, "Check the settings", as_written(str(error)))  # it may quote the folder
            return
        self._begin(config, new_run_dir(Path(scan.root).name, config.model), resume=False, scan=scan,
                    processes=self.settings.process_count)

    def _begin(self, config, run_dir: Path, *, resume: bool, processes: int, scan=None) -> None:
        self.run_config = config  # this run's settings, for its hints: the steps may hold others
        self.current_run_dir = run_dir
        self.current_run_is_new = not resume  # its folder was made for it (new_run_dir)
        self.history = []
        self.curves.clear()
        self.samples.clear()
        self.hint.hide()
        self.summary.setText(f"Run folder: {run_dir}")
        # the last run's "Done · best val accuracy 0.935" stood for seconds while this one loaded
        self.progress.setRange(0, 0)
        self.progress.setFormat("Resuming…" if resume else "Starting…")
        self.skipped, self.skipped_line = [], ""
        self.controller.start(config, run_dir, resume=resume, scan=scan, processes=processes)
        self._set_running(True)
        self.session.say(f"Training {config.model}…")

    def find_learning_rate(self) -> None:
        from tl_studio.gui.lr_finder_dialog import LrFinderDialog

        if self.session.scan is None:
            QMessageBox.information(self, "No dataset", "Choose a dataset folder on the Data step first.")
            return
        dialog = LrFinderDialog(self.session, self)
        dialog.start()
        dialog.exec()
        dialog.shutdown()
        dialog.deleteLater()

    def resume_run(self, run_dir: Path, epochs: int | None = None) -> None:
        """A stopped or crashed run continues to its planned epochs (the user may raise them); a
        finished one is extended. ``epochs`` given: no question asked."""
        from tl_studio.core.config import TrainConfig
        from tl_studio.gui.run_progress import read_run_progress

        if self.running:
            return
        try:
            config = TrainConfig.load(run_dir / run_folder.CONFIG)
        except UserError as error:
            self._cannot_resume(run_dir, str(error))
            return
        progress = read_run_progress(run_dir)
        if not progress.resumable:
            self._cannot_resume(run_dir, "it has no checkpoint of a finished epoch (it stopped during its first "
                                         "epoch); start a new run instead.")
            return
        if epochs is None:
            planned = max(config.epochs, progress.planned_epochs)
            lowest = progress.finished_epochs + 1
            default = planned + 5 if progress.finished else max(planned, lowest)
            epochs, ok = QInputDialog.getInt(self, "Train further" if progress.finished else "Resume the run",
                                             f"{progress.describe()}\nTrain until epoch:",
                                             default, lowest, 10_000)
            if not ok:
                return
        # The run's own settings train it; the Model and Train steps keep the user's for the next new run
        # (they were overwritten with the run's: another model, its freeze and epochs, and a Start after it
        # trained that model, its weights left as the steps had them).
        config = config.replace(epochs=epochs)
        processes, note = self._resume_processes(run_dir, config.data_dir)
        self._begin(config, run_dir, resume=True, processes=processes)
        if note:
            self.session.say(note)

    def _resume_processes(self, run_dir: Path, data_dir: str) -> tuple[int, str]:
        """The number of processes the run trained in (its last start's), where this window can start
        them; else as many as it can, and a sentence saying so."""
        start = run_folder.RunFolder(run_dir).last_event("FitStart") or {}
        recorded = int(start.get("processes") or 1)
        available = self.settings.processes.maximum() if self.settings.processes.isEnabled() else 1
        if recorded <= available:
            return recorded, ""
        return available, (f"{run_dir.name} trained in {recorded} processes; this window can start "
                           f"{available} here, so it continues in {available}. To keep {recorded}: tl-studio "
                           f"train {shlex.quote(data_dir)} --out {shlex.quote(str(run_dir))} --resume "
                           f"--nproc-per-node {recorded}")

    def _cannot_resume(self, run_dir: Path, why: str) -> None:
        """Said on this page and in the status line, not in a modal box: nothing here needs an answer."""
        message = f"Cannot resume {Path(run_dir).name}: {why}"
        self.summary.setText(message)
        self.session.say(message)

    @property
    def epoch_finished(self) -> bool:
        """Whether the run shown has a finished epoch (a checkpoint to keep, resume and export from)."""
        return bool(self.history)

    @property
    def writing_model_file(self) -> bool:
        """Every planned epoch has finished: the run writes its model file (10-40 s on a CPU), and Stop
        or Pause have nothing left to act on."""
        return self.running and bool(self.history) and self.history[-1].epoch >= self.run_progress.epochs

    def toggle_pause(self) -> None:
        if not self.running or self.controller.control.stop_requested:  # Ctrl+P after Stop: nothing to pause
            return
        if self.controller.control.paused:
            self.controller.resume()
        else:
            self.controller.pause()

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.pause_button.setEnabled(False)  # the run is ending: Pause then read "Paused" for a run that ends
            self.stop_button.setEnabled(False)
            self.session.say(self.run_progress.stop_requested(self.epoch_finished))

    # ---- run events ---------------------------------------------------------------------------------
    def _on_fit_started(self, event) -> None:
        self.run_progress.start(event)
        for epoch in event.history:  # a resumed run continues its curves
            self._on_epoch(epoch)
        self._fit_start = event
        self._show_summary(event.trainable_params, event.feature_cache)

    def _on_phase_started(self, event) -> None:
        """The two-phase schedule's second phase trains other parameters, off the feature cache: the
        summary follows it (it kept saying the head's 3,843 parameters trained on cached features)."""
        self.session.say(event.description, "Train")
        self.run_progress.phase_started()
        if event.name in PHASE_WORDS and self._fit_start is not None:
            self._show_summary(event.trainable_params, event.feature_cache, PHASE_WORDS[event.name])

    def _show_summary(self, trainable_params: int, feature_cache: bool, phase: str = "") -> None:
        event = self._fit_start
        cache = " Features are computed once and cached (frozen backbone)." if feature_cache else ""
        # a phase on images (the two-phase schedule's second) makes no passes over cached features
        notes = " ".join(note for note in event.notes if feature_cache or CACHED_PASSES not in note)
        self.summary.setText(f"{event.num_train} training and {event.num_val} validation images, "
                             f"{len(event.classes)} classes, on {explain_cpu(event.device)}. "
                             f"{phase}{trainable_params:,} of "
                             f"{event.total_params:,} parameters train.{cache} {notes}\nRun folder: {event.run_dir}"
                             f"{self._resumed_settings()}")

    def _resumed_settings(self) -> str:
        """A resumed run trains with its own settings, not the greyed ones on the left (the user's, for
        the next new run): said, or "Epochs 5" stood beside "Epoch 10/20"."""
        if self.current_run_is_new:
            return ""
        config = self.run_config
        return (f"\nResumed with its own settings: {config.model}, freeze {config.freeze}, learning rate "
                f"{config.trained_lr():g}, {config.epochs} epochs. The settings on the left are for your next run.")

    def _on_batches(self, batches) -> None:
        self.curves.add_batches(batches)
        self.run_progress.batch(batches[-1])

    def _on_epoch(self, event) -> None:
        self.history.append(event)
        self.curves.add_epoch(event)
        self.session.say(f"Epoch {event.epoch}: val accuracy {event.val_acc:.3f}, val loss {event.val_loss:.4f} "
                         f"({event.seconds:.1f} s{event.gpu_memory_text()})", "Train")
        self.run_progress.epoch_ended(event)  # the status line keeps the epoch's figures, the bar what follows
        if self.writing_model_file:  # Stop then said "Stopping: saving the best epoch so far…" of a finished run
            self.pause_button.setEnabled(False)
            self.stop_button.setEnabled(False)
        config = self.run_config
        hint = overfitting_hint(self.history, config.freeze, config.augment, feature_cache=config.feature_cache,
                                pretrained=config.pretrained)
        self.hint.setText(hint or "")
        self.hint.setVisible(bool(hint))

    def _on_paused(self, paused: bool) -> None:
        self.run_progress.paused(paused)
        # "Continue", not "Resume": beside "Resume a run…", which continues another, stopped run
        self.pause_button.setText("Continue" if paused else "Pause")
        if paused:
            self.session.say("Paused. Press Continue to go on.")
        elif self.running and not self.controller.control.stop_requested:
            self.session.say("Resumed: training continues.")

    def _on_finished(self, finished) -> None:
        self._set_running(False)
        self.run_progress.finish(finished.status in ("completed", "early-stopped"))
        skipped = f" {counted(len(self.skipped), 'image')} could not be read and were skipped." if self.skipped else ""
        # said before the failure's message box, which holds the window: "Training alexnet…" stood under it
        self.session.say((finished.message or finished.status) + skipped)
        if finished.status == "failed":
            self.progress.setFormat("Failed")
            if self.current_run_is_new:  # a run that failed before it started leaves no empty folder behind
                if run_folder.RunFolder(self.current_run_dir).remove_if_never_started():
                    # "Run folder: ..." named a folder that is gone: say what happened instead
                    self.summary.setText(f"The run did not start: {finished.message}")
            QMessageBox.warning(self, "Training failed", as_written(finished.message))  # it may quote a file
        else:
            label = {"completed": "Done", "early-stopped": "Stopped early", "stopped": "Stopped"}[finished.status]
            self.progress.setFormat(f"{label} · best val accuracy "
                                    f"{finished.best_val_acc:.3f}" if finished.best_val_acc is not None else label)
        if finished.model_file:
            self.session.set_run(self.current_run_dir, Path(finished.model_file))
        self.runFinished.emit(finished)

    def _note(self, message: str) -> None:
        self.summary.setText(self.summary.text() + "\n" + message)

    def _on_image_skipped(self, event) -> None:
        """One line for every image skipped, updated as more are: a line each pushed Start, Pause and
        Stop off the screen when a folder's images went missing during a run (150 lines, the window
        2,500 px tall)."""
        self.skipped.append(event)
        first = self.skipped[0]
        reason = f"{Path(first.path).name}: {first.reason}"
        line = (f"Skipped {reason}" if len(self.skipped) == 1 else
                f"Skipped {counted(len(self.skipped), 'image')} that could not be read, the first {reason} "
                "(each is listed in the run folder's events.jsonl).")
        text = self.summary.text()
        if self.skipped_line and self.skipped_line in text:
            self.summary.setText(text.replace(self.skipped_line, line))
        else:
            self.summary.setText(text + "\n" + line)
        self.skipped_line = line

    def _dataset_changed(self, scan) -> None:
        """Another folder opened after a run: that run's curves, its sample images (of the other folder)
        and "Done · best val accuracy 0.961" read as this folder's, so the step goes back to its empty
        state and says where the last run is. The same folder rescanned (an image fixed) keeps them."""
        self._update_start_button()
        if self.running or scan is None or self.current_run_dir is None:
            return
        trained_on = Path(self.run_config.data_dir)
        if Path(scan.root).resolve() == trained_on.resolve():
            return
        last_run = self.current_run_dir.name
        self.current_run_dir, self.history = None, []
        self.curves.clear()
        self.samples.clear()
        self.hint.hide()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Not started")
        self.summary.setText(f"Press Start to train on {Path(scan.root).name}. The last run, {last_run} (on "
                             f"{trained_on.name}), is on the Runs step.")

    def _update_start_button(self) -> None:
        """Start waits for a data set that is scanned and ready; the tooltip says why it waits."""
        scanning = self.session.scanning
        ready = self.session.scan is not None and not scanning
        self.start_button.setEnabled(ready and not self.running)
        if self.running:
            self.start_button.setToolTip("A run is in progress: Pause or Stop it first.")
        elif scanning:  # the previous data set is still loaded, but the user chose another one
            self.start_button.setToolTip(as_written(f"Start waits for the scan of {scanning} to finish (see the Data "
                                                    "step)."))
        elif ready:
            self.start_button.setToolTip("Start training (Ctrl+R)")
        else:
            self.start_button.setToolTip("Start is available once a data set folder is scanned "
                                         "(choose one on the Data step; a scan in progress shows there).")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.lr_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.pause_button.setText("Pause")
        self.settings.set_running(running)
        self.session.set_training(running)
        self._update_start_button()
