"""BatchNorm folded into the convolutions for feature extraction (core/bn_folding.py): the same
features, fewer layers, and the model kept as it is when the registration order lies about the data
flow."""

from __future__ import annotations

import torch
from torch import nn

from tl_studio.core.bn_folding import folded_for_inference
from tl_studio.core.dataset import Batch
from tl_studio.core.features import extract_features
from tl_studio.core.models import build_model, forward_features


def _with_trained_statistics(model: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters, as a trained network has (a fresh one's
    mean 0 / variance 1 would make folding nearly a no-op and hide a wrong formula)."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
    return model.eval()


def _batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


def test_folding_keeps_the_features_of_resnet18_and_efficientnet_lite0():
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    for name in ("resnet18", "efficientnet_lite0"):
        model = _with_trained_statistics(build_model(name, 3, "none"))
        folded = folded_for_inference(model, images[:2], forward_features)
        assert folded is not model
        assert _batch_norms(model) > 0 and _batch_norms(folded) == 0, name  # every BatchNorm folded
        with torch.no_grad():
            expected, got = forward_features(model, images), forward_features(folded, images)
        assert _relative_error(got, expected) < 1e-4, name
        assert not any(p.requires_grad for p in folded.parameters())
        assert _batch_norms(model) > 0  # the model itself is untouched


class _NormBeforeConv(nn.Module):
    """Registered conv then norm, but the norm runs first: folding by registration order would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.conv(self.norm(x)).mean((2, 3)))


def test_a_pairing_the_data_flow_contradicts_keeps_the_model():
    model = _with_trained_statistics(_NormBeforeConv())
    images = torch.rand(2, 3, 16, 16)
    assert folded_for_inference(model, images, forward_features) is model


def test_batch_norms_in_training_mode_are_not_folded():
    model = _with_trained_statistics(build_model("resnet18", 2, "none")).train()
    assert folded_for_inference(model, torch.rand(2, 3, 64, 64), forward_features) is model


def test_extract_features_gives_the_unfolded_models_features():
    model = _with_trained_statistics(build_model("efficientnet_lite0", 2, "none"))
    images = torch.rand(5, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    loader = [Batch(images[:3], torch.tensor([0, 1, 0]), torch.tensor([0, 1, 2]), []),
              Batch(images[3:], torch.tensor([1, 1]), torch.tensor([3, 4]), [])]
    features = extract_features(model, loader, torch.device("cpu"))
    with torch.no_grad():
        expected = forward_features(model, images)
    assert _relative_error(features.features, expected) < 1e-4
    assert features.indices.tolist() == [0, 1, 2, 3, 4]
    assert _batch_norms(model) > 0


# ---- in a model file's graph ----------------------------------------------------------------------
def _model_file(tmp_path, name: str):
    from tl_studio.core.catalog import get_model_info
    from tl_studio.core.export import ExportedClassifier, write_pt2
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.preprocess import PreprocessSpec

    network = _with_trained_statistics(build_model(name, 3, "none"))
    spec = PreprocessSpec.for_model(get_model_info(name), 96)
    path = tmp_path / f"{name}.pt2"
    write_pt2(ExportedClassifier(network, spec).eval(), {"classes": ["a", "b", "c"], "preprocessing": spec.to_dict()},
              path)
    return load_model_file(path)


def _graph_batch_norms(module) -> int:
    return sum(node.op == "call_function" and node.target is torch.ops.aten.batch_norm.default
               for node in module.graph.nodes)


def test_a_model_file_for_many_images_runs_folded_with_the_same_answers(tmp_path):
    from tl_studio.core.model_file import FOLD_FROM_IMAGES, for_many_images

    model = _model_file(tmp_path, "resnet18")
    assert for_many_images(model, FOLD_FROM_IMAGES - 1) is model  # a few images: not worth the fold
    fast = for_many_images(model, FOLD_FROM_IMAGES)
    assert _graph_batch_norms(model.module) == 20 and _graph_batch_norms(fast.module) == 0
    images = torch.rand(4, 3, 120, 100, generator=torch.Generator().manual_seed(3))
    expected, got = model.predict(images), fast.predict(images)
    assert torch.allclose(got, expected, atol=1e-5) and torch.equal(got.argmax(1), expected.argmax(1))
    weights = lambda module: sum(t.numel() for t in module.state_dict().values())  # noqa: E731
    assert weights(fast.module) < weights(model.module)  # the folded-away tensors are dropped


def test_a_graph_whose_folded_answers_differ_is_kept(tmp_path, monkeypatch):
    from tl_studio.core import bn_folding
    from tl_studio.core.model_file import for_many_images

    model = _model_file(tmp_path, "efficientnet_lite0")
    monkeypatch.setattr(bn_folding, "RELATIVE_TOLERANCE", -1.0)  # no fold can pass the check now
    assert for_many_images(model, 1000) is model


# ---- the model file exported from a folded copy ---------------------------------------------------
def _export(tmp_path, network: nn.Module, classes=("a", "b", "c")):
    from tl_studio.core.export import export_model
    from tl_studio.core.preprocess import PreprocessSpec

    spec = PreprocessSpec(crop_size=64, resize_size=72)
    images = [torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h)) for h, w in ((90, 70), (64, 64))]
    export_model(network, spec, {"classes": list(classes), "preprocessing": spec.to_dict()}, tmp_path / "model.pt2",
                 "pt2", images)
    return spec


def test_a_model_file_is_exported_folded_and_answers_as_the_network_trained(tmp_path):
    from tl_studio.core.export import ExportedClassifier
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.model_metadata import BATCHNORM_FOLDED

    network = _with_trained_statistics(build_model("resnet18", 3, "none"))
    spec = _export(tmp_path, network)
    model = load_model_file(tmp_path / "model.pt2")
    assert model.metadata[BATCHNORM_FOLDED] is True
    assert _graph_batch_norms(model.module) == 0
    assert not any("running_mean" in name for name in model.module.state_dict())
    images = torch.rand(3, 3, 100, 80, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ExportedClassifier(network, spec).eval()(images)
    assert torch.allclose(model.predict(images), expected, atol=1e-5)
    assert _batch_norms(network) == 20  # the network itself keeps its layers (checkpoints, resuming)


def test_a_network_whose_folding_fails_its_check_is_exported_as_it_is(tmp_path):
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.model_metadata import BATCHNORM_FOLDED

    _export(tmp_path, _with_trained_statistics(_NormBeforeConv()), classes=("a", "b"))
    model = load_model_file(tmp_path / "model.pt2")
    assert BATCHNORM_FOLDED not in model.metadata and _graph_batch_norms(model.module) == 1


def test_a_folded_copy_that_answers_otherwise_fails_the_export_check(tmp_path, monkeypatch):
    """The file is checked against the network as it trained, not against the folded copy it was
    written from: a folding gone wrong is caught and no file is left."""
    import pytest

    from tl_studio.core import bn_folding
    from tl_studio.core.export import ExportCheckError

    fold = bn_folding.folded_for_inference

    def folded_wrongly(model, probe, forward):
        folded = fold(model, probe, forward)
        with torch.no_grad():  # the logits negated: another class on top
            folded.fc.weight.neg_()
            folded.fc.bias.neg_()
        return folded

    monkeypatch.setattr(bn_folding, "folded_for_inference", folded_wrongly)
    with pytest.raises(ExportCheckError):
        _export(tmp_path, _with_trained_statistics(build_model("resnet18", 3, "none")))
    assert not (tmp_path / "model.pt2").exists()


def test_a_file_exported_folded_is_used_as_it_is_for_many_images(tmp_path, monkeypatch):
    from tl_studio.core import bn_folding
    from tl_studio.core.model_file import FOLD_FROM_IMAGES, for_many_images, load_model_file

    _export(tmp_path, _with_trained_statistics(build_model("resnet18", 3, "none")))
    model = load_model_file(tmp_path / "model.pt2")

    def no_copy(_):
        raise AssertionError("nothing to fold, nothing to copy")

    monkeypatch.setattr(bn_folding.copy, "deepcopy", no_copy)
    assert for_many_images(model, FOLD_FROM_IMAGES) is model
