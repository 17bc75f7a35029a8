"""Training augmentation presets, built from torchvision transforms v2 and sized from the model's own
input size, and the evaluation transform (the shared ``Preprocess``).

Presets:
- ``none``: the evaluation preprocessing, no randomness.
- ``light``: a mild random crop (50-100 % of the image) and horizontal flips.
- ``standard``: ImageNet-style random resized crop (8-100 %) and horizontal flips: the PyTorch
  transfer-learning tutorial's training transform.
- ``strong``: ``standard`` plus TrivialAugment and random erasing, for small or overfitting datasets.

With a frozen backbone and the feature cache on, features are computed once from the evaluation
preprocessing, so augmentation does not apply (see docs/training.md).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from tl_studio.core.preprocess import Preprocess, PreprocessSpec, preprocess_one

_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
          "nearest": InterpolationMode.NEAREST}


def _normalise(spec: PreprocessSpec) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean), list(spec.std))]


def train_transform(preset: str, spec: PreprocessSpec) -> Callable:
    """PIL RGB image -> 3 x C x C normalised tensor, randomly augmented."""
    if preset == "none":
        return eval_transform(spec)
    mode = _MODES[spec.interpolation]
    size = spec.crop_size
    if preset == "light":
        steps = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=mode, antialias=True),
                 v2.RandomHorizontalFlip()]
    elif preset == "standard":
        steps = [v2.RandomResizedCrop(size, interpolation=mode, antialias=True), v2.RandomHorizontalFlip()]
    elif preset == "strong":
        steps = [v2.RandomResizedCrop(size, interpolation=mode, antialias=True), v2.RandomHorizontalFlip(),
                 v2.TrivialAugmentWide(interpolation=mode)]
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}")
    tail = [v2.RandomErasing(p=0.25)] if preset == "strong" else []
    transform = v2.Compose(steps + _normalise(spec) + tail)
    transform.decode_side = train_decode_side(steps[0].scale[0], spec)
    return transform


def train_decode_side(smallest_crop_area: float, spec: PreprocessSpec) -> int:
    """The shorter side an image must keep for a random crop of ``smallest_crop_area`` of it to still
    hold ``crop_size`` pixels a side (JPEGs larger than that decode reduced; see images.load_rgb)."""
    return max(spec.resize_size, math.ceil(spec.crop_size / math.sqrt(smallest_crop_area)))


class EvalTransform:
    """PIL RGB image -> 3 x C x C through the shared ``Preprocess`` (picklable for loader workers)."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self.preprocess = Preprocess(spec)
        # The preprocessing crops a square of min(H, W) * crop / resize and scales it to crop: an
        # image whose shorter side is resize_size gives the crop every pixel it uses.
        self.decode_side = spec.resize_size

    def __call__(self, image) -> torch.Tensor:
        return preprocess_one(self.preprocess, image)


def eval_transform(spec: PreprocessSpec) -> EvalTransform:
    return EvalTransform(spec)
