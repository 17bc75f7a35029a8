"""The Train step's settings form: the engine's hyperparameters with defaults and tooltips. It edits
the session's TrainConfig and remembers the choices (QSettings)."""

from __future__ import annotations

import json

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QSpinBox, QVBoxLayout, QWidget)

from tl_studio.core.config import AUTO_WORKERS, TrainConfig

# settings that are remembered between sessions (the dataset and model are remembered elsewhere)
REMEMBERED = ("epochs", "batch_size", "lr", "optimizer", "schedule", "freeze_epochs", "augment", "img_size",
              "device", "workers", "early_stopping_patience", "class_weighting", "label_smoothing", "weight_decay")
SETTINGS_KEY = "train/settings"


def remembered_config(base: TrainConfig) -> TrainConfig:
    try:
        saved = json.loads(QSettings().value(SETTINGS_KEY, "{}"))
        return base.replace(**{k: v for k, v in saved.items() if k in REMEMBERED}).validate()
    except Exception:  # an old or hand-edited value: fall back to the defaults
        return base


def remember_config(config: TrainConfig) -> None:
    QSettings().setValue(SETTINGS_KEY, json.dumps({k: getattr(config, k) for k in REMEMBERED}))


def _combo(items: list[tuple[str, str]], tip: str) -> QComboBox:
    box = QComboBox()
    for value, text in items:
        box.addItem(text, value)
    box.setToolTip(tip)
    return box


