"""The advisor panel of the Model step: "Analyse my dataset" runs core.advisor in the background
(progress, Cancel), then shows each recommended setting with its reason, and "Apply" puts them all
into the session's config in one click.

A result belongs to the model, dataset and kind of weights (pretrained or random) it was computed for:
when one changes, it is marked as out of date (and Apply is disabled) until the user analyses again.
Apply is also disabled while the training settings hold every recommended value already.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QGridLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout,
                               QWidget)

from tl_studio.core.wording import counted
from tl_studio.gui.cpu_share import share_the_cpu_with_the_window
from tl_studio.gui.tasks import TaskRunner

LABELS = {"freeze": "Freeze", "schedule": "Schedule", "lr": "Learning rate", "epochs": "Epochs",
          "img_size": "Image size", "augment": "Augmentation"}
SCHEDULES = {"onecycle": "one-cycle", "cosine": "cosine", "fine-tune": "two-phase fine-tuning"}


def shown_value(setting: str, value, recommendation) -> str:
    """A recommended value as a person reads it."""
    if setting == "freeze":
        every = "nothing (fine-tune all)" if recommendation.stats.pretrained else "nothing (train all from scratch)"
        return {"all": "whole backbone (head only)", "none": every}.get(
            value, f"first {value} of {recommendation.stats.num_stages} stages")
    if setting == "schedule":
        text = SCHEDULES.get(value, value)
        return f"{text}, {counted(recommendation.freeze_epochs, 'head epoch')} first" if value == "fine-tune" else text
    if setting == "lr":
        return f"{value:g}"
    if setting == "img_size":
        return f"{value} px"
    return str(value)


class AdvisorPanel(QWidget):
    recommendationReady = Signal(object)  # Recommendation
    applied = Signal(dict)  # the config changes made
    failed = Signal(str)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("advisorPanel")
        self.session = session
        self.tasks = TaskRunner(self)
        self.task = None
        self.recommendation = None
        self._analysed_for = None  # _target() of the shown recommendation
        self._build()
        session.configChanged.connect(lambda _config: self._check_stale())
        session.datasetChanged.connect(self._dataset_changed)
        self._set_running(False)

    # ---- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        box = QGroupBox("Recommended settings for this dataset")
        intro = QLabel("Looks at how many images each class has, their size, and how well the pretrained "
                       "features already tell your classes apart, then recommends how much to freeze and how "
                       "to train, with the reasons.")
        intro.setWordWrap(True)
        self.analyse_button = QPushButton("Analyse my dataset", objectName="advisorAnalyse")
        self.cancel_button = QPushButton("Cancel", objectName="advisorCancel")
        self.apply_button = QPushButton("Apply", objectName="advisorApply")
        self.apply_button.setToolTip("Put every recommended setting into the training settings")
        self.analyse_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.apply_button.clicked.connect(self.apply)
        self.progress = QProgressBar(objectName="advisorProgress")
        self.status = QLabel(objectName="advisorStatus")
        self.status.setTextFormat(Qt.PlainText)  # a failure may quote an image file, never markup
        self.status.setWordWrap(True)
        self.summary = QLabel(objectName="advisorSummary")
        self.summary.setTextFormat(Qt.PlainText)  # it may name the user's files (what the scan left out)
        self.summary.setWordWrap(True)
        self.summary.hide()  # until there is a result
        # Two columns (setting, value) with each reason on its own full-width row below: a third
        # column for the reasons left them a few words wide and clipped at the default window size.
        self.grid = QGridLayout()
        self.grid.setColumnStretch(1, 1)
        self.grid.setHorizontalSpacing(12)
        self.grid.setVerticalSpacing(2)
        buttons = QHBoxLayout()
        for button in (self.analyse_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.apply_button)
        inner = QVBoxLayout(box)
        inner.addWidget(intro)
        inner.addLayout(buttons)
        inner.addWidget(self.progress)
        inner.addWidget(self.summary)
        inner.addLayout(self.grid)
        inner.addWidget(self.status)
        inner.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    def _set_running(self, running: bool) -> None:
        self.analyse_button.setEnabled(not running)
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running)
        usable = not running and self.recommendation is not None and not self.is_stale()
        in_place = usable and self.is_in_place()
        self.apply_button.setEnabled(usable and not in_place)
        self.apply_button.setToolTip("The Train step uses every recommended setting already" if in_place
                                     else "Put every recommended setting into the training settings")

    # ---- running ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def _target(self) -> tuple[str, str, bool]:
        """What an analysis is of: the model, the dataset, and whether the weights are pretrained (random
        weights get other advice)."""
        scan = self.session.scan
        config = self.session.config
        return config.model, str(scan.root) if scan is not None else config.data_dir, config.pretrained

    def start(self) -> None:
        if self.running:
            return
        if self.session.scan is None and not self.session.config.data_dir:
            self.status.setText("Open a dataset folder first (the Data step).")
            return
        config, scan, target = self.session.config, self.session.scan, self._target()

        def analyse(report, cancelled):
            from tl_studio.core.advisor import analyse_dataset

            share_the_cpu_with_the_window()
            return target, analyse_dataset(config, scan, progress=report, cancel=cancelled)

        self._clear_results()  # a new analysis replaces the old one; Apply waits for it
        self.status.setText(f"Analysing the dataset with {config.model}…")
        self.progress.setRange(0, 0)
        self.task = self.tasks.start(analyse, "advisor")
        self.task.progress.connect(self._on_progress)
        self.task.succeeded.connect(self._on_succeeded)
        self.task.failed.connect(self._on_failed)
        self.task.cancelled.connect(self._on_cancelled)
        self._set_running(True)

    def cancel(self) -> None:
        if self.running:
            self.task.cancel()
            self.status.setText("Cancelling…")

    def _on_progress(self, event) -> None:
        self.progress.setRange(0, max(1, event.total))
        self.progress.setValue(event.done)
        self.progress.setFormat(event.text)

    def _on_succeeded(self, result) -> None:
        # let the task's thread end before creating widgets: see LrFinderDialog._on_succeeded
        self.task.wait(10_000)
        self.show_recommendation(*result)

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)
        self._set_running(False)
        self.failed.emit(message)

    def _on_cancelled(self) -> None:
        self.status.setText("Analysis cancelled.")
        self._set_running(False)

    # ---- the result ---------------------------------------------------------------------------------
    def show_recommendation(self, target: tuple[str, str, bool], recommendation) -> None:
        self.recommendation, self._analysed_for = recommendation, target
        problems = f"\n{recommendation.dataset_problems}" if recommendation.dataset_problems else ""
        self.summary.setText(recommendation.summary + problems)
        self.summary.show()
        self._fill_grid(recommendation)
        self.status.setText(f"Analysed in {recommendation.seconds:.1f} s. Apply sets all of these at once; you "
                            f"can still change any of them on the Train step.")
        self._set_running(False)
        self.recommendationReady.emit(recommendation)

    def _clear_results(self) -> None:
        self.recommendation = self._analysed_for = None
        self.summary.hide()
        while self.grid.count():
            self.grid.takeAt(0).widget().deleteLater()

    def _fill_grid(self, recommendation) -> None:
        while self.grid.count():
            self.grid.takeAt(0).widget().deleteLater()
        for number, item in enumerate(recommendation.advice):
            name = QLabel(f"<b>{LABELS.get(item.setting, item.setting)}</b>")
            value = QLabel(shown_value(item.setting, item.value, recommendation))
            value.setObjectName(f"advice_{item.setting}")
            value.setWordWrap(True)
            reason = QLabel(item.reason)
            reason.setWordWrap(True)
            reason.setObjectName(f"reason_{item.setting}")
            reason.setContentsMargins(12, 0, 0, 6)
            for label in (name, value, reason):
                label.setAlignment(Qt.AlignLeft | Qt.AlignTop)
                label.setTextInteractionFlags(Qt.TextSelectableByMouse)
            self.grid.addWidget(name, 2 * number, 0)
            self.grid.addWidget(value, 2 * number, 1)
            self.grid.addWidget(reason, 2 * number + 1, 0, 1, 2)

    def is_stale(self) -> bool:
        return self.recommendation is not None and self._analysed_for != self._target()

    def is_in_place(self) -> bool:
        """The training settings hold every recommended value already: Apply would change nothing (a
        second press after Apply seemed to do something, or to have failed the first time)."""
        config = self.session.config
        return self.recommendation is not None and config.replace(**self.recommendation.config_changes()) == config

    def _dataset_changed(self, scan) -> None:
        """Another folder's figures ("245 training images in 2 classes") under "Recommended settings for
        this dataset" read as this one's: they go. The same folder rescanned (an image moved) keeps them,
        marked for analysing again; so does another model, which the user may switch back from."""
        if self._analysed_for is not None and scan is not None and self._analysed_for[1] != str(scan.root):
            self._clear_results()
            self.status.setText(f"Analyse to get recommendations for {scan.root.name}.")
            self._set_running(self.running)
            return
        self._check_stale()

    def _check_stale(self) -> None:
        if self.is_stale():
            self.status.setText("The model, its starting weights or the dataset changed since this analysis; "
                                "analyse again.")
        self._set_running(self.running)

    def apply(self) -> None:
        if self.recommendation is None or self.is_stale():
            return
        changes = self.recommendation.config_changes()
        self.session.update_config(**changes)
        self.status.setText("Applied: the Train step now uses these settings.")
        if hasattr(self.session, "say"):
            self.session.say("Recommended training settings applied.")
        self.applied.emit(changes)

    # ---- closing ------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancels a running analysis and waits for its thread (closing the window)."""
        self.tasks.shutdown()
