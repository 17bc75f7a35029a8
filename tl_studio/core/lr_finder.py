"""The learning-rate finder (Leslie Smith's range test, as fastai's ``lr_find`` popularised it).

Training starts at a tiny learning rate that grows exponentially every step; the loss first barely
moves, then falls, then explodes. The best rate is where the loss falls fastest: high enough to learn
quickly, safely below the explosion. The sweep stops once the loss has clearly diverged.

The sweep trains with the engine's own training step (loops.py: same optimizer, loss, augmentation,
frozen BatchNorm handling), so what it measures is what training will do. With the whole backbone
frozen it trains the head on cached features (seconds); otherwise on augmented image batches.
It never changes the model a user will train: it builds its own, or restores a given one afterwards.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from tl_studio.core.config import TrainConfig
from tl_studio.core.problem_summary import problems_sentence
from tl_studio.core.workbench import (CancelCallback, ProgressCallback, Workbench, check_cancel, open_workbench,
                                      record_features, report, stratified_subsample)

START_LR = 1e-7
END_LR = 10.0
NUM_STEPS = 100
DIVERGENCE_FACTOR = 4.0  # stop once the running loss is this many times its lowest value
MAX_FEATURE_IMAGES = 2000  # the feature-cache sweep needs variety, not the whole of a large dataset


@dataclass(frozen=True)
class LrFindResult:
    lrs: tuple[float, ...]  # the rate of each step
    losses: tuple[float, ...]  # smoothed (what to plot)
    raw_losses: tuple[float, ...]
    suggested_lr: float | None  # where the smoothed loss falls fastest; None when it never fell
    suggested_index: int | None
    min_loss_lr: float | None  # the rate at the lowest smoothed loss (a ceiling, not a choice)
    diverged: bool  # the sweep stopped because the loss exploded
    feature_cache: bool
    model: str
    freeze: str
    seconds: float
    message: str  # one or two sentences for the user
    dataset_problems: str | None = None  # what the scan found wrong, in one sentence (problem_summary.py)

    def to_dict(self) -> dict:
        return asdict(self)


class _SweepOver(Exception):
    """Raised between batches once the sweep has all its points (or the loss diverged)."""


def find_lr(config: TrainConfig, scan=None, *, model: nn.Module | None = None, start_lr: float = START_LR,
            end_lr: float = END_LR, num_steps: int = NUM_STEPS, progress: ProgressCallback | None = None,
            cancel: CancelCallback | None = None, mp_context=None) -> LrFindResult:
    """Sweeps learning rates for ``config`` (model, freeze depth, optimizer, batch size, augmentation,
    schedule's discriminative rates) on its dataset's training split. ``model``, when given, is used
    and then restored exactly; otherwise a fresh one is built. ``mp_context``: how loader worker
    processes start for the image sweep (the GUI must not fork its Qt threads)."""
    if not 0 < start_lr < end_lr:
        raise ValueError("start_lr must be positive and below end_lr")
    started = time.perf_counter()
    bench = open_workbench(config, scan, model=model, progress=progress, cancel=cancel)
    snapshot = _ModelSnapshot(bench.model)
    try:
        sweep = _Sweep(start_lr, end_lr, max(num_steps, 2), progress, cancel)
        uses_cache = _prepare_model(bench)
        if uses_cache:
            _sweep_on_features(bench, sweep, progress, cancel)
        else:
            _sweep_on_images(bench, sweep, mp_context)
    finally:
        snapshot.restore()
    return _result(bench, sweep, uses_cache, time.perf_counter() - started)


# ---- the sweep ------------------------------------------------------------------------------------
class _Sweep:
    """Records (lr, loss) per step, decides when to stop, and sets each step's rate."""

    def __init__(self, start_lr: float, end_lr: float, num_steps: int, progress, cancel):
        self.start_lr, self.end_lr, self.num_steps = start_lr, end_lr, num_steps
        self.progress, self.cancel = progress, cancel
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.diverged = False
        self._running = 0.0
        self._lowest = math.inf

    def lr_at(self, step: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))

    def factor(self, step: int) -> float:
        """The multiplier of every group's starting rate after ``step`` steps (keeps discriminative ratios)."""
        return self.lr_at(min(step, self.num_steps - 1)) / self.start_lr

    def record(self, loss: float) -> None:
        step = len(self.losses)
        self.lrs.append(self.lr_at(step))
        self.losses.append(loss)
        report(self.progress, "sweep", step + 1, self.num_steps,
               f"Trying learning rate {self.lrs[-1]:.1e}: loss {loss:.3f}")
        if not math.isfinite(loss):
            self.diverged = True
            return
        # a bias-corrected running mean (fastai's smoothing), for the stop rule only
        beta = 0.9
        self._running = beta * self._running + (1 - beta) * loss
        smoothed = self._running / (1 - beta ** (step + 1))
        self._lowest = min(self._lowest, smoothed)
        if step >= 10 and smoothed > DIVERGENCE_FACTOR * self._lowest:
            self.diverged = True

    def between_batches(self) -> None:
        check_cancel(self.cancel)
        if self.diverged or len(self.losses) >= self.num_steps:
            raise _SweepOver()


