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
                     on_batch: Callable[[Batch, int], None] | None = None,
                     probe_size: int | None = None, float32_from: int | None = None) -> FeatureSet:
    """Runs the frozen backbone over a loader, under autocast to ``amp_dtype`` unless it is None.
    ``on_batch(batch, done)`` is called after each batch (progress, failed images, stop checks).
    ``probe_size``: the side of the loader's (square) images; given it, the BatchNorm-folded copy is made
    and checked on two random images of that size before the loader's workers start (0.1 s for
    EfficientNet-Lite0 on the 2-core CPU, against 0.5-1.4 s at the first batch beside the decoding
    workers), else at the first batch. ``float32_from``: the images at this index of the loader's
    dataset and after are computed in float32 (validation images, see feature_fill.py)."""
    from tl_studio.core.bn_folding import folded_for_inference
    from tl_studio.core.device import is_channels_last, use_channels_last
    from tl_studio.core.models import forward_features

    model.eval()
    # channels_last where it measured faster (device.use_channels_last: e.g. 2x for EfficientNet-Lite0
    # inference on this CPU); the weights go back to the layout they had afterwards.
    channels_last = use_channels_last(device, model, training=False, autocast=amp_dtype)
    layout_before = torch.channels_last if is_channels_last(model) else torch.contiguous_format
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    network = None  # the model with its BatchNorms folded (bn_folding.py)
    if probe_size:
        probe = torch.rand(2, 3, probe_size, probe_size, generator=torch.Generator().manual_seed(0))
        probe = probe.to(device).contiguous(memory_format=memory_format)
        network = folded_for_inference(model, probe, forward_features).to(memory_format=memory_format)
    batches = iter(loader)  # starts the workers: after the folding, whose check would share the cores
    chunks, labels, indices = [], [], []
    done = 0
    for batch in batches:
        if len(batch):
            images = batch.images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            if network is None:
                network = folded_for_inference(model, images[:2], forward_features).to(memory_format=memory_format)
            chunks.append(_features(network, images, batch.indices, amp_dtype, float32_from))
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


def _features(network: nn.Module, images: torch.Tensor, indices: torch.Tensor, amp_dtype,
              float32_from: int | None) -> torch.Tensor:
    """The float32 features of one batch: rows before ``float32_from`` under ``amp_dtype``, the rest in
    float32 (all of them under ``amp_dtype`` when it is None)."""
    from tl_studio.core.models import forward_features

    def run(inputs: torch.Tensor, dtype) -> torch.Tensor:
        with torch.autocast(inputs.device.type, dtype=dtype, enabled=dtype is not None):
            return forward_features(network, inputs).float()

    if amp_dtype is None or float32_from is None:
        return run(images, amp_dtype)
    fast = (indices < float32_from).to(images.device)
    if bool(fast.all()):
        return run(images, amp_dtype)
    if not bool(fast.any()):
        return run(images, None)
    head, tail = run(images[fast], amp_dtype), run(images[~fast], None)
    out = torch.empty((len(images), *head.shape[1:]), dtype=torch.float32, device=head.device)
    out[fast], out[~fast] = head, tail
    return out
