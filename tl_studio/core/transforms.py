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

A training transform ends in 8-bit pixels (``pil_to_tensor``); ``Normalise`` turns them into the
model's normalised floats. On the CPU it runs in the loader processes, on a GPU on the device, where a
batch takes microseconds: the loaders then hand over a quarter of the bytes (shared memory, pinned
memory, the copy to the GPU) and spend no time on it, and on a GPU machine the loaders are what bounds
training (docs/training.md, "GPUs, memory and speed").
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

from tl_studio.core.preprocess import Preprocess, PreprocessSpec, preprocess_one

_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
          "nearest": InterpolationMode.NEAREST}


class Normalise:
    """8-bit pixels (3 x H x W, or a batch of them) -> float32 normalised with the model's mean and std:
    x * (1 / (255 std)) + (-mean / std), one multiplication into a new tensor and one addition in
    place (torchvision's ToImage, ToDtype and Normalize took three passes: 0.43 ms an image here, this
    0.15 ms). ``channels_last`` (a batch): the result in that layout, with no copy more."""

    def __init__(self, spec: PreprocessSpec):
        self.mean, self.std = tuple(spec.mean), tuple(spec.std)
        self._constants: dict = {}  # device -> (scale, shift)

    def __getstate__(self) -> dict:  # loader processes make their own constants
        return {**self.__dict__, "_constants": {}}

    def _scale_and_shift(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._constants:
            scale = torch.tensor([1 / (255 * s) for s in self.std], device=device).view(3, 1, 1)
            shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], device=device).view(3, 1, 1)
            self._constants[device] = (scale, shift)
        return self._constants[device]

    def __call__(self, pixels: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        scale, shift = self._scale_and_shift(pixels.device)
        layout = torch.channels_last if channels_last and pixels.dim() == 4 else torch.contiguous_format
        out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device, memory_format=layout)
        torch.mul(pixels, scale, out=out)
        return out.add_(shift)


def train_transform(preset: str, spec: PreprocessSpec, normalise_in_loader: bool = True) -> Callable:
    """PIL RGB image -> 3 x C x C tensor, randomly augmented: normalised floats, or with
    ``normalise_in_loader=False`` 8-bit pixels for ``Normalise`` to turn into them on the device (the
    ``none`` preset always gives floats: it is the evaluation transform)."""
    if preset == "none":
        return eval_transform(spec)
    steps, tail = _augmentation(preset, spec)
    tail += [Normalise(spec)] if normalise_in_loader else []
    transform = v2.Compose(steps + [pil_to_tensor] + tail)
    transform.decode_side = train_decode_side(steps[0].scale[0], spec)
    return transform


def pixel_augmentation(preset: str, spec: PreprocessSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training preset on a 3 x H x W uint8 tensor on any device (JPEGs decoded on the GPU, see
    gpu_decoding.py) -> 3 x C x C uint8: the same steps as ``train_transform``'s on a Pillow image."""
    if preset == "none":
        raise ValueError("the none preset is the evaluation transform: images for it are decoded by the loaders")
    steps, tail = _augmentation(preset, spec)
    return v2.Compose(steps + tail)


def _augmentation(preset: str, spec: PreprocessSpec) -> tuple[list, list]:
    """The preset's steps before the image becomes a tensor (they also take one) and after it."""
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
    # erased patches take the mean colour: what 0 was when erasing followed the normalisation
    tail = [v2.RandomErasing(p=0.25, value=[round(255 * m) for m in spec.mean])] if preset == "strong" else []
    return steps, tail


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
