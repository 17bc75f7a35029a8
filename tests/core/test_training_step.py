"""One optimizer step of the training loops (loops._optimise) and the epoch's running totals."""

import math

import pytest
import torch
from torch import nn

from tl_studio.core import loops
from tl_studio.core.optim import _all_on_cuda, load_moments


def _context(model: nn.Module) -> loops.StepContext:
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return loops.StepContext(
        optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        criterion=nn.CrossEntropyLoss(), device=torch.device("cpu"), amp_dtype=None, scaler=None,
        channels_last=False, between_batches=lambda: None, on_batch=lambda *args: None)


def test_a_non_finite_loss_leaves_the_weights_and_no_gradients_behind():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    ctx = _context(model)
    loss = ctx.criterion(model(torch.randn(4, 3)), torch.tensor([0, 1, 0, 1])) * float("nan")
    with pytest.raises(loops.NonFiniteLoss) as raised:
        loops._optimise(ctx, loss)
    assert math.isnan(raised.value.value)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert all(p.grad is None for p in model.parameters())  # a later step cannot pick the nan gradients up


def test_a_finite_loss_steps_and_reports_the_rate_the_step_used():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    ctx = _context(model)
    loss = ctx.criterion(model(torch.randn(4, 3)), torch.tensor([0, 1, 0, 1]))
    value, lr = loops._optimise(ctx, loss)
    assert value == pytest.approx(float(loss)) and lr == 0.1
    assert not any(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_totals_count_right_answers_across_batches_and_settle_once():
    totals = loops.EpochTotals()
    totals.add(1.0, torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), torch.tensor([0, 1, 1]))  # 2 right
    totals.add(0.5, torch.tensor([[0.0, 1.0]]), torch.tensor([1]))  # 1 right
    assert totals.seen == 4 and totals.accuracy == 0.75
    assert totals.settle().correct == 3 and totals.accuracy == 0.75  # counted once, however often asked
    assert totals.loss == pytest.approx((1.0 * 3 + 0.5) / 4)


def test_fused_adamw_only_when_every_parameter_is_on_a_gpu():
    assert not _all_on_cuda([{"params": list(nn.Linear(2, 2).parameters())}])


def test_a_gpu_runs_optimizer_state_resumed_elsewhere_keeps_the_kernel_chosen_here():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), fused=_all_on_cuda([{"params": list(model.parameters())}]))
    saved = optimizer.state_dict()
    saved["param_groups"][0]["fused"] = True  # as a CUDA run's checkpoint holds it
    load_moments(optimizer, saved)
    assert optimizer.param_groups[0]["fused"] is False


@pytest.mark.parametrize("before_backward", [False, True])
def test_with_several_processes_a_nan_loss_is_caught_before_its_backward_pass(before_backward):
    """Under DDP the backward pass averages gradients across processes: one process's nan would reach
    every other process's step, so there the loss is checked before it (one GPU: after, see _optimise)."""
    import dataclasses

    model = nn.Linear(3, 2)
    backward_passes = []
    model.weight.register_hook(lambda gradient: backward_passes.append(1))
    ctx = dataclasses.replace(_context(model), loss_checked_before_backward=before_backward)
    loss = ctx.criterion(model(torch.randn(4, 3)), torch.tensor([0, 1, 0, 1])) * float("nan")
    with pytest.raises(loops.NonFiniteLoss):
        loops._optimise(ctx, loss)
    assert len(backward_passes) == (0 if before_backward else 1)
    assert all(p.grad is None for p in model.parameters())
