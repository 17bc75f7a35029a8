"""The learning-rate finder: reading a curve, a real sweep on generated images (sane, repeatable,
seconds with the feature cache), and the guarantee that the user's model is left exactly as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tl_studio.core.config import TrainConfig
from tl_studio.core.errors import Cancelled
from tl_studio.core.lr_finder import find_lr, smooth_losses, suggest_lr


def synthetic_curve(steepest_at: float = 1e-3, explodes_at: float = 0.3, steps: int = 100, noise: float = 0.02):
    """A range-test curve: flat, a sigmoid fall centred on ``steepest_at``, then a blow-up."""
    rng = np.random.default_rng(0)
    lrs = np.logspace(-7, 1, steps)
    x = np.log10(lrs)
    loss = 1.0 - 0.8 / (1 + np.exp(-3 * (x - math.log10(steepest_at))))
    loss = loss + np.where(lrs > explodes_at, 5 * (x - math.log10(explodes_at)) ** 2, 0.0)
    return lrs, loss + rng.normal(0, noise, steps)


def test_the_suggestion_is_where_a_noisy_loss_falls_fastest():
    lrs, losses = synthetic_curve(steepest_at=1e-3)
    index, message = suggest_lr(lrs, smooth_losses(losses))
    assert index is not None
    assert 1e-3 / 2.5 < lrs[index] < 1e-3 * 2.5
    assert "fastest" in message


def test_a_curve_that_never_falls_gives_no_suggestion_and_says_why():
    lrs = np.logspace(-7, 1, 60)
    flat = 1.0 + np.random.default_rng(1).normal(0, 0.01, 60)
    index, message = suggest_lr(lrs, smooth_losses(flat))
    assert index is None and "never clearly fell" in message


def test_smoothing_does_not_lag_behind_the_curve():
    # a running mean would move the steepest point towards higher rates; a centred window must not
    lrs, losses = synthetic_curve(steepest_at=1e-4, noise=0.0)
    smoothed = smooth_losses(losses)
    slope = np.gradient(smoothed, np.log10(lrs))
    assert abs(np.log10(lrs[int(np.argmin(slope[:70]))]) - (-4)) < 0.25
    assert np.isfinite(smooth_losses([1.0, float("nan"), float("inf"), 0.5])).all()


@pytest.fixture
def frozen_config(tiny_dataset) -> TrainConfig:
    return TrainConfig(data_dir=str(tiny_dataset), img_size=64, batch_size=8, workers=0, seed=0)


def test_a_frozen_sweep_on_cached_features_suggests_a_sane_rate_in_seconds(frozen_config):
    progress = []
    result = find_lr(frozen_config, progress=progress.append)
    assert result.feature_cache and result.freeze == "all"
    assert result.suggested_lr is not None and 1e-4 <= result.suggested_lr <= 1e-1
    assert result.min_loss_lr is not None and result.suggested_lr <= result.min_loss_lr
    # the loss really falls from the start of the sweep to the suggestion and beyond
    assert result.losses[result.suggested_index] < result.losses[0]
    assert min(result.losses) < 0.8 * result.losses[0]
    lrs = np.array(result.lrs)
    assert lrs[0] == pytest.approx(1e-7) and np.all(np.diff(lrs) > 0)
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) <= 100
    assert {p.stage for p in progress} >= {"features", "sweep"}
    # the same seed gives the same sweep
    again = find_lr(frozen_config)
    assert again.suggested_lr == result.suggested_lr and again.raw_losses == result.raw_losses


def test_the_users_model_is_left_exactly_as_it_was(frozen_config):
    from tl_studio.core.models import build_model, freeze, frozen_depth

    model = build_model("efficientnet_lite0", 3)
    freeze(model, "all")
    model.eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    # depth 3: an image sweep that trains stages 3-4 (BatchNorm statistics too) and the head
    result = find_lr(frozen_config.replace(freeze="3", schedule="fine-tune", epochs=2), model=model, num_steps=12)
    assert not result.feature_cache and 10 <= len(result.lrs) <= 12
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == grads
    assert not model.training and frozen_depth(model) == 5
    assert all(p.grad is None for p in model.parameters())


def test_cancel_stops_the_sweep_and_still_restores_the_model(frozen_config):
    from tl_studio.core.models import build_model

    model = build_model("efficientnet_lite0", 3)
    head_before = model.classifier.weight.clone()
    seen = []

    def cancel() -> bool:
        return len(seen) >= 3

    with pytest.raises(Cancelled):
        find_lr(frozen_config, model=model, progress=lambda p: seen.append(p) if p.stage == "sweep" else None,
                cancel=cancel)
    assert torch.equal(model.classifier.weight, head_before)
