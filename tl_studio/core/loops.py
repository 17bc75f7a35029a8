"""The inner loops of one epoch: train or validate, on images or on cached features.

Plain functions over explicit arguments; the Trainer decides which to call and owns the state.
``between_batches()`` is called before every batch: it is where stop and pause take effect.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from tl_studio.core.dataset import LoadFailure
from tl_studio.core.features import FeatureSet


@dataclass
class StepContext:
    """What the training step needs besides the model and data."""
    optimizer: torch.optim.Optimizer
    scheduler: object
    criterion: nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    channels_last: bool
    between_batches: Callable[[], None]
    on_batch: Callable[[int, int, float, float, float], None]  # batch, num_batches, loss, lr, images/s
    on_failures: Callable[[list], None] = lambda failures: None
    freeze_all_norms: bool = False  # BatchNorm statistics stay as they are, even in unfrozen stages
    # Several processes (DDP): the loss is checked before the backward pass, whose gradient averaging
    # would carry one process's nan into every other process's step (see _optimise)
    loss_checked_before_backward: bool = False
    # 8-bit pixel batches (a GPU's training loaders, see transforms.py) -> the model's normalised input
    normalise: Callable[..., torch.Tensor] | None = None
    # a batch's JPEGs -> their augmented 8-bit pixels on the device (gpu_decoding.GpuDecoder)
    decode: Callable | None = None
    # what images/s are timed with: RunControl.clock leaves out the time a pause held the loop
    clock: Callable[[], float] = time.perf_counter


@dataclass
class EpochTotals:
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    probabilities: dict = field(default_factory=dict)  # validation: index -> class probabilities
    # validation, when asked for: (logits, labels) of every image, on the CPU (the best epoch's calibrate
    # the model file without a second pass over the images)
    logits: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    # right answers not yet counted into ``correct``: a tensor on the model's device, read once at the
    # end of the pass (``settle``), so that counting them does not wait for the GPU after every step
    pending_correct: torch.Tensor | None = field(default=None, repr=False)

    def add(self, loss: float, logits: torch.Tensor, labels: torch.Tensor) -> None:
        count = int(labels.shape[0])
        self.loss_sum += loss * count
        right = (logits.argmax(1) == labels).sum()
        self.pending_correct = right if self.pending_correct is None else self.pending_correct + right
        self.seen += count

    def settle(self) -> "EpochTotals":
        """Counts the pending right answers into ``correct`` (one wait for the device); returns self."""
        if self.pending_correct is not None:
            self.correct += int(self.pending_correct)
            self.pending_correct = None
        return self

    def keep_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if self.logits is not None:
            self.logits.append((logits.detach().float().cpu(), labels.detach().cpu()))

    def logit_arrays(self):
        """(N x C logits, N labels) as numpy arrays, or None when they were not kept."""
        if not self.logits:
            return None
        return (torch.cat([l for l, _ in self.logits]).numpy(), torch.cat([y for _, y in self.logits]).numpy())

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen if self.seen else float("nan")

    @property
    def accuracy(self) -> float:
        self.settle()
        return self.correct / self.seen if self.seen else float("nan")


class NonFiniteLoss(Exception):
    """The training loss is nan or infinite: stepping on it would make every weight nan."""

    def __init__(self, value: float):
        super().__init__(f"loss {value}")
        self.value = value


def _optimise(ctx: StepContext, loss: torch.Tensor) -> tuple[float, float]:
    """One optimizer step; returns the loss and the learning rate the step used (the schedule moves on
    after it). A non-finite loss raises NonFiniteLoss before it can reach the weights."""
    lr = _current_lr(ctx)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss_value = _raise_if_not_finite(ctx, loss) if ctx.loss_checked_before_backward else None
    # fp16 needs loss scaling; bf16 and fp32 do not
    (ctx.scaler.scale(loss) if ctx.scaler is not None else loss).backward()
    # Reading the loss waits for the device. Read after the backward pass is queued, not before it: on a
    # GPU the CPU then queues the backward kernels while the forward pass runs (waiting before it left
    # the GPU idle while they were queued); the weights are still untouched here.
    if loss_value is None:
        loss_value = _raise_if_not_finite(ctx, loss)
    if ctx.scaler is not None:
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        ctx.optimizer.step()
    ctx.scheduler.step()
    return loss_value, lr


def _raise_if_not_finite(ctx: StepContext, loss: torch.Tensor) -> float:
    """The loss's value; NonFiniteLoss (and no gradients left behind) when it is nan or infinite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        ctx.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLoss(value)
    return value


def _current_lr(ctx: StepContext) -> float:
    return float(ctx.optimizer.param_groups[0]["lr"])


def train_on_images(model: nn.Module, loader, ctx: StepContext) -> EpochTotals:
    from tl_studio.core.models import set_train_mode

    set_train_mode(model, ctx.freeze_all_norms)
    totals = EpochTotals()
    started = ctx.clock()
    num_batches = len(loader)
    for number, batch in enumerate(_checked(loader, ctx), start=1):
        if batch.failures:
            ctx.on_failures(batch.failures)
        pixels, labels = _training_pixels(batch, ctx)
        if not len(labels):
            continue
        images = _model_input(pixels, ctx)
        labels = labels.to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
            logits = model(images)
            loss = ctx.criterion(logits.float(), labels)
        loss_value, lr = _optimise(ctx, loss)
        totals.add(loss_value, logits.detach(), labels)
        totals.seconds = ctx.clock() - started
        ctx.on_batch(number, num_batches, loss_value, lr, totals.seen / max(totals.seconds, 1e-9))
    return totals.settle()


