"""The loaders' preprocessing (crop first, convert only the crop) gives the model file's values bit for bit.

Features computed in training, validation's accuracy and batched prediction all go through
``crop_and_resize_pixels``; the model file runs ``Preprocess`` itself. Any difference, even in the last
bit, would make the feature cache's features and the app's answers not the file's.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tl_studio.core.inference import PrepareImage, to_canvas
from tl_studio.core.preprocess import (Preprocess, PreprocessSpec, crop_and_resize_pixels, preprocess_one,
                                       to_unit_tensor)

# Tiny (padded), thin, square, odd and portrait/landscape sizes: every parity of H + 2 - side.
SIZES = [(1, 1), (1, 7), (2, 2), (2, 9), (3, 3), (3, 40), (4, 5), (37, 36), (64, 64), (73, 73), (74, 75),
         (101, 260), (375, 500), (500, 333), (257, 256)]
SPECS = [PreprocessSpec(crop_size=64, resize_size=73, interpolation=mode) for mode in ("bilinear", "bicubic",
                                                                                       "nearest")]
SPECS.append(PreprocessSpec())  # 224 of 256, bilinear: every catalogue model but a few


def _photo(height: int, width: int, seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy(), "RGB")


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: f"{spec.crop_size}-{spec.resize_size}-{spec.interpolation}")
def test_the_loaders_preprocessing_is_the_model_files_bit_for_bit(spec):
    preprocess = Preprocess(spec)
    for seed, (height, width) in enumerate(SIZES):
        image = _photo(height, width, seed)
        whole = to_unit_tensor(image).unsqueeze(0)
        with torch.no_grad():
            expected = preprocess(whole)[0]
            square = preprocess.crop_and_resize(whole)
        assert torch.equal(preprocess_one(preprocess, image), expected), (height, width)
        # the float input batched prediction's probe feeds, and the uint8 pixels its workers feed
        with torch.no_grad():
            assert torch.equal(crop_and_resize_pixels(preprocess, whole), square), (height, width)
        assert torch.equal(crop_and_resize_pixels(preprocess, (whole * 255).round().to(torch.uint8)), square)


def test_batched_prediction_prepares_the_files_crop_on_its_canvas():
    spec = PreprocessSpec(crop_size=64, resize_size=73)
    preprocess = Preprocess(spec)
    image = _photo(90, 131, 7)
    prepared = PrepareImage(spec)(image)
    assert prepared.dtype == torch.float32
    assert torch.equal(prepared, to_canvas(preprocess, spec, to_unit_tensor(image).unsqueeze(0))[0])
    with torch.no_grad():  # the file's own preprocessing takes the canvas back to the same input
        assert torch.equal(preprocess(prepared.unsqueeze(0)), preprocess(to_unit_tensor(image).unsqueeze(0)))
