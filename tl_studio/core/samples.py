"""Sample predictions: a fixed, class-balanced set of validation images shown after every epoch."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from tl_studio.core import events
from tl_studio.core.images import ImageLoadError, load_rgb

THUMBNAIL_PX = 112


def pick_samples(records: Sequence, num_classes: int, limit: int = 16, seed: int = 0) -> list[int]:
    """Indices into ``records``: round-robin over classes so every class shows, stable for a seed."""
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for index, record in enumerate(records):
        by_class[record.label].append(index)
    rng = random.Random(seed)
    for indices in by_class:
        rng.shuffle(indices)
    chosen: list[int] = []
    while len(chosen) < limit and any(by_class):
        for indices in by_class:
            if indices and len(chosen) < limit:
                chosen.append(indices.pop())
    return sorted(chosen)


def make_thumbnail(path: str, size: int = THUMBNAIL_PX) -> np.ndarray:
    """A square, centre-cropped uint8 RGB thumbnail; grey when the file cannot be read."""
    from PIL import ImageOps

    try:
        image = load_rgb(path, min_side=size)  # a large JPEG decodes reduced: much faster
    except (ImageLoadError, OSError):
        return np.full((size, size, 3), 128, dtype=np.uint8)
    return np.asarray(ImageOps.fit(image, (size, size)), dtype=np.uint8).copy()


def sample_predictions(epoch: int, classes: Sequence[str], records: Sequence, indices: Sequence[int],
                       thumbnails: Sequence[np.ndarray], probabilities: dict[int, torch.Tensor]) -> events.SamplePredictions:
    """Top-3 predictions for each sample; ``probabilities`` maps a validation index to its class
    probabilities (images that failed to load this epoch are left out)."""
    samples = []
    for index, thumbnail in zip(indices, thumbnails):
        probs = probabilities.get(index)
        if probs is None:
            continue
        top = torch.topk(probs.float(), k=min(3, len(classes)))
        samples.append(events.SamplePrediction(
            thumbnail=thumbnail, path=str(records[index].path), true_label=int(records[index].label),
            top_labels=tuple(int(i) for i in top.indices), top_probs=tuple(float(p) for p in top.values)))
    return events.SamplePredictions(epoch, tuple(classes), tuple(samples))


CHECK_MIN_SIDE = 512


def load_check_images(paths: Sequence, limit: int = 8) -> list[torch.Tensor]:
    """Up to ``limit`` images at their own sizes as 1 x 3 x H x W tensors in [0, 1], the way a model
    file's users feed it: the inputs of the export check. Unreadable files are passed over. Phone-size
    JPEGs decode at a reduction that keeps their shape and at least CHECK_MIN_SIDE pixels: the check
    needs varied real sizes, not 12-megapixel tensors (seconds each through the model, twice)."""
    from tl_studio.core.preprocess import to_unit_tensor

    images = []
    for path in paths:
        if len(images) == limit:
            break
        try:
            images.append(to_unit_tensor(load_rgb(path, min_side=CHECK_MIN_SIDE)).unsqueeze(0))
        except (ImageLoadError, OSError):
            continue
    return images