def _prepare_model(bench: Workbench) -> bool:
    """Freezes as the config says; True when the features can be cached (whole backbone frozen)."""
    from tl_studio.core.models import freeze

    freeze(bench.model, bench.config.freeze)
    return bench.config.feature_cache and bench.config.freeze == "all"


def _make_context(bench: Workbench, sweep: _Sweep, class_counts: Sequence[int]):
    from tl_studio.core import loops
    from tl_studio.core.device import autocast_dtype
    from tl_studio.core.optim import class_weights, make_criterion, make_optimizer, param_groups
    from tl_studio.core.transforms import Normalise

    config = bench.config
    factor = config.stage_lr_factor if config.schedule == "fine-tune" and config.freeze != "all" else None
    optimizer = make_optimizer(param_groups(bench.model, sweep.start_lr, factor), config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, sweep.factor)
    weights = class_weights(class_counts, config.class_weighting)
    device = bench.device
    return loops.StepContext(
        optimizer=optimizer, scheduler=scheduler,
        criterion=make_criterion(None if weights is None else weights.to(device.device), config.label_smoothing),
        device=device.device, amp_dtype=autocast_dtype(device, bench.model, purpose="train"),
        scaler=torch.amp.GradScaler("cuda") if device.amp_dtype == torch.float16 else None,
        channels_last=device.is_cuda, between_batches=sweep.between_batches,
        on_batch=lambda batch, num_batches, loss, lr, images_per_s: sweep.record(loss),
        normalise=Normalise(bench.spec))


def _class_counts(records: Sequence, num_classes: int) -> list[int]:
    return [sum(1 for r in records if r.label == label) for label in range(num_classes)]


def _sweep_on_features(bench: Workbench, sweep: _Sweep, progress, cancel) -> None:
    from tl_studio.core import loops
    from tl_studio.core.models import classify_features, head_of

    records = stratified_subsample(bench.scan.split("train"), MAX_FEATURE_IMAGES, bench.config.seed)
    features = record_features(bench, records, progress=progress, cancel=cancel)
    counts = _class_counts(records, bench.num_classes)
    ctx = _make_context(bench, sweep, counts)
    generator = torch.Generator().manual_seed(bench.config.seed)
    batch_size = min(bench.config.batch_size, len(features))
    try:
        while True:  # epochs over the cached features until the sweep is over
            loops.train_on_features(head_of(bench.model), lambda x: classify_features(bench.model, x), features,
                                    batch_size, generator, ctx)
    except _SweepOver:
        pass


