"""Batch normalisation folded into the convolution before it, for inference with a frozen backbone.

In eval mode a BatchNorm layer is a fixed per-channel scale and shift, so it can be folded into the
weights and bias of the convolution that feeds it: one pass over the tensor instead of two. On this
2-core CPU (batch 32, 224 px, the engine's memory layout, medians of 3x5) feature extraction ran 1.52x
faster for EfficientNet-Lite0 (60 -> 91 images/s), 1.12x for resnet18 and 1.06x for
mobilenet_v3_large, with features equal to 1e-5 of their scale; models without BatchNorm (ConvNeXt,
ViT) are used as they are.

Which convolution feeds which BatchNorm is read from the order the modules are registered in (conv1,
bn1; timm's conv_pw, bn1; torchvision's Sequential(conv, bn, act)); that is a convention, not the data
flow, so ``folded_for_inference`` checks the copy against the model on a probe batch and keeps the model
when they disagree (e.g. a BatchNorm applied to a concatenation, as in DenseNet).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

log = logging.getLogger(__name__)

# Largest difference allowed between folded and original outputs, relative to the outputs' largest
# magnitude: folding changes only float rounding (~1e-6 relative per layer); a wrong pairing is O(1).
RELATIVE_TOLERANCE = 1e-3


def folded_for_inference(model: nn.Module, probe: torch.Tensor, forward) -> nn.Module:
    """An eval-mode copy of ``model`` with every foldable BatchNorm folded, checked on ``probe`` (a few
    inputs) through ``forward(module, inputs)``; ``model`` itself when nothing folds or the check fails.
    The copy's parameters do not require gradients."""
    pairs = _foldable_pairs(model)
    if not pairs:
        return model
    folded = copy.deepcopy(model).eval().requires_grad_(False)
    for parent_path, conv_name, norm_name in pairs:
        parent = folded.get_submodule(parent_path)
        _fold(parent, conv_name, norm_name)
    with torch.no_grad():
        expected = forward(model, probe).float()
        got = forward(folded, probe).float()
    scale = max(float(expected.abs().max()), 1e-6)
    error = float((got - expected).abs().max()) / scale if got.shape == expected.shape else float("inf")
    if error > RELATIVE_TOLERANCE:
        log.info("batch-norm folding left out for %s: outputs differ by %.3g of their scale",
                 getattr(model, "tl_name", type(model).__name__), error)
        return model
    return folded


def _foldable_pairs(model: nn.Module) -> list[tuple[str, str, str]]:
    """(parent path, convolution name, BatchNorm name) for each BatchNorm registered right after a
    convolution of as many output channels, in eval mode with running statistics."""
    pairs = []
    for parent_path, parent in model.named_modules():
        children = list(parent.named_children())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and not norm.training
                    and norm.track_running_stats and norm.running_mean is not None
                    and conv.out_channels == norm.num_features and _what_remains(norm) is not None):
                pairs.append((parent_path, conv_name, norm_name))
    return pairs


def _what_remains(norm: nn.BatchNorm2d) -> nn.Module | None:
    """What replaces the BatchNorm once its scale and shift are in the convolution: nothing for a plain
    BatchNorm2d, the activation for timm's BatchNormAct2d; None for other subclasses (their forward
    is unknown here, so they are left alone)."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    if type(norm).__name__ == "BatchNormAct2d" and hasattr(norm, "act") and hasattr(norm, "drop"):
        return nn.Sequential(norm.drop, norm.act)
    return None


def _fold(parent: nn.Module, conv_name: str, norm_name: str) -> None:
    conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                                        norm.weight, norm.bias)
    conv.weight, conv.bias = weight.requires_grad_(False), bias.requires_grad_(False)
    setattr(parent, norm_name, _what_remains(norm))
