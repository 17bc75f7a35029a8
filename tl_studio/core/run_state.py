"""The mutable state of one training run and the steps that change it: entering a phase, running an
epoch, checkpointing, exporting the best epoch. The Trainer (engine.py) sequences these steps."""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from tl_studio.core import checkpoint as ckpt
from tl_studio.core import events, loops
from tl_studio.core.device import use_channels_last
from tl_studio.core.config import TrainConfig
from tl_studio.core.errors import UserError
from tl_studio.core.run_data import RunData


# A new head needs enough updates to converge. On a small dataset an epoch is a handful of them (245
# images at batch 32: 8), and a half-trained head also sends large, damaging gradients into the layers
# the fine-tune schedule unfreezes next. On cached features a pass costs milliseconds, so an epoch of a
# frozen-backbone phase repeats its pass until the phase has made at least this many updates.
HEAD_MIN_STEPS = 100
# The fine-tuning phase after it adapts pretrained layers to a head that already works: small steps
# (and BatchNorm statistics kept, see _step_context) move them without undoing what they learnt.
FINE_TUNE_PHASE_LR = {"adamw": 1e-4, "sgd": 1e-3}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class RunState:
    def __init__(self, trainer, config: TrainConfig, data: RunData, model, device, spec):
        self.trainer = trainer
        self.callbacks = trainer.callbacks
        self.control = trainer.control
        self.run_dir: Path = trainer.run_dir
        self.config = config
        self.data = data
        self.model = model
        self.device = device
        self.spec = spec
        self.epoch = 0  # last finished epoch
        self.step = 0
        self.history: list[events.EpochEnd] = []
        self.best_epoch: int | None = None
        self.best_val_acc: float | None = None
        self.best_val_loss = math.inf
        self.lowest_val_loss = math.inf
        self.epochs_without_improvement = 0
        self.skipped: dict[str, events.ImageSkipped] = {}
        self.phase = None
        self.optimizer = self.scheduler = self.scaler = None
        self.features: dict | None = None  # "train"/"val" FeatureSets while the backbone is frozen
        self.resume_payload: dict | None = None
        self._epoch_skips = 0
        self._current_epoch = 0

    # ---- set-up ----------------------------------------------------------------------------------
    @classmethod
    def prepare(cls, trainer, resume: bool) -> "RunState":
        from tl_studio.core.catalog import get_model_info
        from tl_studio.core.device import resolve_device
        from tl_studio.core.fileio import check_writable_folder
        from tl_studio.core.models import build_model
        from tl_studio.core.preprocess import PreprocessSpec

        config = trainer.config
        payload = _existing_run(trainer.run_dir, resume)
        scan = trainer.scan or _scan(config)
        check_writable_folder(trainer.run_dir)
        device = resolve_device(config.device, config.amp)
        seed_everything(config.seed)
        spec = PreprocessSpec.for_model(get_model_info(config.model), config.img_size)
        model = build_model(config.model, len(scan.classes), config.weights,
                            cancel=trainer.control.is_cancelled)
        data = RunData(scan, config, spec, device, trainer.mp_context)
        state = cls(trainer, config, data, model.to(device.device), device, spec)
        if payload is not None:
            state._restore(payload)
        config.save(trainer.run_dir / "config.json")
        return state

    def _restore(self, payload: dict) -> None:
        if payload["config"]["model"] != self.config.model or list(payload["classes"]) != list(self.data.classes):
            raise UserError("This run folder was trained with another model or other classes; "
                            "start a new run in another folder.")
        self.model.load_state_dict(payload["model"])
        self.epoch, self.step = int(payload["epoch"]), int(payload["step"])
        self.data.batch_size = int(payload["batch_size"])
        self.history = [events.EpochEnd(**row) for row in payload["history"]]
        best = payload["best"]
        self.best_epoch, self.best_val_acc = best["epoch"], best["val_acc"]
        self.best_val_loss, self.lowest_val_loss = best["val_loss"], best["lowest_val_loss"]
        self.epochs_without_improvement = best["epochs_without_improvement"]
        ckpt.restore_rng_state(payload["rng"])
        self.resume_payload = payload

    def fit_start_event(self, first_phase) -> events.FitStart:
        from tl_studio.core.models import freeze

        report = freeze(self.model, first_phase.freeze)  # the counts the user will see train first
        data = self.data
        return events.FitStart(
            run_dir=str(self.run_dir), classes=tuple(data.classes), num_train=len(data.train_records),
            num_val=len(data.val_records), epochs=self.config.epochs, start_epoch=self.epoch + 1,
            batches_per_epoch=self._steps_per_epoch(first_phase), device=self.device.description,
            trainable_params=report.trainable_params, total_params=report.total_params,
            feature_cache=self.config.feature_cache and first_phase.freeze == "all",
            class_weights=tuple(data.class_weights.tolist()) if data.class_weights is not None else None,
            notes=tuple(data.notes), history=tuple(self.history))

    # ---- phases -----------------------------------------------------------------------------------
    def enter_phase(self, phase) -> None:
        from tl_studio.core.models import freeze

        self.phase = phase
        report = freeze(self.model, phase.freeze)
        self.features = None
        if use_channels_last(self.device, self.model, training=True):
            self.model.to(memory_format=torch.channels_last)
        first = max(phase.first_epoch, self.epoch + 1)
        self._make_optimizer(phase, epochs=phase.last_epoch - first + 1)
        self._restore_optimizer(phase)
        self.callbacks.on_phase_start(events.PhaseStart(
            name=phase.name, first_epoch=first, trainable_params=report.trainable_params,
            description=_phase_description(phase, report)))

    def _make_optimizer(self, phase, epochs: int) -> None:
        from tl_studio.core.optim import make_optimizer, make_scheduler, param_groups

        lr = self._phase_lr(phase)
        self.optimizer = make_optimizer(param_groups(self.model, lr, phase.stage_lr_factor), self.config)
        self.scheduler = make_scheduler(self.optimizer, self.config, self._steps_per_epoch(phase) * epochs)
        fp16 = self.device.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None

    def _phase_lr(self, phase) -> float:
        """config.lr (set by hand or from the LR finder) is the rate of the phase that trains at the
        config's freeze depth; the head phase of the fine-tune schedule uses the head-only default."""
        if phase.name == "head":
            return self.config.replace(freeze="all", lr=None).resolved_lr()
        if phase.name == "fine-tune" and self.config.lr is None:
            return FINE_TUNE_PHASE_LR[self.config.optimizer]
        return self.config.replace(freeze=phase.freeze).resolved_lr()

    def _phase_uses_cache(self, phase) -> bool:
        return self.config.feature_cache and phase.freeze == "all"

    def _steps_per_epoch(self, phase) -> int:
        """Optimizer steps in one epoch of ``phase``. On cached features no batch is dropped (a head has
        no BatchNorm to break on a batch of one), and a small dataset gets several passes."""
        if not self._phase_uses_cache(phase):
            return self.data.steps_per_epoch()
        return math.ceil(self._feature_passes(phase) * len(self.data.train_records) / self.data.batch_size)

    def _feature_passes(self, phase) -> int:
        """Passes over the cached features per epoch, enough for HEAD_MIN_STEPS updates in the phase."""
        if not self._phase_uses_cache(phase):
            return 1
        images = len(self.data.train_records) * (phase.last_epoch - phase.first_epoch + 1)
        return max(1, math.ceil(HEAD_MIN_STEPS * self.data.batch_size / images))

    def _restore_optimizer(self, phase) -> None:
        """Resuming in the phase the checkpoint was written in: continue its optimizer and schedule,
        unless the run was extended (more epochs), which starts a fresh schedule for the rest."""
        payload = self.resume_payload
        if payload is None or payload["phase"] != phase.name:
            return
        self.resume_payload = None
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload["config"]["epochs"] == self.config.epochs:
            self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])

    @property
    def uses_feature_cache(self) -> bool:
        return self.config.feature_cache and self.phase.freeze == "all"

    # ---- one epoch --------------------------------------------------------------------------------
    def run_epoch(self, epoch: int, phase) -> bool:
        """Trains and validates one epoch, reports it and checkpoints. True: stop early."""
        from tl_studio.core.device import peak_memory_mb

        self._current_epoch, self._epoch_skips = epoch, 0
        started = time.perf_counter()
        train = self._with_oom_recovery(self._train_once)
        train_seconds = time.perf_counter() - started
        val = self._with_oom_recovery(self._validate_once)
        event = self._epoch_event(epoch, train, val, time.perf_counter() - started, train_seconds,
                                  peak_memory_mb(self.device))
        self.history.append(event)
        self.epoch = epoch
        self._save_checkpoints(event)
        self.callbacks.on_epoch_end(event)
        self.callbacks.on_sample_predictions(self.data.sample_predictions(epoch, val.probabilities))
        return self._should_stop_early(event)

    def _train_once(self) -> loops.EpochTotals:
        ctx = self._step_context()
        if self.uses_feature_cache:
            features = self._cached_features(ctx)
            generator = torch.Generator().manual_seed(self.config.seed * 1000 + self._current_epoch)
            return loops.train_on_features(_head(self.model), self._classify, features["train"], self.data.batch_size,
                                           generator, ctx, passes=self._feature_passes(self.phase))
        loader = self.data.train_loader()
        # the shuffle is seeded per epoch (as the feature path is), so a resumed run sees the same order
        loader.generator.manual_seed(self.config.seed * 1000 + self._current_epoch)
        return loops.train_on_images(self.model, loader, ctx)

    def _validate_once(self) -> loops.EpochTotals:
        keep = set(self.data.sample_indices)
        if self.uses_feature_cache:
            return loops.validate_on_features(_head(self.model), self._classify, self.features["val"], 256, keep)
        return loops.validate_on_images(self.model, self.data.val_loader(), self._step_context(), keep)

    def _classify(self, features: torch.Tensor) -> torch.Tensor:
        from tl_studio.core.models import classify_features

        return classify_features(self.model, features)

    def _cached_features(self, ctx) -> dict:
        """Computed in the first epoch of a frozen-backbone phase (progress reported), then reused."""
        if self.features is None:
            from tl_studio.core.features import extract_features

            total = len(self.data.train_records) + len(self.data.val_records)
            offset = {"train": 0, "val": len(self.data.train_records)}
            result = {}
            for split, loader in (("train", self.data.train_eval_loader()), ("val", self.data.val_loader())):
                def on_batch(batch, done, split=split):
                    self._report_failures(batch.failures, split)
                    self.callbacks.on_feature_progress(events.FeatureProgress(offset[split] + done, total))
                    self.control.checkpoint()
                result[split] = extract_features(self.model, loader, self.device.device,
                                                 amp_dtype=self.device.amp_dtype, on_batch=on_batch)
            self.data.release_feature_loaders()
            self.features = result
        return self.features

    def _step_context(self) -> loops.StepContext:
        from tl_studio.core.optim import make_criterion

        return loops.StepContext(
            optimizer=self.optimizer, scheduler=self.scheduler,
            criterion=make_criterion(self.data.class_weights_on(self.device.device), self.config.label_smoothing),
            device=self.device.device, amp_dtype=self.device.amp_dtype, scaler=self.scaler,
            channels_last=use_channels_last(self.device, self.model, training=True), between_batches=self.control.checkpoint,
            on_batch=self._on_batch, on_failures=lambda failures: self._report_failures(failures, "train"),
            # the head was trained on features computed with the running statistics: keep them, so
            # unfreezing does not change every feature the head sees (and small batches add no noise)
            freeze_all_norms=self.phase is not None and self.phase.name == "fine-tune")

    def _on_batch(self, batch: int, num_batches: int, loss: float, lr: float, images_per_s: float) -> None:
        self.step += 1
        self.callbacks.on_batch_end(events.BatchEnd(self._current_epoch, batch, num_batches, self.step,
                                                    loss, lr, images_per_s))

    def _report_failures(self, failures: list, split: str) -> None:
        records = self.data.records_of(split)
        for failure in failures:
            self._epoch_skips += 1
            path = str(records[failure.index].path)
            if path not in self.skipped:
                self.skipped[path] = events.ImageSkipped(path, failure.reason)
                self.callbacks.on_image_skipped(self.skipped[path])

    def _with_oom_recovery(self, step):
        """GPU out of memory: halve the batch size and try again, telling the user; at batch size 1
        there is nothing left to lower, so say what else to change."""
        while True:
            try:
                return step()
            except torch.OutOfMemoryError:
                if not self.device.is_cuda or self.data.batch_size <= 1:
                    raise UserError("Out of memory even at batch size 1; choose a smaller model or image "
                                    "size, or train on the CPU.") from None
                torch.cuda.empty_cache()
                old = self.data.batch_size
                self.data.set_batch_size(old // 2)
                self._make_optimizer_keep_state()
                self.callbacks.on_notice(events.Notice(
                    f"The GPU ran out of memory at batch size {old}; continuing with batch size "
                    f"{self.data.batch_size}."))

    def _make_optimizer_keep_state(self) -> None:
        """A smaller batch means more steps per epoch: a new schedule over the remaining epochs, the
        optimizer's moments kept."""
        state = self.optimizer.state_dict()
        remaining = self.phase.last_epoch - self._current_epoch + 1
        self._make_optimizer(self.phase, remaining)
        self.optimizer.load_state_dict(state)

    # ---- bookkeeping ------------------------------------------------------------------------------
    def _epoch_event(self, epoch, train, val, seconds, train_seconds, peak_mb) -> events.EpochEnd:
        improved = self.best_val_acc is None or val.accuracy > self.best_val_acc or (
            val.accuracy == self.best_val_acc and val.loss < self.best_val_loss)
        if improved:
            self.best_epoch, self.best_val_acc, self.best_val_loss = epoch, val.accuracy, val.loss
        return events.EpochEnd(
            epoch=epoch, train_loss=train.loss, train_acc=train.accuracy, val_loss=val.loss, val_acc=val.accuracy,
            lr=float(self.optimizer.param_groups[0]["lr"]), seconds=seconds,
            train_images_per_s=train.seen / max(train_seconds, 1e-9),
            is_best=improved, skipped_images=self._epoch_skips, peak_memory_mb=peak_mb, phase=self.phase.name)

    def _should_stop_early(self, event: events.EpochEnd) -> bool:
        if event.val_loss < self.lowest_val_loss - 1e-4:
            self.lowest_val_loss, self.epochs_without_improvement = event.val_loss, 0
        else:
            self.epochs_without_improvement += 1
        patience = self.config.early_stopping_patience
        if patience and self.epochs_without_improvement >= patience:
            self.callbacks.on_notice(events.Notice(
                f"Stopped early: val loss has not improved for {patience} epochs (best at epoch {self.best_epoch}). "
                + self._next_time()))
            return True
        return False

    def _next_time(self) -> str:
        """The same advice as the overfitting hint and the advisor: what to change for the next run."""
        from tl_studio.core.advice_rules import overfitting_remedies, remedies_sentence
        from tl_studio.core.models import model_stages

        best = min(self.history, key=lambda e: e.val_loss).epoch
        return remedies_sentence(overfitting_remedies(self.config.freeze, self.config.augment, best,
                                                      len(model_stages(self.model)), self.config.feature_cache))

    def _common_payload(self) -> dict:
        return {"config": self.config.to_dict(), "classes": list(self.data.classes),
                "preprocess": self.spec.to_dict(), "model_name": self.config.model}

    def _save_checkpoints(self, event: events.EpochEnd) -> None:
        model_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if event.is_best:
            ckpt.save_checkpoint(self.run_dir / ckpt.BEST, {
                **self._common_payload(), "model": model_state, "epoch": event.epoch, "val_acc": event.val_acc})
        ckpt.save_checkpoint(self.run_dir / ckpt.LAST, {
            **self._common_payload(), "model": model_state, "epoch": self.epoch, "step": self.step,
            "phase": self.phase.name, "batch_size": self.data.batch_size,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None, "rng": ckpt.capture_rng_state(),
            "history": [_event_fields(e) for e in self.history],
            "best": {"epoch": self.best_epoch, "val_acc": self.best_val_acc, "val_loss": self.best_val_loss,
                     "lowest_val_loss": self.lowest_val_loss,
                     "epochs_without_improvement": self.epochs_without_improvement}})

    def export_best(self, path: Path) -> Path:
        from tl_studio.core.export import export_model, metadata_for_run

        best = ckpt.load_checkpoint(self.run_dir / ckpt.BEST)
        network = copy.deepcopy(self.model).cpu().float().to(memory_format=torch.contiguous_format)
        network.load_state_dict(best["model"])
        metadata = metadata_for_run(self.config, self.data.classes, self.spec, best["epoch"], best["val_acc"])
        return export_model(network, self.spec, metadata, path, "pt2", self.data.check_images()).path


def _event_fields(event: events.EpochEnd) -> dict:
    from dataclasses import asdict

    return asdict(event)


def _head(model):
    from tl_studio.core.models import head_of

    return head_of(model)


def _phase_description(phase, report) -> str:
    trainable = f"{report.trainable_params:,} of {report.total_params:,} parameters train"
    if phase.name == "head":
        return f"Phase 1: training the new head on the frozen backbone ({trainable})."
    if phase.name == "fine-tune":
        return f"Phase 2: fine-tuning with smaller rates for earlier stages ({trainable})."
    return f"Training: {trainable}."


RUN_FILES = {"config.json", "metrics.csv", ckpt.LAST, ckpt.BEST, "model.pt2"}


def _existing_run(run_dir: Path, resume: bool) -> dict | None:
    """The checkpoint to resume from; a new run only goes into a new or empty folder (or one left by a
    run that never finished an epoch), so nothing the user keeps there is overwritten."""
    run_dir = Path(run_dir)
    last = run_dir / ckpt.LAST
    if resume:
        return ckpt.load_checkpoint(last)
    if last.exists():
        raise UserError(f"{run_dir} already holds a run; add --resume to continue it, "
                        f"or choose another output folder.")
    if run_dir.is_dir() and any(p.name not in RUN_FILES and not p.name.startswith(".") for p in run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty; choose a new or empty output folder for the run.")
    return None


def _scan(config: TrainConfig):
    from tl_studio.core.data import scan_dataset

    if not config.data_dir:
        raise UserError("No dataset folder given; choose a folder with one sub-folder per class.")
    return scan_dataset(config.data_dir, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                        seed=config.seed)
