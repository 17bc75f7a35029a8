"""Calibration and the unknown rule of a trained network, fitted on its validation split at export time.

Every model file a run writes (the engine's model.pt2, `tl-studio export` in any format, the int8 file) gets
its metadata from ``calibrated_metadata``: the network's logits on the validation images (through the one
evaluation preprocessing, each image at its own size, exactly as the file will see it) give the temperature
(core/calibration.py) and, on the calibrated probabilities, the unknown threshold (core/unknown.py). The
test split is never used. An older run is calibrated the same way the first time it is exported.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from tl_studio.core import calibration, unknown
from tl_studio.core.errors import Cancelled

LOGIT_BATCH = 32


@torch.no_grad()
def validation_logits(network: torch.nn.Module, spec, records: Sequence,
                      cancel: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N x C logits, N labels) of the readable validation images; unreadable ones are left out (the scan
    and the run have named them already)."""
    from tl_studio.core.images import ImageLoadError, load_rgb
    from tl_studio.core.preprocess import Preprocess, to_unit_tensor

    preprocess = Preprocess(spec)
    network = network.eval()
    crops, labels, logits = [], [], []

    def flush() -> None:
        if crops:
            logits.append(network(torch.cat(crops)).float().numpy())
            crops.clear()

    for record in records:
        if cancel and cancel():
            raise Cancelled()
        try:
            image = load_rgb(record.path, min_side=spec.resize_size)  # what eval preprocessing needs
        except (ImageLoadError, OSError):
            continue
        crops.append(preprocess(to_unit_tensor(image).unsqueeze(0)))
        labels.append(int(record.label))
        if len(crops) == LOGIT_BATCH:
            flush()
    flush()
    if not logits:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return np.concatenate(logits), np.asarray(labels, dtype=np.int64)


def calibrated_metadata(metadata: dict, logits: np.ndarray, labels: np.ndarray,
                        keep: float = unknown.DEFAULT_KEEP) -> dict:
    """``metadata`` plus "calibration" and "unknown" when there are validation images to fit on."""
    if len(labels) < 2:
        return dict(metadata)
    fit = calibration.calibrate(logits, labels)
    rule = unknown.rule_for(calibration.softmax(logits, fit.temperature), keep)
    return {**metadata, "calibration": fit.to_dict(), "unknown": rule.to_dict()}


def calibrate_for_export(network, spec, metadata: dict, records: Sequence, keep: float = unknown.DEFAULT_KEEP,
                         cancel: Callable[[], bool] | None = None) -> dict:
    logits, labels = validation_logits(network, spec, records, cancel)
    return calibrated_metadata(metadata, logits, labels, keep)
