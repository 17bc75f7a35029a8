"""Where the model looked: Grad-CAM (Selvaraju et al., 2017) for every model family of the registry.

Decision: our own forward hook and ``torch.autograd.grad``, not the ``grad-cam`` package on PyPI. That
package is well kept, but it pulls in OpenCV, matplotlib, scikit-learn, scipy and ttach (hundreds of MB in
the installer) for about forty lines of maths, and its target layer and ``reshape_transform`` would still
have to be chosen per architecture by us. Our models already describe themselves: ``models.model_stages``
gives the stages with their stride, from which the target layer follows for every family without a table:

- CNNs (and Swin, MaxViT, whose stages keep a spatial grid): the output of the last spatial stage.
- Token models (ViT): the input of the last encoder block, i.e. the output of the stage before it. After
  the last block only the class token reaches the head, so the gradient on the patch tokens there is zero;
  one block earlier, the patch tokens reach the class token through the last block's attention.

Activations come as N x C x H x W, N x H x W x C (Swin) or N x T x C tokens (with or without a class
token); they are all turned into a grid. The map is computed over the centre crop the model sees (the
same arithmetic as ``core.preprocess.Preprocess``), then placed into a map the size of the whole image:
the parts of the image outside the crop are 0, because the model never saw them.

The network is rebuilt from the model file's metadata with ``build_trained_model(name, classes, ...)`` and
the trained weights, taken from the ``.pt2`` file itself (its state dict, "network." prefix stripped; laid
out with its BatchNorms folded when the metadata says the file's are) or from the run's ``best.ckpt`` for
other formats.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tl_studio.core import run_folder
from tl_studio.core.errors import UserError
from tl_studio.core.model_metadata import BATCHNORM_FOLDED
from tl_studio.core.preprocess import Preprocess, PreprocessSpec

NETWORK_PREFIX = "network."


@dataclass(frozen=True)
class CamResult:
    heatmap: np.ndarray  # H x W float32 in [0, 1], the size of the image
    class_index: int  # the class the map explains
    probability: float  # the model's probability for that class
    crop_box: tuple[int, int, int]  # (top, left, side) of the square the model saw, in image pixels


def load_network(model_path: Path, metadata: dict, run_dir: Path | None = None) -> nn.Module:
    """The trained network of a model file (no preprocessing), on the CPU, in eval mode."""
    from tl_studio.core.models import build_trained_model

    name, classes = metadata.get("model"), metadata.get("classes") or []
    if not name or not classes:
        raise UserError(f"{Path(model_path).name} does not say which model it is; Grad-CAM needs a TL Studio file.")
    weights, folded = _trained_weights(Path(model_path), run_dir)
    return build_trained_model(name, len(classes), weights, Path(model_path).name, batchnorm_folded=folded).eval()


def _trained_weights(model_path: Path, run_dir: Path | None) -> tuple[dict[str, Tensor], bool]:
    """The network's weights, and whether they are of a copy with its BatchNorms folded (a .pt2 file's
    own metadata says; a run's checkpoint keeps every layer)."""
    if model_path.suffix.lower() == ".pt2":
        from tl_studio.core.model_file import load_exported_program

        program, metadata = load_exported_program(model_path)  # checked: a model file never runs code
        return ({key[len(NETWORK_PREFIX):]: value for key, value in program.state_dict.items()
                 if key.startswith(NETWORK_PREFIX)}, metadata.get(BATCHNORM_FOLDED) is True)
    if run_dir is not None and (Path(run_dir) / run_folder.BEST_CHECKPOINT).is_file():
        from tl_studio.core.runs import open_run

        return open_run(Path(run_dir)).weights, False
    raise UserError(f"Grad-CAM needs the weights of the network: open the model.pt2 file or its run folder, "
                    f"not only {model_path.name}.")


def target_layer_name(network: nn.Module) -> str:
    from tl_studio.core.models import model_stages

    stages = [stage for stage in model_stages(network) if stage.name != "pre-head"]
    if not stages:
        raise UserError("Grad-CAM found no layers to look at in this model.")
    if stages[-1].stride is not None:
        return stages[-1].module_names[-1]
    if len(stages) >= 2:
        return stages[-2].module_names[-1]  # the input of the last token block
    raise UserError("Grad-CAM found no layer with a spatial layout in this model.")


