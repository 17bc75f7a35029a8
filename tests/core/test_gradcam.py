"""Grad-CAM: a map the size of the image for a CNN, an EfficientNet and a ViT, and the network rebuilt from a
model file answers exactly like the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.evaluation_helpers import one_torch_thread, tiny_model
from tl_studio.core.gradcam import GradCam, colour_map, load_network, overlay, target_layer_name, to_grid
from tl_studio.core.models import build_model, head_of
from tl_studio.core.preprocess import PreprocessSpec

HEIGHT, WIDTH = 72, 96  # not square: the map must still cover the whole image


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


def _check_heatmap(heatmap: np.ndarray, spec: PreprocessSpec) -> None:
    assert heatmap.shape == (HEIGHT, WIDTH) and heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1
    side = HEIGHT * spec.crop_size // spec.resize_size
    left = (WIDTH - side) // 2
    assert not heatmap[:, :left].any() and not heatmap[:, left + side:].any()  # the model never saw these


@pytest.mark.parametrize("name, crop, expected_layer", [
    ("resnet18", 64, "layer4"),
    ("efficientnet_b0", 64, "features.8"),
    ("vit_b_16", 224, "encoder.layers.encoder_layer_10"),  # the input of the last block, not its output
    ("swin_t", 224, "norm"),  # N x H x W x C after the last stage's norm
    ("maxvit_t", 224, "blocks.3"),  # the last block keeps a 7 x 7 grid
])
def test_heatmap_has_the_image_size_for_each_family(name, crop, expected_layer):
    torch.manual_seed(0)
    network = build_model(name, 3, "none")
    spec = PreprocessSpec(crop_size=crop, resize_size=round(crop * 1.14))
    cam = GradCam(network, spec)
    assert cam.layer_name == expected_layer
    result = cam(torch.rand(3, HEIGHT, WIDTH))
    _check_heatmap(result.heatmap, spec)
    assert 0 <= result.class_index < 3 and 0 < result.probability <= 1
    seen = result.heatmap[result.heatmap > 0]
    assert seen.size and seen.max() > 0.5 and seen.std() > 0.01  # a map with a peak, not a flat square


def test_positive_evidence_shows_up_in_the_map():
    """With a head that adds up non-negative ResNet features, every class has positive evidence: the map
    cannot be empty and must peak at 1."""
    torch.manual_seed(0)
    network = build_model("resnet18", 2, "none")
    with torch.no_grad():
        head_of(network).weight.abs_()
        head_of(network).bias.zero_()
    spec = PreprocessSpec(crop_size=64, resize_size=73)
    result = GradCam(network, spec)(torch.rand(3, HEIGHT, WIDTH), class_index=1)
    _check_heatmap(result.heatmap, spec)
    assert result.class_index == 1 and result.heatmap.max() == pytest.approx(1.0, abs=0.02)


def test_tokens_and_channels_last_become_a_grid():
    assert to_grid(torch.zeros(2, 197, 8)).shape == (2, 8, 14, 14)  # ViT: class token + 14 x 14 patches
    assert to_grid(torch.zeros(2, 49, 8)).shape == (2, 8, 7, 7)  # no class token
    assert to_grid(torch.zeros(2, 7, 7, 768)).shape == (2, 768, 7, 7)  # Swin: N x H x W x C
    assert to_grid(torch.zeros(2, 512, 7, 7)).shape == (2, 512, 7, 7)


def test_network_from_the_model_file_answers_like_the_file(tmp_path_factory):
    from tl_studio.core.export import load_model_file, temperature_of
    from tl_studio.core.preprocess import Preprocess

    model = tiny_model(tmp_path_factory)
    model_file = load_model_file(model.model_file)
    network = load_network(model.model_file, model_file.metadata)
    spec = PreprocessSpec.from_dict(model_file.metadata["preprocessing"])
    image = torch.rand(1, 3, 64, 80)
    temperature = temperature_of(model_file.metadata)  # the file's probabilities are calibrated
    with torch.no_grad():
        ours = torch.softmax(network(Preprocess(spec)(image)) / temperature, dim=1)
    torch.testing.assert_close(ours, model_file.predict(image), atol=1e-5, rtol=0)
    shown = GradCam(network, spec, temperature=temperature)(image[0])
    assert shown.probability == pytest.approx(float(ours[0, shown.class_index]), abs=1e-4)
    assert target_layer_name(network) == "bn2"  # efficientnet_lite0's last stage ends in its last norm + act
    result = GradCam(network, spec)(image[0])
    assert result.heatmap.shape == (64, 80)


def test_a_file_with_its_batchnorms_folded_gives_the_map_of_the_network_as_it_trained(tmp_path_factory):
    from tl_studio.core.export import load_model_file
    from tl_studio.core.model_metadata import BATCHNORM_FOLDED

    model = tiny_model(tmp_path_factory)
    model_file = load_model_file(model.model_file)
    assert model_file.metadata[BATCHNORM_FOLDED] is True
    from_file = load_network(model.model_file, model_file.metadata)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in from_file.modules())
    metadata = {key: value for key, value in model_file.metadata.items() if key != BATCHNORM_FOLDED}
    as_trained = load_network(model.model_file.with_suffix(".onnx"), metadata, model.run_dir)  # the run's best.ckpt
    assert any(isinstance(module, torch.nn.BatchNorm2d) for module in as_trained.modules())
    spec = PreprocessSpec.from_dict(model_file.metadata["preprocessing"])
    image = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))
    folded, unfolded = GradCam(from_file, spec)(image), GradCam(as_trained, spec)(image)
    assert folded.class_index == unfolded.class_index
    assert folded.probability == pytest.approx(unfolded.probability, abs=1e-5)
    np.testing.assert_allclose(folded.heatmap, unfolded.heatmap, atol=1e-3)


def test_overlay_keeps_the_image_size_and_colours_the_hot_spots():
    image = np.full((10, 12, 3), 128, dtype=np.uint8)
    heatmap = np.zeros((10, 12), dtype=np.float32)
    heatmap[2, 3] = 1.0
    blended = overlay(image, heatmap)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert blended[2, 3, 0] > blended[2, 3, 2]  # hot: red over blue
    assert blended[0, 0, 2] > blended[0, 0, 0]  # cold: blue over red
    assert colour_map(np.array([0.0, 1.0])).tolist() == [[0, 0, 127], [127, 0, 0]]
    boxed = overlay(image, heatmap, box=(0, 2, 8))
    assert (boxed[:, :2] == 128).all() and (boxed[:, 10:] == 128).all()  # outside what the model saw
    assert (boxed[2, 3] == blended[2, 3]).all()
