"""The model, data and device of one run, and the passes of one epoch over them: train, validate,
fill the feature cache, each retried with a smaller batch after running out of memory.

The loop (engine.py) sequences phases and epochs; judging epochs, checkpoints and files are callbacks
(epoch_rules.py, run_writers.py). RunState knows the callbacks only to report what happens inside an
epoch (batches, skipped images, notices), never the Trainer.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

from tl_studio.core import checkpoint as ckpt
from tl_studio.core import events, loops
from tl_studio.core.device import autocast_dtype, use_channels_last
from tl_studio.core.config import TrainConfig, plan_phases, uses_feature_cache
from tl_studio.core.diagnostics import cached_passes_note
from tl_studio.core.errors import DatasetError, UserError
from tl_studio.core.gpu_decoding import GpuDecoder
from tl_studio.core.run_data import RunData
from tl_studio.core.transforms import Normalise, pixel_augmentation

# A new head needs enough updates to converge. On a small dataset an epoch is a handful of them (245
# images at batch 32: 8), and a half-trained head also sends large, damaging gradients into the layers
# the fine-tune schedule unfreezes next. On cached features a pass costs milliseconds, so an epoch of a
# frozen-backbone phase repeats its pass until the phase has made at least this many updates.
HEAD_MIN_STEPS = 100


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class EpochResult:
    train: loops.EpochTotals
    val: loops.EpochTotals
    train_seconds: float  # the training pass, feature extraction included
    train_images: int  # distinct training images seen (a frozen-backbone epoch repeats its passes)
    feature_images_per_s: float | None  # when the feature cache was filled in this epoch
    skipped_images: int  # images that failed to load in this epoch


class RunState:
    def __init__(self, config: TrainConfig, data: RunData, model, device, spec, callbacks, control, strategy=None):
        from tl_studio.core.strategy import SingleProcess

        self.config, self.data, self.model, self.device, self.spec = config, data, model, device, spec
        self.callbacks, self.control = callbacks, control
        self.strategy = strategy or SingleProcess()
        self.train_model = model  # what the training pass runs: the model, or DDP around it
        self.epoch = 0  # last finished epoch
        self.step = 0
        self.history: list[events.EpochEnd] = []
        self.skipped: dict[str, events.ImageSkipped] = {}
        self.phase = None
        self.policy = None  # the phase's optim.PhasePolicy
        self.features: dict | None = None  # "train"/"val" FeatureSets while the backbone is frozen
        self.resume_payload: dict | None = None
        self._epoch_skips = 0
        self._current_epoch = 0
        self._val_logits = None  # (logits, labels) of the last validation, when kept (_keeps_val_logits)
        self.best_val_logits = None  # ... of the best epoch of this process's run (calibrates model.pt2)

    # ---- set-up ----------------------------------------------------------------------------------
    @classmethod
    def prepare(cls, config: TrainConfig, scan, payload: dict | None, callbacks, control, mp_context=None,
                strategy=None):
        from tl_studio.core import backbone_facts
        from tl_studio.core.catalog import get_model_info
        from tl_studio.core.device import loader_workers, resolve_device
        from tl_studio.core.models import build_model
        from tl_studio.core.preprocess import PreprocessSpec

        from tl_studio.core.strategy import SingleProcess

        strategy = strategy or SingleProcess()
        device = strategy.place(resolve_device(config.device, config.amp))
        # the run's config.json records the number used: the workers' seeds shape the augmentation
        config = config.replace(workers=loader_workers(config.workers, device, strategy.local_world_size))
        spec = PreprocessSpec.for_model(get_model_info(config.model), config.img_size)
        # Seeded here, right before the first random draw of the run (the new head's initial weights):
        # whatever ran before (building the model catalogue cache on a first run) cannot shift it.
        seed_everything(config.seed)
        model = build_model(config.model, len(scan.classes), config.weights, cancel=control.is_cancelled)
        backbone_facts.stamp(model)  # as loaded: a later analysis may find this run's features by it
        if payload is None:  # a run trained so before still resumes
            from tl_studio.core.config import refuse_a_depth_that_freezes_every_stage
            from tl_studio.core.models import model_stages

            refuse_a_depth_that_freezes_every_stage(config, len(model_stages(model)))
        data = RunData(scan, config, spec, device, mp_context, strategy)
        state = cls(config, data, model.to(device.device), device, spec, callbacks, control, strategy)
        if payload is not None:
            state._restore(payload)
        return state

    def _restore(self, payload: dict) -> None:
        trained_model, trained_classes = payload["config"]["model"], list(payload["classes"])
        if trained_model != self.config.model:
            raise UserError(f"This run folder was trained with {trained_model}, not {self.config.model}; resume it "
                            f"with {trained_model}, or start a new run in another folder.")
        if trained_classes != list(self.data.classes):
            raise UserError(f"This run folder was trained on the classes {', '.join(trained_classes)}, and the data "
                            f"set now has {', '.join(self.data.classes)}; resume it on its own classes, or start a "
                            "new run in another folder.")
        _check_the_optimizer_state_carries_over(payload, self.config)
        self.model.load_state_dict(payload["model"])
        self.epoch, self.step = int(payload["epoch"]), int(payload["step"])
        self.data.set_batch_size(int(payload["batch_size"]))
        self.history = [events.EpochEnd(**row) for row in payload["history"]]
        ckpt.restore_rng_state(payload["rng"])
        self.resume_payload = payload

    def fit_start_event(self, run_dir, first_phase) -> events.FitStart:
        from tl_studio.core.diagnostics import setup_notes
        from tl_studio.core.models import freeze

        report = freeze(self.model, first_phase.freeze)  # the counts the user will see train first
        data = self.data
        return events.FitStart(
            run_dir=str(run_dir), classes=tuple(data.classes), num_train=len(data.train_records),
            num_val=len(data.val_records), epochs=self.config.epochs, start_epoch=self.epoch + 1,
            batches_per_epoch=self.steps_per_epoch(first_phase), device=self.device.description,
            trainable_params=report.trainable_params, total_params=report.total_params,
            feature_cache=self._uses_cache(first_phase),
            class_weights=tuple(data.class_weights.tolist()) if data.class_weights is not None else None,
            notes=(*data.notes, *setup_notes(self.config, report.depth), *self._passes_note(first_phase)),
            history=tuple(self.history),
            processes=self.strategy.world_size)

    # ---- phases -----------------------------------------------------------------------------------
    def enter_phase(self, phase) -> events.PhaseStart:
        from tl_studio.core.models import freeze
        from tl_studio.core.optim import PhasePolicy

        self.phase = phase
        report = freeze(self.model, phase.freeze)
        self.features = None
        if self._precision("train")[1]:
            self.model.to(memory_format=torch.channels_last)
        # On cached features every process trains the same head on all of them (milliseconds, and
        # no gradients to exchange); images are shared out, so their gradients are averaged (DDP).
        self.train_model = self.model if self._uses_cache(phase) else self.strategy.wrap(self.model)
        first = max(phase.first_epoch, self.epoch + 1)
        self.policy = PhasePolicy(self.model, phase, self.config, self._phase_steps(first),
                                  fp16=self.device.amp_dtype == torch.float16)
        payload = self.resume_payload
        if payload is not None and payload["phase"] == phase.name:
            # resuming in the phase the checkpoint was written in: continue its optimizer and
            # schedule, unless the run was extended (more epochs): a fresh schedule for the rest then
            self.resume_payload = None
            self.policy.load_state_dict(payload, schedule=payload["config"]["epochs"] == self.config.epochs)
        return events.PhaseStart(name=phase.name, first_epoch=first, trainable_params=report.trainable_params,
                                 description=_phase_description(phase, report), feature_cache=self._uses_cache(phase))

    def _phase_steps(self, first_epoch: int) -> int:
        return self.steps_per_epoch(self.phase) * (self.phase.last_epoch - first_epoch + 1)

    def _uses_cache(self, phase) -> bool:
        return uses_feature_cache(self.config, phase)

    def steps_per_epoch(self, phase) -> int:
        """Optimizer steps in one epoch of ``phase``. On cached features no batch is dropped (a head has
        no BatchNorm to break on a batch of one), and a small dataset gets several passes."""
        if not self._uses_cache(phase):
            return self.data.steps_per_epoch()
        return math.ceil(self._feature_passes(phase) * len(self.data.train_records) / self.data.batch_size)

    def _passes_note(self, phase) -> tuple[str, ...]:
        """An epoch of more than one pass is said: --epochs reads "passes over the training images", and
        the train accuracy counts every pass (a user found 1715 = 7 x 245 images in it)."""
        passes = self._feature_passes(phase)
        if passes == 1:
            return ()
        return (cached_passes_note(len(self.data.train_records), passes, HEAD_MIN_STEPS,
                                   two_phase=phase.name == "head"),)

    def _feature_passes(self, phase) -> int:
        """Passes over the cached features per epoch, enough for HEAD_MIN_STEPS updates in the phase."""
        if not self._uses_cache(phase):
            return 1
        images = len(self.data.train_records) * (phase.last_epoch - phase.first_epoch + 1)
        return max(1, math.ceil(HEAD_MIN_STEPS * self.data.batch_size / images))

    # ---- one epoch --------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> EpochResult:
        self._current_epoch, self._epoch_skips = epoch, 0
        clock = self.control.clock  # the time paused is left out of every rate
        started = clock()
        feature_rate = None
        on_features = self._uses_cache(self.phase)
        if on_features and self.features is None:
            self._retrying_on_oom("inference", self._fill_feature_cache)
            self._check_some_loaded("train", len(self.features["train"]))
            self._check_some_loaded("val", len(self.features["val"]))
            feature_rate = (len(self.features["train"]) + len(self.features["val"])) / max(clock() - started, 1e-9)
        try:
            train = self._retrying_on_oom("train", self._train_once, snapshot=self._snapshot())
        except loops.NonFiniteLoss as error:
            raise UserError(_non_finite_message("training", epoch, error.value, self.policy.lr)) from None
        if not on_features:  # features were checked once, when they were computed
            self._check_some_loaded("train", train.seen)
        train_seconds = clock() - started
        val = self._retrying_on_oom("inference", self._validate_once)
        if not on_features:
            self._check_some_loaded("val", val.seen)
        if val.seen and not math.isfinite(val.loss):  # the last step left weights that give nan
            raise UserError(_non_finite_message("validation", epoch, val.loss, self.policy.lr))
        self._val_logits = val.logit_arrays()
        skips = self.strategy.reduce_count(self._epoch_skips)
        self._merge_skipped_of_all_processes()
        return EpochResult(train, val, train_seconds, train.seen // self._feature_passes(self.phase), feature_rate,
                           skips)

    def _check_some_loaded(self, split: str, count: int) -> None:
        """Ends the run with a sentence when no image of ``split`` loaded (in any process): its folder was
        moved, deleted or unplugged after the scan. Without this the first empty batch of features failed
        as "mat1 and mat2 shapes cannot be multiplied (0x0 and 1280x2)"."""
        if self.strategy.reduce_count(count):
            return
        name = "training" if split == "train" else "validation"
        first = next(iter(self.skipped.values()), None)
        example = f" The first failure, {os.path.basename(first.path)}: {first.reason}." if first else ""
        raise DatasetError(f"None of the {len(self.data.records_of(split))} {name} images could be loaded; has "
                           f"{self.config.data_dir} moved or changed since it was scanned? Check the folder and "
                           f"train again.{example}")

    def finish_epoch(self, event: events.EpochEnd) -> None:
        self.history.append(event)
        self.epoch = event.epoch
        if event.is_best:
            self.best_val_logits = self._val_logits

    def _train_once(self) -> loops.EpochTotals:
        ctx = self._step_context()
        shuffle_seed = self.config.seed * 1000 + self._current_epoch  # per epoch, so a resumed run sees the same order
        if self._uses_cache(self.phase):  # the same on every process: nothing to reduce
            generator = torch.Generator().manual_seed(shuffle_seed)
            return loops.train_on_features(_head(self.model), self._classify, self.features["train"],
                                           self.data.batch_size, generator, ctx,
                                           passes=self._feature_passes(self.phase))
        loader = self.data.train_loader()
        loader.generator.manual_seed(shuffle_seed)
        loader.augmentation_seeds.set_epoch_seed(shuffle_seed)  # the epoch's crops and flips: a resume sees the same
        self.strategy.set_epoch(loader.augmentation_seeds.indices, self._current_epoch)
        return self.strategy.reduce_totals(loops.train_on_images(self.train_model, loader, ctx))

    def _validate_once(self) -> loops.EpochTotals:
        keep = set(self.data.sample_indices)
        if self._uses_cache(self.phase):
            return loops.validate_on_features(_head(self.model), self._classify, self.features["val"],
                                              self.data.inference_batch_size, keep, self._keeps_val_logits())
        self.strategy.sync_buffers(self.model)
        ctx = dataclasses.replace(self._step_context(), amp_dtype=self._precision("validate")[0],
                                  between_batches=self._inference_checks("val", extra=1))
        return self.strategy.reduce_totals(loops.validate_on_images(
            self.model, self.data.val_loader(), ctx, keep, self._keeps_val_logits(),
            inference_copy=self._inference_copy if self.device.device.type == "cpu" else None))

    def _inference_copy(self, model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.nn.Module, bool]:
        """On the CPU, validation runs a copy of the model with its BatchNorms folded into the
        convolutions before them (bn_folding.py, checked on two of ``images``), in the layout that is
        fastest for inference (device.use_channels_last), which for ResNets is not the training one.
        Measured on the 2-core CPU, resnet18 at batch 16 in float32: 294 ms -> 220 ms a batch, the copy
        made in 0.1 s. Not on a GPU: a second copy of the weights there would take memory the training
        needs."""
        from tl_studio.core.bn_folding import folded_for_inference

        folded = folded_for_inference(model, images[:2], lambda network, inputs: network(inputs))
        if folded is model:  # nothing folded, or the check failed: the model as it trains
            return model, self._precision("train")[1]
        channels_last = self._precision("validate")[1]
        return folded.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format), channels_last

    def _precision(self, purpose: str) -> tuple[torch.dtype | None, bool]:
        """(autocast dtype or None, channels_last) for this model on this device for ``purpose`` (see
        device.autocast_dtype; device.py decides both)."""
        dtype = autocast_dtype(self.device, self.model, purpose=purpose)
        return dtype, use_channels_last(self.device, self.model, training=purpose == "train", autocast=dtype)

    @property
    def validates_in_float32(self) -> bool:
        """Whether validation (on images, or on the val split's cached features) computes what the
        float32 model file computes, so that its logits can calibrate that file."""
        return self._precision("validate")[0] is None

    def _keeps_val_logits(self) -> bool:
        """Validation keeps every image's logits for the model file's calibration when they are the
        float32 file's own, small (up to 5M values, 20 MB), and this is the only process (with several,
        each sees a share and the process writing the model file computes them itself)."""
        return (self.validates_in_float32 and not self.strategy.distributed
                and len(self.data.val_records) * len(self.data.classes) <= 5_000_000)

    def _inference_checks(self, split: str, common: int | None = None, extra: int = 0):
        """Stop/pause checks for an inference pass over this process's share of ``split``: agreed
        across processes while every process has a batch left (``common`` batches, by default those
        of a pass over the whole split; ``extra``: checks the loop makes beyond one per batch), this
        process's own after that."""
        common = (self.data.inference_batches(split)[1] if common is None else common) + extra
        calls = 0

        def check() -> None:
            nonlocal calls
            calls += 1
            self.strategy.between_batches(self.control, collective=calls <= common)
        return check

    def _classify(self, features: torch.Tensor) -> torch.Tensor:
        from tl_studio.core.models import classify_features

        return classify_features(self.model, features)

    def _fill_feature_cache(self) -> None:
        """Run in the first epoch of a frozen-backbone phase (progress reported), then reused."""
        from tl_studio.core.feature_fill import RunFeatureFill

        self.features = RunFeatureFill(self.data, self.model, self.device, self.spec, self.strategy, self.callbacks,
                                       self._report_failures, self._inference_checks, self.control.clock).run()

    def _step_context(self) -> loops.StepContext:
        from tl_studio.core.optim import make_criterion

        amp_dtype, channels_last = self._precision("train")
        return loops.StepContext(
            optimizer=self.policy.optimizer, scheduler=self.policy.scheduler,
            criterion=make_criterion(self.data.class_weights_on(self.device.device), self.config.label_smoothing),
            device=self.device.device, amp_dtype=amp_dtype, scaler=self.policy.scaler, channels_last=channels_last,
            between_batches=lambda: self.strategy.between_batches(self.control),
            on_batch=self._on_batch, on_failures=lambda failures: self._report_failures(failures, "train"),
            # the head was trained on features computed with the running statistics: keep them, so
            # unfreezing does not change every feature the head sees (and small batches add no noise)
            freeze_all_norms=self.phase is not None and self.phase.name == "fine-tune",
            loss_checked_before_backward=self.strategy.distributed, normalise=Normalise(self.spec),
            decode=self._gpu_decoder() if self.data.decodes_on_gpu else None, clock=self.control.clock)

    def _gpu_decoder(self) -> GpuDecoder:
        return GpuDecoder(pixel_augmentation(self.config.augment, self.spec), self.device.device)

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

    def _merge_skipped_of_all_processes(self) -> None:
        """Each process only sees the images of its own share fail; only rank 0 writes the run's report.
        Every process learns every skipped image (name and reason), so the report lists them all, not only
        rank 0's, and all processes keep the same list for the end of the run."""
        mine = [(path, event.reason) for path, event in self.skipped.items()]
        for share in self.strategy.gather_objects(mine):
            for path, reason in share:
                if path not in self.skipped:
                    self.skipped[path] = events.ImageSkipped(path, reason)
                    self.callbacks.on_image_skipped(self.skipped[path])

    # ---- out of memory ----------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        """What a training pass changes, as it was before the pass: an out-of-memory retry starts the
        epoch again from exactly here. Weights are copied to the CPU (no extra accelerator memory)."""
        return {"model": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
                "policy": copy.deepcopy(self.policy.state_dict()), "step": self.step, "skips": self._epoch_skips,
                "rng": ckpt.capture_rng_state()}

    def _restore_snapshot(self, snapshot: dict) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.policy.load_state_dict(snapshot["policy"])
        self.step, self._epoch_skips = snapshot["step"], snapshot["skips"]
        ckpt.restore_rng_state(snapshot["rng"])

    def _retrying_on_oom(self, kind: str, work, snapshot: dict | None = None):
        """``work()``, its batch halved on each out-of-memory error (oom_retry); a training pass starts
        the epoch again from ``snapshot`` with more, smaller steps (a new schedule over the rest of the
        phase, the optimizer's moments kept)."""
        from tl_studio.core.oom_retry import retry_halving_batch

        def start_again() -> None:
            self._restore_snapshot(snapshot)
            self.policy.rebuild(self._phase_steps(self._current_epoch))

        return retry_halving_batch(work, kind, self.data, self.strategy, self.device, self.callbacks.on_notice,
                                   start_again if kind == "train" else None)

    # ---- what the checkpoints and the model file hold ---------------------------------------------
    def common_payload(self) -> dict:
        return {"config": self.config.to_dict(), "classes": list(self.data.classes),
                "preprocess": self.spec.to_dict(), "model_name": self.config.model}

    def resume_payload_fields(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "phase": self.phase.name, "batch_size": self.data.batch_size,
                **self.policy.state_dict(), "rng": ckpt.capture_rng_state(),
                "history": [asdict(e) for e in self.history]}


def _non_finite_message(name: str, epoch: int, value: float, lr: float) -> str:
    return (f"The {name} loss became {value} in epoch {epoch}, so training stopped; the learning rate "
            f"({lr:g}) is probably too high: lower it or let `tl-studio lr-find` pick one. The last finite "
            f"epoch's checkpoint is kept.")


def _head(model):
    from tl_studio.core.models import head_of

    return head_of(model)


def _check_the_optimizer_state_carries_over(payload: dict, config: TrainConfig) -> None:
    """A run resumed in the phase its checkpoint was written in continues that phase's optimizer state,
    which another freeze depth (other parameter groups) or another optimizer (other moments) cannot take:
    it was a KeyError or ValueError deep in torch, after config.json had been rewritten with the new
    settings, so the run would not resume again. Refused here, before anything is written. A resume
    that enters a new phase (a run extended with the two-phase schedule) starts that phase afresh."""
    epoch = int(payload["epoch"]) + 1
    phase = next((p for p in plan_phases(config) if p.first_epoch <= epoch <= p.last_epoch), None)
    if phase is None or phase.name != payload.get("phase"):
        return
    trained = payload["config"]
    changed = [f"--{key} {trained.get(key)} (not {getattr(config, key)})" for key in ("freeze", "optimizer")
               if str(trained.get(key)) != str(getattr(config, key))]
    if changed:
        raise UserError(f"This run was trained with {' and '.join(changed)}, and a resumed run goes on with the "
                        "optimizer state those made: resume it with its own settings, or train with the new ones "
                        "in another folder.")


def _phase_description(phase, report) -> str:
    trainable = f"{report.trainable_params:,} of {report.total_params:,} parameters train"
    if phase.name == "head":
        return f"Phase 1: training the new head on the frozen backbone ({trainable})."
    if phase.name == "fine-tune":
        return f"Phase 2: fine-tuning with smaller rates for earlier stages ({trainable})."
    return f"Training: {trainable}."