def _spin(low: int, high: int, tip: str, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setToolTip(tip)
    return box


class TrainSettings(QWidget):
    """Widgets -> session.update_config(...) on every change; config -> widgets on session changes."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self._updating = False
        self.epochs = _spin(1, 1000, "Passes over the training images. A frozen backbone needs few (3-10); "
                                     "fine-tuning more (10-30).")
        self.epochs.setObjectName("epochsSpin")
        self.batch_size = _spin(1, 1024, "Images per step. Larger is faster on a GPU if memory allows; "
                                         "TL Studio lowers it by itself after a GPU out-of-memory error.")
        self.auto_lr = QCheckBox("automatic")
        self.auto_lr.setToolTip("1e-3 when only the head trains, 3e-4 when fine-tuning, 1e-4 for the fine-tuning "
                                "after a two-phase schedule's head phase (AdamW).")
        self.lr = QDoubleSpinBox(decimals=6, minimum=1e-6, maximum=10.0, singleStep=1e-4)
        self.lr.setToolTip("Peak learning rate of the schedule. Use the learning-rate finder when unsure.")
        self.optimizer = _combo([("adamw", "AdamW"), ("sgd", "SGD with momentum")],
                                "AdamW is robust with little tuning; SGD can generalise slightly better.")
        self.schedule = _combo([("onecycle", "One-cycle"), ("cosine", "Cosine with warm-up"),
                                ("fine-tune", "Two-phase fine-tuning")],
                               "One-cycle warms up then anneals. Two-phase trains the head on the frozen "
                               "backbone first, then unfreezes with smaller rates for earlier layers.")
        self.freeze_epochs = _spin(1, 100, "Head-only epochs before unfreezing (two-phase fine-tuning).")
        self.augment = _combo([("none", "None"), ("light", "Light"), ("standard", "Standard"), ("strong", "Strong")],
                              "Random crops and flips (standard), plus colour and erasing (strong): more "
                              "augmentation fights overfitting on small datasets.")
        self.img_size = _spin(0, 1024, "Input size in pixels; 0 uses the model's own size.", 16)
        self.img_size.setSpecialValueText("model default")
        self.device = _combo([("auto", "Automatic")], "Where to train. A CUDA GPU is much faster than the CPU.")
        # "Automatic: CPU (1 of 2 cores)" or a GPU's name: the form widens to show it whole, not cut.
        self.device.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.workers = _spin(-1, 32, "Processes that decode and augment images in parallel with training. "
                                     f"Automatic: {AUTO_WORKERS} (the GPU trains faster than two can decode).")
        self.workers.setSpecialValueText("automatic")  # the lowest value, -1: TrainConfig.workers None
        self.processes = _spin(1, 1, "Train in several processes, one GPU each (PyTorch's torchrun): each takes "
                                     "its share of every batch. Available with more than one CUDA GPU.")
        self.processes.setObjectName("processesSpin")
        self.processes.setEnabled(False)
        self.early_stopping = _spin(0, 100, "Stop when val loss has not improved for this many epochs; 0 = off.")
        self.early_stopping.setSpecialValueText("off")
        self.class_weighting = _combo([("auto", "Automatic"), ("on", "On"), ("off", "Off")],
                                      "Rarer classes count more in the loss (1/sqrt of their images, at most "
                                      "10x). Automatic switches it on when the largest class has more than 3x "
                                      "the images of the smallest, and leaves a class of fewer than 5 as it is.")
        self._layout()
        self._connect()
        self._restore_remembered()
        self.show_config(session.config)
        session.configChanged.connect(self.show_config)

    def _restore_remembered(self) -> None:
        """The settings chosen at the last launch come back (the README promises it)."""
        config = self.session.config
        remembered = remembered_config(config)
        self.session.update_config(**{k: getattr(remembered, k) for k in REMEMBERED})

    def _layout(self) -> None:
        basic = QGroupBox("Training")
        form = QFormLayout(basic)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch_size)
        lr_row = QHBoxLayout()
        lr_row.addWidget(self.lr, 1)
        lr_row.addWidget(self.auto_lr)
        form.addRow("Learning rate", lr_row)
        form.addRow("Schedule", self.schedule)
        form.addRow("Head-only epochs", self.freeze_epochs)
        form.addRow("Augmentation", self.augment)
        form.addRow("Device", self.device)
        form.addRow("Processes / GPUs", self.processes)
        advanced = QGroupBox("Advanced")
        advanced_form = QFormLayout(advanced)
        advanced_form.addRow("Optimizer", self.optimizer)
        advanced_form.addRow("Image size", self.img_size)
        advanced_form.addRow("Loader workers", self.workers)
        advanced_form.addRow("Early stopping", self.early_stopping)
        advanced_form.addRow("Class weighting", self.class_weighting)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(basic)
        layout.addWidget(advanced)
        layout.addStretch(1)

    def _connect(self) -> None:
        for box in (self.epochs, self.batch_size, self.freeze_epochs, self.img_size, self.workers,
                    self.early_stopping):
            box.valueChanged.connect(self._push)
        self.lr.valueChanged.connect(self._push)
        self.auto_lr.toggled.connect(self._push)
        for box in (self.optimizer, self.schedule, self.augment, self.device, self.class_weighting):
            box.currentIndexChanged.connect(self._push)

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        current = self.session.config.device
        self._updating = True
        self.device.clear()
        from tl_studio.gui.cpu_share import explain_cpu

        for value, text in devices:
            self.device.addItem(text, value)
            self.device.setItemData(self.device.count() - 1, explain_cpu(text), Qt.ToolTipRole)
        self._updating = False
        self._select(self.device, current)

    def set_process_limit(self, limit: int) -> None:
        """One process per CUDA GPU at most (see gui/training.py process_limit); off with one."""
        self.processes.setMaximum(max(1, limit))
        self.processes.setEnabled(limit > 1)

    def show_config(self, config: TrainConfig) -> None:
        self._updating = True
        try:
            self.epochs.setValue(config.epochs)
            self.batch_size.setValue(config.batch_size)
            self.auto_lr.setChecked(config.lr is None)
            self.lr.setEnabled(config.lr is not None)
            self.lr.setValue(config.trained_lr())
            for box, value in ((self.optimizer, config.optimizer), (self.schedule, config.schedule),
                               (self.augment, config.augment), (self.device, config.device),
                               (self.class_weighting, config.class_weighting)):
                self._select(box, value)
            self.freeze_epochs.setValue(config.freeze_epochs)
            self.freeze_epochs.setEnabled(config.schedule == "fine-tune")
            # The head phase trains at its own rate, whatever the rate row says: said where it applies (a
            # note beside "automatic" widened the whole settings column past the window).
            two_phase = config.schedule == "fine-tune"
            self.freeze_epochs.setSuffix(f" at rate {config.head_phase_lr():g}" if two_phase else "")
            self.img_size.setValue(config.img_size or 0)
            self.workers.setValue(-1 if config.workers is None else config.workers)
            self.early_stopping.setValue(config.early_stopping_patience)
        finally:
            self._updating = False

    @staticmethod
    def _select(box: QComboBox, value) -> None:
        index = box.findData(value)
        if index >= 0:
            box.setCurrentIndex(index)

    def _push(self) -> None:
        if self._updating:
            return
        epochs = self.epochs.value()
        changes = dict(
            epochs=epochs, batch_size=self.batch_size.value(),
            lr=None if self.auto_lr.isChecked() else self.lr.value(),
            optimizer=self.optimizer.currentData(), schedule=self.schedule.currentData(),
            freeze_epochs=min(self.freeze_epochs.value(), max(1, epochs - 1)),
            augment=self.augment.currentData(), img_size=self.img_size.value() or None,
            device=self.device.currentData() or "auto",
            workers=None if self.workers.value() < 0 else self.workers.value(),  # -1: "automatic"
            early_stopping_patience=self.early_stopping.value(), class_weighting=self.class_weighting.currentData())
        self.session.update_config(**changes)  # the session keeps schedule and freeze depth compatible
        remember_config(self.session.config)
        self.show_config(self.session.config)

    def set_running(self, running: bool) -> None:
        self.setEnabled(not running)

    @property
    def process_count(self) -> int:
        return self.processes.value() if self.processes.isEnabled() else 1
