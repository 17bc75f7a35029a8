"""The feature cache: with the whole backbone frozen, every image's backbone output is computed once
and the head trains on those vectors. Epochs after the first then cost almost nothing.

Features come from the evaluation preprocessing (no augmentation): the frozen backbone is
deterministic, so one pass gives exactly what every later epoch would have computed. They are also
kept on disk between runs (feature_store.py); feature_fill.py fills a run's cache from both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from tl_studio.core.dataset import Batch


@dataclass
class FeatureSet:
    features: torch.Tensor  # N x D, float32, on the training device
    labels: torch.Tensor  # N
    indices: torch.Tensor  # N: positions in the split's record list (failed images are missing)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: torch.device, *, amp_dtype=None,
                     on_batch: Callable[[Batch, int], None] | None = None) -> FeatureSet:
    """Runs the frozen backbone over a loader. ``on_batch(batch, done)`` is called after each batch
    (progress, failed images, stop checks)."""
    from tl_studio.core.bn_folding import folded_for_inference
    from tl_studio.core.device import is_channels_last, use_channels_last
    from tl_studio.core.models import forward_features

    model.eval()
    # channels_last where it measured faster (device.use_channels_last: e.g. 2x for EfficientNet-Lite0
    # inference on this CPU); the weights go back to the layout they had afterwards.
    channels_last = use_channels_last(device, model, training=False)
    layout_before = torch.channels_last if is_channels_last(model) else torch.contiguous_format
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    network = None  # the model with its BatchNorms folded (bn_folding.py), made at the first batch
    chunks, labels, indices = [], [], []
    done = 0
    for batch in loader:
        if len(batch):
            images = batch.images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            if network is None:
                network = folded_for_inference(model, images[:2], forward_features).to(memory_format=memory_format)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                chunks.append(forward_features(network, images).float())
            labels.append(batch.labels.to(device))
            indices.append(batch.indices)
        done += len(batch) + len(batch.failures)
        if on_batch:
            on_batch(batch, done)
    if layout_before != memory_format:
        model.to(memory_format=layout_before)
    if not chunks:
        return FeatureSet(torch.empty(0, 0, device=device), torch.empty(0, dtype=torch.long, device=device),
                          torch.empty(0, dtype=torch.long))
    return FeatureSet(torch.cat(chunks), torch.cat(labels), torch.cat(indices))
