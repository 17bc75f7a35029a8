"""The one evaluation preprocessing, used by validation, prediction, the GUI and every exported file.

``Preprocess`` is an ``nn.Module`` that takes float RGB in [0, 1] of any height and width and returns
the normalised, square input the network expects. It is written with shape arithmetic that
``torch.export`` (dynamic H and W), ONNX and TorchScript all understand, so the exported model file
contains exactly this code and answers exactly as the app did (ARCHITECTURE.md §5).

It is torchvision's classification preset expressed without a variable-size intermediate: "resize the
shorter side to R, then centre-crop C" equals "centre-crop a square of side min(H, W) * C / R, then
resize that square to C x C".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class PreprocessSpec:
    crop_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def for_model(cls, info, img_size: int | None = None) -> "PreprocessSpec":
        """The model's own preset (from torchvision's or timm's metadata), optionally at another size
        with the same crop ratio."""
        from tl_studio.core.catalog import resize_side

        return cls(img_size or info.crop_size, resize_side(info, img_size), info.interpolation, tuple(info.mean),
                   tuple(info.std))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessSpec":
        return cls(int(data["crop_size"]), int(data["resize_size"]), str(data["interpolation"]),
                   tuple(data["mean"]), tuple(data["std"]))


@torch.jit.unused
def _symbolic_min(a: int, b: int) -> int:
    # torch.sym_min keeps H and W symbolic under torch.export; Python's min() would specialise them.
    return torch.sym_min(a, b)


@torch.jit.unused
def _symbolic_max(a: int, b: int) -> int:
    return torch.sym_max(a, b)


class Preprocess(nn.Module):
    def __init__(self, spec: PreprocessSpec):
        super().__init__()
        if spec.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {spec.interpolation!r}")
        self.crop_size = spec.crop_size
        self.resize_size = spec.resize_size
        self.mode = spec.interpolation
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        # what the traced graph depends on besides the mean and std buffers (program_cache.py keys on it)
        return f"crop_size={self.crop_size}, resize_size={self.resize_size}, mode={self.mode!r}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: N x 3 x H x W float RGB in [0, 1] -> N x 3 x C x C normalised."""
        return self.normalise(self.crop_and_resize(images))

    def normalise(self, square: torch.Tensor) -> torch.Tensor:
        return (square - self.mean) / self.std

    def crop_and_resize(self, images: torch.Tensor) -> torch.Tensor:
        """The centre crop resampled to C x C, not yet normalised (what batched prediction prepares in
        its loader workers, see core/inference.py)."""
        height, width = images.shape[-2], images.shape[-1]
        # Tiny images (1 x 1, 1 x N) must go through like any other, also inside an exported model
        # whose H and W are symbolic. The crop keeps at least 2 pixels a side, and the image gets a
        # 1-pixel border of its own edge pixels first: the crop then never spans the whole padded
        # image and never has a side of 1, the two cases torch.export would otherwise specialise
        # away. For any image of 3 px or more a side the crop is exactly the same pixels as without
        # the border; for smaller ones the border repeats the edge, so the picture is unchanged.
        if torch.jit.is_scripting():
            side = max(2, (min(height, width) * self.crop_size) // self.resize_size)
        else:
            side = _symbolic_max(2, (_symbolic_min(height, width) * self.crop_size) // self.resize_size)
        padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
        top = (height + 2 - side) // 2
        left = (width + 2 - side) // 2
        return self.resize_square(padded[:, :, top:top + side, left:left + side])

    def resize_square(self, square: torch.Tensor) -> torch.Tensor:
        """The centre square resampled to C x C."""
        size = (self.crop_size, self.crop_size)
        if self.mode == "nearest":
            resized = F.interpolate(square, size=size, mode="nearest")
        else:
            resized = F.interpolate(square, size=size, mode=self.mode, align_corners=False, antialias=True)
        return resized


def crop_and_resize_pixels(preprocess: Preprocess, images: torch.Tensor) -> torch.Tensor:
    """``preprocess.crop_and_resize`` for eager callers (loader workers), the same values bit for bit:
    N x 3 x H x W pixels, uint8 (0-255) or float in [0, 1], -> N x 3 x C x C float.

    The module pads the whole image by a pixel and converts all of it before it crops, so that the
    traced graph has no case of its own for tiny images; for an image whose crop lies inside it (any
    image of 3 px or more a side) that border is never read. Here the crop is taken first and only its
    pixels are converted: 3.1 -> 1.9 ms per ants/bees photo on one core (benchmarks/bench_preprocess.py)."""
    height, width = int(images.shape[-2]), int(images.shape[-1])
    side = max(2, (min(height, width) * preprocess.crop_size) // preprocess.resize_size)
    top = (height + 2 - side) // 2 - 1  # the module's window, less its one-pixel border
    left = (width + 2 - side) // 2 - 1
    inside = top >= 0 and left >= 0 and top + side <= height and left + side <= width
    if not inside:
        floats = images.float().div_(255.0) if images.dtype == torch.uint8 else images
        return preprocess.crop_and_resize(floats)
    square = images[:, :, top:top + side, left:left + side]
    return preprocess.resize_square(square.float().div_(255.0) if images.dtype == torch.uint8 else square)


def to_pixels(image) -> torch.Tensor:
    """A PIL RGB image -> 3 x H x W uint8 tensor."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    return pil_to_tensor(image)


def to_unit_tensor(image) -> torch.Tensor:
    """A PIL RGB image -> 3 x H x W float tensor in [0, 1]: what the model file's users feed it too."""
    return to_pixels(image).float().div_(255.0)


def preprocess_one(preprocess: Preprocess, image) -> torch.Tensor:
    """One PIL image through the evaluation preprocessing -> 3 x C x C (for data loaders): the values
    ``preprocess(to_unit_tensor(image))`` gives, computed on the crop only."""
    with torch.no_grad():
        return preprocess.normalise(crop_and_resize_pixels(preprocess, to_pixels(image).unsqueeze(0)))[0]
