"""The model registry: numbers from torchvision's own API, the JSON cache, names and weight availability."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision.models

from tl_studio.core import catalog
from tl_studio.core.catalog import DEFAULT_MODEL, ModelInfo
from tl_studio.core.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """The catalog cache the read-only tests share, so the user's cache is never written."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_STUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tl_studio_cache"))
        yield


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """An empty catalog cache of its own (the in-process copy is per cache file, so it is fresh too)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TL_STUDIO_CACHE_DIR", str(cache))
    return cache


def test_every_torchvision_classifier_is_listed_after_the_bundled_default():
    names = [info.name for info in catalog.list_models()]
    assert names[0] == DEFAULT_MODEL == "efficientnet_lite0"
    assert names[1:] == sorted(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.parametrize("name", ["resnet18", "inception_v3", "vit_h_14", "squeezenet1_0"])
def test_numbers_are_torchvisions_own(name):
    info, default = catalog.get_model_info(name), torchvision.models.get_model_weights(name).DEFAULT
    preprocess = default.transforms()
    assert info.num_params == default.meta["num_params"]
    assert info.acc1 == default.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert (info.gflops, info.file_bytes) == (default.meta["_ops"], round(default.meta["_file_size"] * 2**20))
    assert info.min_size == default.meta["min_size"][0]
    assert (info.crop_size, info.resize_size) == (preprocess.crop_size[0], preprocess.resize_size[0])
    assert info.interpolation == preprocess.interpolation.value
    assert list(info.mean) == list(preprocess.mean) and list(info.std) == list(preprocess.std)
    assert info.weights_name == str(default) and info.weights_url == default.url
    assert default.url.endswith("/" + info.weights_file) and not info.bundled


def test_inception_and_vit_h_keep_their_unusual_input_sizes():
    inception, vit_h = catalog.get_model_info("inception_v3"), catalog.get_model_info("vit_h_14")
    assert (inception.min_size, inception.crop_size) == (75, 299)
    assert vit_h.crop_size == vit_h.min_size == 518 and vit_h.interpolation == "bicubic"


def test_bundled_lite0_metadata_comes_from_timm_and_the_model():
    import timm

    info = catalog.get_model_info(DEFAULT_MODEL)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    assert info.bundled and info.weights_url is None and info.weights_file.endswith(".pth")
    assert info.num_params == sum(p.numel() for p in model.parameters())
    assert info.mean == info.std == (0.5, 0.5, 0.5)
    assert (info.crop_size, info.resize_size, info.interpolation) == (224, 256, "bicubic")
    assert info.acc1 is None  # nothing installed records it, and none is invented
    assert 0.3 < info.gflops < 0.5  # measured, in torchvision's unit (multiply-adds)


def test_gflops_are_measured_in_torchvisions_unit():
    from tl_studio.core.lite0 import _measure_gflops

    resnet18 = torchvision.models.resnet18(weights=None).eval()
    expected = torchvision.models.ResNet18_Weights.DEFAULT.meta["_ops"]
    assert _measure_gflops(resnet18, 224, torch) == pytest.approx(expected, rel=0.01)


def test_the_cache_is_written_once_and_read_without_torch(private_cache):
    catalog.list_models()
    data = json.loads((private_cache / catalog.CACHE_FILE_NAME).read_text())
    assert data["key"]["torchvision"] == importlib.metadata.version("torchvision")
    assert len(data["models"]) == len(catalog.list_models())
    code = ("import sys; from tl_studio.core import catalog; "
            "infos = catalog.list_models(); assert len(infos) > 80, len(infos); "
            "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_cache_from_other_versions_is_rebuilt(private_cache):
    path = private_cache / catalog.CACHE_FILE_NAME
    path.parent.mkdir(parents=True)
    stale = {"key": dict(catalog.catalog_key(), torchvision="0.0.1"), "models": []}
    path.write_text(json.dumps(stale))
    assert len(catalog.list_models()) > 80
    assert json.loads(path.read_text())["key"] == catalog.catalog_key()


def test_a_corrupt_cache_is_rebuilt(private_cache):
    path = private_cache / catalog.CACHE_FILE_NAME
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    assert catalog.list_models()[0].name == DEFAULT_MODEL


def test_an_unwritable_cache_only_costs_speed(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("TL_STUDIO_CACHE_DIR", str(blocker / "cache"))  # cannot be created under a file
    assert catalog.list_models()[0].name == DEFAULT_MODEL


def test_unknown_names_suggest_close_ones():
    with pytest.raises(UserError, match="did you mean resnet18"):
        catalog.get_model_info("resnt18")
    with pytest.raises(UserError, match="tl-studio models"):
        catalog.get_model_info("no-such-model-at-all")


def test_names_ignore_case_and_dashes():
    assert catalog.get_model_info("EfficientNet-Lite0").name == DEFAULT_MODEL
    assert catalog.get_model_info(" ResNet18 ").name == "resnet18"


def test_model_info_round_trips_through_json():
    info = catalog.get_model_info("vit_b_16")
    assert ModelInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


def test_hub_dir_follows_torch_hub_rule(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalog.hub_checkpoint_dir() == tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
    assert catalog.hub_checkpoint_dir() == Path(torch.hub.get_dir()) / "checkpoints"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert catalog.hub_checkpoint_dir() == Path(torch.hub.get_dir()) / "checkpoints" == tmp_path / "th/hub/checkpoints"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert catalog.hub_checkpoint_dir() == Path(torch.hub.get_dir()) / "checkpoints"


def test_cache_dir_override_and_xdg(monkeypatch, tmp_path):
    assert catalog.cache_dir() == Path(os.environ["TL_STUDIO_CACHE_DIR"])
    monkeypatch.delenv("TL_STUDIO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalog.cache_dir() == tmp_path / "xdg" / "tl_studio"


def test_weights_status_bundled_cached_or_missing(torch_home):
    resnet = catalog.get_model_info("resnet18")
    assert catalog.weights_status(catalog.get_model_info(DEFAULT_MODEL)) == "bundled"
    assert catalog.weights_status(resnet) == "missing"
    (torch_home / "hub" / "checkpoints" / resnet.weights_file).write_bytes(b"")
    assert catalog.weights_status(resnet) == "cached"