def _sweep_on_images(bench: Workbench, sweep: _Sweep, mp_context=None) -> None:
    from tl_studio.core import loops
    from tl_studio.core.dataset import ImageDataset, image_cache_bytes, make_loader
    from tl_studio.core.device import loader_workers, normalises_on_device
    from tl_studio.core.transforms import train_transform

    config = bench.config
    records = list(bench.scan.split("train"))
    batch_size = min(config.batch_size, len(records))
    workers = loader_workers(config.workers, bench.device)
    dataset = ImageDataset(records, train_transform(config.augment, bench.spec,
                                                    normalise_in_loader=not normalises_on_device(bench.device)),
                           cache_bytes=image_cache_bytes(config.image_cache_mb, workers))
    # a last batch of one image breaks BatchNorm in training mode
    loader = make_loader(dataset, batch_size=batch_size, shuffle=True, seed=config.seed, workers=workers,
                         pin_memory=bench.device.pin_memory, drop_last=len(records) % batch_size == 1,
                         mp_context=mp_context)
    ctx = _make_context(bench, sweep, _class_counts(records, bench.num_classes))
    if bench.device.is_cuda:
        bench.model.to(memory_format=torch.channels_last)
    try:
        while True:
            loops.train_on_images(bench.model, loader, ctx)
    except _SweepOver:
        pass


# ---- reading the curve ----------------------------------------------------------------------------
def smooth_losses(losses: Sequence[float]) -> np.ndarray:
    """A centred moving average (no lag, unlike a running mean, so the steepest point is not shifted
    to higher rates); the window is about a tenth of the sweep. Non-finite losses are clipped to the
    largest finite one so the curve stays drawable."""
    values = np.asarray(losses, dtype=float)
    if values.size == 0:
        return values
    finite = values[np.isfinite(values)]
    values = np.where(np.isfinite(values), values, finite.max() if finite.size else 0.0)
    half = max(2, values.size // 20)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(values.size)
    low, high = np.maximum(index - half, 0), np.minimum(index + half + 1, values.size)
    return (cumulative[high] - cumulative[low]) / (high - low)


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> tuple[int | None, str]:
    """(index of the suggested rate, why). The steepest fall of the smoothed loss against log(lr),
    looking only before the lowest loss and after the first tenth of the sweep (where the running
    statistics and the smoothing window are still settling)."""
    y = np.asarray(smoothed, dtype=float)
    if y.size < 10:
        return None, "The sweep stopped after too few steps to read a curve; try a smaller starting rate."
    lowest = int(np.argmin(y))
    skip = max(2, y.size // 10)
    if lowest <= skip + 2 or y[lowest] > 0.95 * y[:skip].mean():
        return None, ("The loss never clearly fell during the sweep: try a larger batch size, check the labels, "
                      "or keep the default rate.")
    slope = np.gradient(y, np.log10(np.asarray(lrs, dtype=float)))
    index = skip + int(np.argmin(slope[skip:lowest]))
    return index, (f"The loss falls fastest at {lrs[index]:.1e} and is lowest at {lrs[lowest]:.1e}; "
                   f"rates above that make training unstable.")


def _result(bench: Workbench, sweep: _Sweep, uses_cache: bool, seconds: float) -> LrFindResult:
    smoothed = smooth_losses(sweep.losses)
    index, message = suggest_lr(sweep.lrs, smoothed)
    lowest = int(np.argmin(smoothed)) if smoothed.size else None
    return LrFindResult(
        lrs=tuple(sweep.lrs), losses=tuple(float(v) for v in smoothed),
        raw_losses=tuple(float(v) if math.isfinite(v) else None for v in sweep.losses),
        suggested_lr=None if index is None else float(sweep.lrs[index]), suggested_index=index,
        min_loss_lr=None if lowest is None else float(sweep.lrs[lowest]), diverged=sweep.diverged,
        feature_cache=uses_cache, model=bench.config.model, freeze=str(bench.config.freeze), seconds=seconds,
        message=message, dataset_problems=problems_sentence(bench.scan.problems, left_out_of="the sweep"))


class _ModelSnapshot:
    """Everything the sweep changes on a model (weights, BatchNorm statistics, which parameters train,
    train/eval modes), put back afterwards (the freeze depth follows from which parameters train)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        self.requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        self.modes = {module: module.training for module in model.modules()}

    def restore(self) -> None:
        with torch.no_grad():
            self.model.load_state_dict(self.state)
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(self.requires_grad[name])
            parameter.grad = None
        for module, training in self.modes.items():
            module.training = training