def to_grid(activation: Tensor) -> Tensor:
    """N x C x h x w from a spatial map (NCHW or NHWC) or tokens (N x T x C, class token optional)."""
    if activation.dim() == 4:
        if activation.shape[2] == activation.shape[3]:
            return activation
        if activation.shape[1] == activation.shape[2]:
            return activation.permute(0, 3, 1, 2)
    elif activation.dim() == 3:
        tokens = activation.shape[1]
        for extra in (0, 1):  # patch tokens only, or a class token first
            side = math.isqrt(tokens - extra)
            if side > 0 and side * side == tokens - extra:
                grid = activation[:, extra:, :].reshape(activation.shape[0], side, side, activation.shape[2])
                return grid.permute(0, 3, 1, 2)
    raise UserError(f"Grad-CAM cannot read a layer output of shape {tuple(activation.shape)} as an image grid.")


class GradCam:
    """Grad-CAM maps for one network; thread-safe (one map at a time)."""

    def __init__(self, network: nn.Module, spec: PreprocessSpec, layer_name: str | None = None,
                 temperature: float = 1.0):
        """``temperature``: the model file's calibration (export.temperature_of), so the probability
        shown with the map is the one the file gives."""
        self.network = network.eval()
        self.temperature = float(temperature)
        self.preprocess = Preprocess(spec)
        self.spec = spec
        self.layer_name = layer_name or target_layer_name(network)
        self._layer = network.get_submodule(self.layer_name)
        self._lock = threading.Lock()

    def __call__(self, image: Tensor, class_index: int | None = None) -> CamResult:
        """``image``: 3 x H x W float RGB in [0, 1]. ``class_index``: the class to explain (default: the
        predicted one)."""
        with self._lock, torch.enable_grad():
            activation, logits = self._forward(image.unsqueeze(0).float())
            probabilities = torch.softmax(logits.detach().float() / self.temperature, dim=1)[0]
            target = int(probabilities.argmax()) if class_index is None else int(class_index)
            gradient, = torch.autograd.grad(logits[0, target], activation)
        cam = _weighted_map(to_grid(activation.detach()), to_grid(gradient))
        box = self.crop_box(image.shape[-2], image.shape[-1])
        return CamResult(self._to_image_size(cam, image.shape[-2], image.shape[-1], box), target,
                         float(probabilities[target]), box)

    def _forward(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        captured: list[Tensor] = []
        handle = self._layer.register_forward_hook(lambda _module, _args, output: captured.append(output))
        try:
            inputs = self.preprocess(batch).requires_grad_(True)  # a path for gradients even if frozen
            logits = self.network(inputs)
        finally:
            handle.remove()
        if not captured or not isinstance(captured[-1], Tensor):
            raise UserError(f"Grad-CAM could not read the output of layer {self.layer_name}.")
        return captured[-1], logits

    def crop_box(self, height: int, width: int) -> tuple[int, int, int]:
        """Where ``Preprocess`` takes its centre square from: (top, left, side)."""
        side = (min(height, width) * self.spec.crop_size) // self.spec.resize_size
        return (height - side) // 2, (width - side) // 2, side

    @staticmethod
    def _to_image_size(cam: Tensor, height: int, width: int, box: tuple[int, int, int]) -> np.ndarray:
        """The crop's map resized to the crop's place in the image; 0 where the model saw nothing."""
        top, left, side = box
        resized = F.interpolate(cam[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
        heatmap = np.zeros((height, width), dtype=np.float32)
        heatmap[top:top + side, left:left + side] = resized.clamp(0, 1).numpy()
        return heatmap


def _weighted_map(activation: Tensor, gradient: Tensor) -> Tensor:
    """ReLU(sum over channels of activation x its mean gradient), scaled to [0, 1]: h x w."""
    weights = gradient.float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation.float()).sum(dim=1))[0]
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def colour_map(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> H x W x 3 uint8, blue (low) through green and yellow to red (high): the "jet" scale
    people know from heatmaps, without a plotting library."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # red, green, blue peak at these values
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5,
            box: tuple[int, int, int] | None = None) -> np.ndarray:
    """The heatmap's colours blended over an H x W x 3 uint8 image; only inside ``box`` (top, left, side)
    when given, so what the model never saw keeps its own colours."""
    weight = np.full(heatmap.shape, alpha, dtype=np.float32)
    if box is not None:
        top, left, side = box
        weight[:] = 0
        weight[top:top + side, left:left + side] = alpha
    colours = colour_map(heatmap).astype(np.float32)
    blended = image.astype(np.float32) * (1 - weight[..., None]) + colours * weight[..., None]
    return np.clip(blended, 0, 255).astype(np.uint8)
