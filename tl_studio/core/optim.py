"""Optimizer, learning-rate schedule and loss for a training phase."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from tl_studio.core.config import TrainConfig



def param_groups(model: nn.Module, base_lr: float, stage_lr_factor: float | None = None) -> list[dict]:
    """Trainable parameters only. With ``stage_lr_factor`` (discriminative rates), the head gets
    ``base_lr`` and each earlier stage the next one's rate times the factor."""
    from tl_studio.core.models import head_of, model_stages

    head_params = [p for p in head_of(model).parameters() if p.requires_grad]
    groups = [{"params": head_params, "lr": base_lr, "name": "head"}]
    stages = model_stages(model)
    for depth, stage in enumerate(reversed(stages), start=1):
        params = [p for p in stage.parameters() if p.requires_grad]
        if params:
            factor = stage_lr_factor ** depth if stage_lr_factor else 1.0
            groups.append({"params": params, "lr": base_lr * factor, "name": stage.name})
    return _dedupe(groups)


def _dedupe(groups: list[dict]) -> list[dict]:
    """A parameter belongs to one group only (the first, i.e. the one nearest the head)."""
    seen: set[int] = set()
    kept = []
    for group in groups:
        params = [p for p in group["params"] if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            kept.append({**group, "params": params})
    return kept


def make_optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=True)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=config.weight_decay, fused=_all_on_cuda(groups))


def load_moments(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Loads an optimizer's saved state but keeps the kernel chosen for where its parameters are now:
    torch restores a saved "fused" flag too, so a GPU run's checkpoint resumed on another device would
    ask for a fused step there."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flag in zip(optimizer.param_groups, fused):
        group["fused"] = flag


def _all_on_cuda(groups: list[dict]) -> bool:
    """Whether every parameter is on a CUDA device: then AdamW's fused kernel updates them all in a few
    launches (the default, foreach, launches several kernels per group of tensors; measured on an H200
    as part of benchmarks/gpu_check.py). Elsewhere the default: fused AdamW on the CPU is not measured."""
    return all(p.is_cuda for group in groups for p in group["params"])


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """One-cycle (the default, and each phase of the fine-tune schedule) or cosine with linear warm-up."""
    total_steps = max(1, total_steps)
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    if config.schedule == "cosine":
        warmup = max(1, int(config.warmup_fraction * total_steps))
        warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, decay], milestones=[warmup])
    if total_steps < 4:  # too short for a cycle to mean anything: a constant rate
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    # OneCycleLR needs at least two warm-up steps
    warmup_share = min(0.5, max(0.25, 2 / total_steps))
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps,
                                               pct_start=warmup_share, cycle_momentum=config.optimizer == "sgd")


def class_weights(counts: Sequence[int], setting: str) -> torch.Tensor | None:
    """The loss's per-class weights (core/class_weighting.py), or None."""
    from tl_studio.core.class_weighting import plan_weighting

    weights = plan_weighting(counts, setting).weights
    return None if weights is None else torch.tensor(weights, dtype=torch.float32)


def make_criterion(weights: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)


class PhasePolicy:
    """The learning-rate policy of one training phase: its rate(s), optimizer, schedule and (fp16)
    gradient scaler, built for a number of optimizer steps. One object per phase; a resumed run
    restores it with ``load_state_dict``; after an out-of-memory retry ``rebuild`` makes a schedule
    over more, smaller steps."""

    def __init__(self, model: nn.Module, phase, config: TrainConfig, total_steps: int, fp16: bool):
        self.model, self.phase, self.config, self.fp16 = model, phase, config, fp16
        self.lr = phase_lr(phase, config)
        self._build(total_steps)

    def _build(self, total_steps: int) -> None:
        self.optimizer = make_optimizer(param_groups(self.model, self.lr, self.phase.stage_lr_factor), self.config)
        self.scheduler = make_scheduler(self.optimizer, self.config, total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if self.fp16 else None

    def rebuild(self, total_steps: int) -> None:
        """A new schedule over ``total_steps``; the optimizer's moments are kept."""
        moments = self.optimizer.state_dict()
        self._build(total_steps)
        load_moments(self.optimizer, moments)

    @property
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None}

    def load_state_dict(self, state: dict, *, schedule: bool = True) -> None:
        """``schedule=False``: keep the optimizer's moments but not the schedule (a run extended with
        more epochs starts a fresh schedule for the rest)."""
        load_moments(self.optimizer, state["optimizer"])
        if schedule:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def phase_lr(phase, config: TrainConfig) -> float:
    """config.lr (set by hand or from the LR finder) is the rate of the phase that trains at the
    config's freeze depth; the head phase of the fine-tune schedule uses the head-only default (see
    TrainConfig.trained_lr and head_phase_lr)."""
    return config.head_phase_lr() if phase.name == "head" else config.trained_lr()
