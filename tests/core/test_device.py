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
