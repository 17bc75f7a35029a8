"""Where channels_last is used: one decision (device.use_channels_last), kept by feature extraction."""

from __future__ import annotations

import torch
from torch import nn

from tl_studio.core.dataset import Batch
from tl_studio.core.device import is_channels_last, resolve_device, use_channels_last
from tl_studio.core.features import extract_features


def test_channels_last_where_it_measured_faster():
    cpu = resolve_device("cpu")
    assert use_channels_last(cpu, "efficientnet_lite0", training=False)
    assert use_channels_last(cpu, "efficientnet_lite0", training=True)
    assert use_channels_last(cpu, "resnet18", training=False)
    assert not use_channels_last(cpu, "resnet18", training=True)  # its backward pass is slower in NHWC
    assert not use_channels_last(cpu, "vit_b_16", training=False)  # not measured: the default layout
    assert use_channels_last(torch.device("cuda"), "vit_b_16", training=True)
    assert not use_channels_last(torch.device("mps"), "efficientnet_lite0", training=False)


class _Tiny(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.tl_name = name
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


def _extract(model: nn.Module, seen: list) -> None:
    batch = Batch(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), torch.tensor([0, 1]), [])
    import tl_studio.core.models as models

    original = models.forward_features
    models.forward_features = lambda m, x: seen.append(x.is_contiguous(memory_format=torch.channels_last)
                                                       and not x.is_contiguous()) or m(x).mean((2, 3))
    try:
        extract_features(model, [batch], torch.device("cpu"))
    finally:
        models.forward_features = original


def test_feature_extraction_follows_the_decision_and_restores_the_layout():
    seen: list[bool] = []
    lite = _Tiny("efficientnet_lite0")
    _extract(lite, seen)
    assert seen == [True] and not is_channels_last(lite)  # NHWC for the pass, then back as it was
    lite.to(memory_format=torch.channels_last)
    _extract(lite, seen)
    assert is_channels_last(lite)  # a model the run keeps in NHWC stays so
    other = _Tiny("vit_b_16")
    _extract(other, seen)
    assert seen[-1] is False and not is_channels_last(other)


def _cuda_info():
    """A CUDA DeviceInfo as resolve_device makes one on a GPU machine (torch.device needs no GPU)."""
    from tl_studio.core.device import DeviceInfo

    return DeviceInfo(torch.device("cuda"), "a GPU", torch.bfloat16, pin_memory=True)


def test_loader_workers_follow_the_device_unless_the_run_says(monkeypatch):
    import os

    from tl_studio.core.device import loader_workers

    cpu = resolve_device("cpu")
    assert loader_workers(None, cpu) == 2 and loader_workers(0, cpu) == 0 and loader_workers(5, _cuda_info()) == 5
    for cores, processes, expected in ((16, 1, 8), (64, 1, 8), (4, 1, 3), (2, 1, 2), (16, 4, 3), (16, 8, 2)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert loader_workers(None, _cuda_info(), processes) == expected, (cores, processes)
        assert loader_workers(None, cpu, processes) == 2  # the CPU's cores train the model


def test_a_run_records_the_loader_workers_it_used(tiny_dataset):
    """TrainConfig.workers None ("automatic") is resolved once the device is known, and that number is
    what config.json keeps: the workers' seeds shape the augmentation, so the run can be repeated."""
    from tl_studio.core.callbacks import CallbackList
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.control import RunControl
    from tl_studio.core.data import scan_for
    from tl_studio.core.run_state import RunState

    config = TrainConfig(data_dir=str(tiny_dataset), img_size=64, device="cpu")
    assert config.workers is None
    state = RunState.prepare(config, scan_for(config), None, CallbackList([]), RunControl())
    try:
        assert state.config.workers == 2 and state.data.config.workers == 2
    finally:
        state.data.close()
    assert TrainConfig.from_dict({**config.to_dict(), "workers": None}).workers is None  # a config file's null