def _training_pixels(batch, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's images on the device, with their labels (still where they are): the loaders' pixels,
    after the JPEGs they left to the GPU (dataset.Batch.encoded) have been decoded there; a JPEG that
    could not be decoded is reported like a file the loaders could not read, and left out."""
    images = batch.images.to(ctx.device, non_blocking=True)
    if batch.encoded is None:
        return images, batch.labels
    decoded = ctx.decode(batch.encoded)
    if decoded.failed:
        ctx.on_failures([LoadFailure(int(batch.indices[position]), reason) for position, reason in decoded.failed])
    rows = decoded.kept + list(range(len(batch.encoded), len(batch)))  # the loaders' pixels follow the JPEGs
    if len(batch.encoded) < len(batch):
        images = torch.cat([decoded.images, images]) if decoded.kept else images
    else:
        images = decoded.images
    return images, batch.labels[torch.tensor(rows, dtype=torch.long)]


def _model_input(images: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    if images.dtype == torch.uint8:
        if ctx.normalise is None:
            raise ValueError("8-bit pixel batches need StepContext.normalise")
        return ctx.normalise(images, channels_last=ctx.channels_last)
    return images.contiguous(memory_format=torch.channels_last) if ctx.channels_last else images


def train_on_features(head: nn.Module, classify: Callable, features: FeatureSet, batch_size: int,
                      generator: torch.Generator, ctx: StepContext, passes: int = 1) -> EpochTotals:
    """``classify(features)`` gives the logits: the head and whatever follows it (SqueezeNet pools
    after its head). ``passes``: shuffled passes over the features in this one epoch."""
    head.train()
    totals = EpochTotals()
    started = ctx.clock()
    order = torch.cat([torch.randperm(len(features), generator=generator) for _ in range(passes)])
    order = order.to(features.features.device)
    batches = order.split(batch_size)
    for number, rows in enumerate(batches, start=1):
        ctx.between_batches()
        x, labels = features.features[rows], features.labels[rows]
        logits = classify(x)
        loss = ctx.criterion(logits, labels)
        loss_value, lr = _optimise(ctx, loss)
        totals.add(loss_value, logits.detach(), labels)
        totals.seconds = ctx.clock() - started
        # images per second as the epoch line counts them: each image once, however many passes
        ctx.on_batch(number, len(batches), loss_value, lr, totals.seen / passes / max(totals.seconds, 1e-9))
    return totals.settle()


InferenceCopy = Callable[[nn.Module, torch.Tensor], "tuple[nn.Module, bool]"]


@torch.no_grad()
def validate_on_images(model: nn.Module, loader, ctx: StepContext, keep: set[int],
                       keep_logits: bool = False, inference_copy: InferenceCopy | None = None) -> EpochTotals:
    """Plain cross-entropy (no smoothing, no class weights) so val loss means the same in every run.
    ``keep``: validation indices whose probabilities are returned (the sample predictions);
    ``keep_logits``: every image's logits are returned too (EpochTotals.logits);
    ``inference_copy(model, first_images)``: the network to validate with and whether it takes
    channels_last inputs (a copy made for inference, see RunState._inference_copy), asked once at the
    first batch; without it, ``model`` in the training layout."""
    model.eval()
    network, channels_last = (None if inference_copy else model), ctx.channels_last
    totals = EpochTotals(logits=[] if keep_logits else None)
    plain = nn.CrossEntropyLoss()
    for batch in _checked(loader, ctx):
        if batch.failures:
            ctx.on_failures(batch.failures)
        if not len(batch):
            continue
        images = batch.images.to(ctx.device, non_blocking=True)
        if network is None:
            network, channels_last = inference_copy(model, images)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
            logits = network(images).float()
        totals.add(float(plain(logits, labels)), logits, labels)
        totals.keep_logits(logits, labels)
        _keep_probabilities(totals, logits, batch.indices, keep)
    return totals.settle()


@torch.no_grad()
def validate_on_features(head: nn.Module, classify: Callable, features: FeatureSet, batch_size: int,
                         keep: set[int], keep_logits: bool = False) -> EpochTotals:
    head.eval()
    totals = EpochTotals(logits=[] if keep_logits else None)
    plain = nn.CrossEntropyLoss()
    for rows in torch.arange(len(features), device=features.features.device).split(batch_size):
        logits = classify(features.features[rows]).float()
        labels = features.labels[rows]
        totals.add(float(plain(logits, labels)), logits, labels)
        totals.keep_logits(logits, labels)
        _keep_probabilities(totals, logits, features.indices[rows.cpu()], keep)
    return totals.settle()


def _keep_probabilities(totals: EpochTotals, logits: torch.Tensor, indices: torch.Tensor, keep: set[int]) -> None:
    if not keep:
        return
    probabilities = logits.softmax(1).cpu()
    for row, index in enumerate(indices.tolist()):
        if index in keep:
            totals.probabilities[index] = probabilities[row]


def _checked(loader, ctx: StepContext):
    """Yields the loader's batches, giving stop and pause a chance before each one."""
    iterator = iter(loader)
    while True:
        ctx.between_batches()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield batch
