"""bfloat16 on the CPU: decided in one place (device.autocast_dtype) from the CPU's bf16 arithmetic (AMX
matrix units or AVX512-BF16 instructions) and the measured model families, and followed by the training
steps, validation and feature extraction."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tl_studio.core.device as device
from tl_studio.core.config import TrainConfig
from tl_studio.core.device import DeviceInfo, autocast_dtype, resolve_device, use_channels_last
from tl_studio.core.engine import Trainer


def _cpu(dtype) -> DeviceInfo:
    return DeviceInfo(torch.device("cpu"), "CPU", dtype, False)


def test_bf16_autocast_where_it_measured_faster_and_validation_in_float32():
    amx = _cpu(torch.bfloat16)  # AMX or AVX512-BF16: the two measured alike (device.py)
    assert autocast_dtype(amx, "efficientnet_lite0", purpose="features") == torch.bfloat16
    assert autocast_dtype(amx, "efficientnet_lite0", purpose="train") is None  # no gain in its training step
    assert autocast_dtype(amx, "resnet18", purpose="train") == torch.bfloat16
    assert autocast_dtype(amx, "vit_b_16", purpose="features") is None  # not measured: float32
    # what validation reports and the model file is calibrated on are the float32 file's own
    assert autocast_dtype(amx, "resnet18", purpose="validate") is None
    assert autocast_dtype(_cpu(None), "resnet18", purpose="train") is None  # no bf16 units, or --no-amp
    cuda = DeviceInfo(torch.device("cuda", 0), "GPU", torch.float16, True)
    assert autocast_dtype(cuda, "vit_b_16", purpose="validate") == torch.float16
    with pytest.raises(ValueError):
        autocast_dtype(amx, "resnet18", purpose="inference")
    # bf16 runs fastest in channels_last, also for a family that trains contiguous in float32
    assert use_channels_last(amx, "resnet18", training=True, autocast=torch.bfloat16)
    assert not use_channels_last(amx, "resnet18", training=True, autocast=None)


def test_the_cpu_gets_bf16_only_with_bf16_arithmetic_and_mixed_precision_on(monkeypatch):
    for kind in ("amx", "avx512_bf16"):
        monkeypatch.setattr(device, "cpu_bf16_support", lambda kind=kind: kind)
        assert resolve_device("cpu").amp_dtype == torch.bfloat16
        assert resolve_device("cpu", amp=False).amp_dtype is None
    monkeypatch.setattr(device, "cpu_bf16_support", lambda: None)
    assert resolve_device("cpu").amp_dtype is None


def test_the_probe_names_the_cpus_bf16_arithmetic(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert device.cpu_bf16_support() == ("avx512_bf16" if torch.backends.mkldnn.is_available() else None)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert device.cpu_bf16_support() == ("amx" if torch.backends.mkldnn.is_available() else None)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert device.cpu_bf16_support() is None


class _Dtypes:
    """The dtype of the first convolution's output and whether its input was contiguous (False: in
    channels_last), split by training and inference passes. The hook is a plain function: copies of the
    model (deepcopy copies the hooks) then record here too."""

    def __init__(self):
        self.train, self.eval = set(), set()
        train, evaluation = self.train, self.eval

        def hook(module, inputs, output):
            (train if module.training else evaluation).add((output.dtype, inputs[0].is_contiguous()))
        self.hook = hook


def _fine_tune(tiny_dataset, tmp_path, monkeypatch, amp: bool):
    monkeypatch.setattr(device, "cpu_bf16_support", lambda: "amx")
    seen = _Dtypes()
    networks = []
    from tl_studio.core import run_state

    prepare = run_state.RunState.prepare

    def prepared(*args, **kwargs):
        state = prepare(*args, **kwargs)
        state.model.conv1.register_forward_hook(seen.hook)
        return state

    copy_for_inference = run_state.RunState._inference_copy

    def inference_copy(self, model, images):
        network, channels_last = copy_for_inference(self, model, images)
        networks.append(network)
        return network, channels_last

    monkeypatch.setattr(run_state.RunState, "prepare", staticmethod(prepared))
    monkeypatch.setattr(run_state.RunState, "_inference_copy", inference_copy)
    config = TrainConfig(data_dir=str(tiny_dataset), model="resnet18", weights="none", freeze="none",
                         epochs=1, batch_size=8, workers=0, img_size=64, seed=0, amp=amp)
    trainer = Trainer(config, tmp_path / f"run-{amp}", strict_callbacks=True)
    finished = trainer.fit()
    assert trainer.error is None and finished.status == "completed", finished.message
    return seen, networks


def test_a_resnet_fine_tunes_in_bf16_on_a_cpu_with_matrix_units_and_validates_in_float32(tiny_dataset, tmp_path, monkeypatch):
    seen, networks = _fine_tune(tiny_dataset, tmp_path, monkeypatch, amp=True)
    assert seen.train == {(torch.bfloat16, False)}  # bf16, channels_last inputs
    assert seen.eval == {(torch.float32, False), (torch.float32, True)}  # validation (and export) in float32
    # validation ran a copy with its BatchNorms folded into the convolutions
    assert networks and all(not any(isinstance(m, nn.BatchNorm2d) for m in n.modules()) for n in networks)


def test_without_mixed_precision_the_cpu_trains_in_float32(tiny_dataset, tmp_path, monkeypatch):
    seen, networks = _fine_tune(tiny_dataset, tmp_path, monkeypatch, amp=False)
    assert seen.train == {(torch.float32, True)}  # float32 trains resnets contiguous on the CPU
    assert {dtype for dtype, _ in seen.eval} == {torch.float32}
    assert (torch.float32, False) in seen.eval  # the inference copy runs channels_last
    assert networks and all(not any(isinstance(m, nn.BatchNorm2d) for m in n.modules()) for n in networks)


def test_frozen_training_features_are_bf16_and_validation_features_float32(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(device, "cpu_bf16_support", lambda: "amx")
    from tl_studio.core import feature_store, features

    calls = []
    extract = features.extract_features

    def recording(model, loader, dev, *, amp_dtype=None, float32_from=None, **options):
        calls.append((amp_dtype, float32_from, len(loader.dataset)))
        return extract(model, loader, dev, amp_dtype=amp_dtype, float32_from=float32_from, **options)

    monkeypatch.setattr(features, "extract_features", recording)
    config = TrainConfig(data_dir=str(tiny_dataset), model="efficientnet_lite0", freeze="all", epochs=1,
                         batch_size=8, workers=0, img_size=64, seed=0)
    trainer = Trainer(config, tmp_path / "run", strict_callbacks=True)
    assert trainer.fit().status == "completed"
    train, val = len(trainer.state.features["train"]), len(trainer.state.features["val"])
    assert calls == [(torch.bfloat16, train, train + val)]  # one pass, the val images from `train` on
    # the store keeps each split's features under the precision they were computed in
    entries = {}
    for key_file in feature_store.store_root().glob("*/key.json"):
        entries[json.loads(key_file.read_text())["amp"]] = len(list(key_file.parent.rglob("*.pt")))
    assert entries == {"torch.bfloat16": train, "None": val}
    # validation's logits were float32 and calibrate the model file without another pass
    assert trainer.state.best_val_logits is not None


def test_a_batch_of_training_and_validation_images_gets_each_its_precision():
    from tl_studio.core import features

    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(16, 2)).eval()
    network.tl_name = "test"
    images = torch.rand(6, 3, 20, 20)
    indices = torch.tensor([3, 4, 5, 6, 7, 8])
    with torch.no_grad():
        mixed = features._features(network, images, indices, torch.bfloat16, float32_from=6)
        fast = features._features(network, images, indices, torch.bfloat16, float32_from=None)
        exact = network[:-1](images)  # what the head receives
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed[3:], exact[3:]) and torch.equal(mixed[:3], fast[:3])
    assert not torch.equal(mixed[:3], exact[:3])  # bf16 rounding shows


@pytest.mark.skipif(not device.cpu_bf16_support(), reason="this CPU does no bf16 arithmetic in hardware")
def test_this_cpu_detects_its_bf16_arithmetic():
    assert resolve_device("cpu").amp_dtype == torch.bfloat16
