"""Building models, their head, stages and freezing, for every registered model.

The every-model tests share one build per model: the module-scoped, parametrised ``built`` fixture makes pytest
run all of them for one model before building the next, and frees it afterwards.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
import torchvision.models
from torch import nn

from tl_studio.core import catalog, config, models
from tl_studio.core.catalog import DEFAULT_MODEL
from tl_studio.core.errors import UserError

ALL_MODELS = [DEFAULT_MODEL] + sorted(torchvision.models.list_models(module=torchvision.models))
NUM_CLASSES = 3
# Models above this many parameters (vit_l_16, vit_l_32, vit_h_14, regnet_y_128gf) are built on the meta device:
# their tests check shapes, stages and freezing, not numbers. Their random initialisation, vit_h_14's forward at
# 518 px and regnet_y_128gf's training step took about a minute of the suite on one core; the same code computes
# the numbers of their families' smaller members (vit_b_16, vit_b_32, the other RegNets), tested in full.
SHAPES_ONLY_ABOVE_PARAMS = 250_000_000
ANTS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "hymenoptera" / "train" / "ants"
IMAGENET_ANT = 310


@pytest.fixture(scope="module", autouse=True)
def catalog_cache(tmp_path_factory):
    """A private catalog cache shared by this session's tests, so the user's cache is never written."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_STUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tl_studio_cache"))
        yield


class Built:
    def __init__(self, name: str):
        self.info = catalog.get_model_info(name)
        self.shapes_only = self.info.num_params > SHAPES_ONLY_ABOVE_PARAMS
        side = max(self.info.min_size, 32)
        if self.shapes_only:
            self.model = models.build_shapes_only(name, NUM_CLASSES)
            self.x = torch.empty(2, 3, side, side, device="meta")
        else:
            self.model = models.build_model(name, NUM_CLASSES, weights="none")
            self.x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=ALL_MODELS)
def built(request):
    torch.manual_seed(0)
    item = Built(request.param)
    yield item
    del item.model, item
    gc.collect()


def test_every_model_built_shapes_only_has_a_smaller_one_of_its_family_tested_with_numbers():
    infos = [catalog.get_model_info(name) for name in ALL_MODELS]
    with_numbers = {info.family for info in infos if info.num_params <= SHAPES_ONLY_ABOVE_PARAMS}
    shapes_only = [info for info in infos if info.num_params > SHAPES_ONLY_ABOVE_PARAMS]
    assert sorted(info.name for info in shapes_only) == ["regnet_y_128gf", "vit_h_14", "vit_l_16", "vit_l_32"]
    assert all(info.family in with_numbers for info in shapes_only)


def _ids(parameters) -> list[int]:
    return [id(p) for p in parameters]


# --- every registered model -------------------------------------------------------------------------------------


def test_forward_gives_one_logit_per_class_and_features_are_what_the_head_sees(built):
    model = built.model.eval()
    outputs = []
    handle = model.register_forward_hook(lambda _m, _args, output: outputs.append(output))
    with torch.no_grad():
        features = models.forward_features(model, built.x)  # one forward pass, observed from outside too
        from_features = models.classify_features(model, features)
    handle.remove()
    logits = outputs[0]
    assert logits.shape == from_features.shape == (len(built.x), NUM_CLASSES)
    if built.shapes_only:
        return  # no numbers on the meta device (see SHAPES_ONLY_ABOVE_PARAMS)
    assert torch.isfinite(logits).all()
    assert torch.allclose(from_features, logits, atol=1e-5)


def test_the_stage_summary_built_on_the_meta_device_is_the_models(built):
    """What the Model step shows for every model (RegNet's builder computes its widths with tensors,
    which the shapes-only build had to leave on the CPU)."""
    summary = models.summarize_stages(built.info.name, NUM_CLASSES)
    stages = models.model_stages(built.model)
    assert summary.names == tuple(stage.name for stage in stages)
    assert summary.params == tuple(stage.num_params for stage in stages)
    assert summary.head_params == sum(p.numel() for p in models.head_of(built.model).parameters())
    assert summary.total_params == sum(p.numel() for p in built.model.parameters())


def test_head_is_new_and_sized_to_the_classes(built):
    head = models.head_of(built.model)
    size = head.out_features if isinstance(head, nn.Linear) else head.out_channels
    assert size == NUM_CLASSES
    assert built.model.tl_name == built.info.name


def test_every_parameter_outside_the_head_is_in_exactly_one_stage(built):
    stages = models.model_stages(built.model)
    in_stages = [pid for stage in stages for pid in _ids(stage.parameters())]
    head = _ids(models.head_of(built.model).parameters())
    assert len(in_stages) == len(set(in_stages)), "a parameter is in two stages"
    assert sorted(in_stages + head) == sorted(_ids(built.model.parameters()))
    assert stages[0].name == "stem" and all(stage.num_params > 0 for stage in stages)
    assert len(stages) >= 3


def test_freeze_depths_report_what_trains(built):
    model, stages = built.model, models.model_stages(built.model)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in models.head_of(model).parameters())
    for depth in (0, "none", 1, len(stages) // 2, len(stages) - 1, len(stages), "all"):
        report = models.freeze(model, depth)
        count = len(stages) if depth == "all" else (0 if depth == "none" else depth)
        frozen = sum(stage.num_params for stage in stages[:count])
        assert report.depth == count and report.num_stages == len(stages)
        assert report.frozen_stages == tuple(s.name for s in stages[:count])
        assert (report.trainable_params, report.total_params) == (total - frozen, total)
        assert models.param_counts(model) == (total - frozen, total)
    assert models.freeze(model, "all").trainable_params == head
    assert all(p.requires_grad == (id(p) in _ids(models.head_of(model).parameters())) for p in model.parameters())


def test_frozen_batchnorm_statistics_do_not_move_during_a_training_step(built):
    model, stages = built.model, models.model_stages(built.model)
    models.freeze(model, len(stages) - 1)
    models.set_train_mode(model)
    frozen_norms = [m for s in stages[:-1] for mod in s.modules for m in mod.modules() if _has_stats(m)]
    trained_norms = [m for mod in stages[-1].modules for m in mod.modules() if _has_stats(m)]
    assert all(not m.training for m in frozen_norms) and all(m.training for m in trained_norms)
    assert models.head_of(model).training
    if not frozen_norms or built.shapes_only:
        return  # no running statistics (transformers), or no numbers (SHAPES_ONLY_ABOVE_PARAMS): nothing to watch
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in frozen_norms + trained_norms]
    frozen_weights = [p.detach().clone() for s in stages[:-1] for p in s.parameters()]
    _training_step(model, built.x)
    after = [(m.running_mean, m.running_var) for m in frozen_norms + trained_norms]
    for (mean0, var0), (mean1, var1) in zip(before[:len(frozen_norms)], after):
        assert torch.equal(mean0, mean1) and torch.equal(var0, var1)
    if trained_norms:  # proves the step ran in training mode at all
        assert not torch.equal(before[-1][0], after[-1][0])
    frozen_after = [p for s in stages[:-1] for p in s.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(frozen_weights, frozen_after))


def _has_stats(module: nn.Module) -> bool:
    return getattr(module, "track_running_stats", False) and getattr(module, "running_mean", None) is not None


def _training_step(model: nn.Module, x: torch.Tensor) -> None:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = nn.functional.cross_entropy(model(x), torch.arange(len(x)) % NUM_CLASSES)
    loss.backward()
    optimizer.step()


# --- stages of a few well-known models --------------------------------------------------------------------------


def test_resnet18_stages_are_the_stem_and_its_four_layers():
    model = models.build_model("resnet18", 2, weights="none")
    stages = models.model_stages(model)
    assert [s.module_names for s in stages] == [("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)]
    assert [s.stride for s in stages] == [2, 4, 8, 16, 32]
    assert models.head_path(model) == "fc"


def test_vit_stem_holds_the_class_token_and_position_embedding():
    model = models.build_model("vit_b_16", 2, weights="none")
    stages = models.model_stages(model)
    assert len(stages) == 13 and stages[0].module_names == ("conv_proj",)
    assert {id(p) for p in stages[0].loose_parameters} == {id(model.class_token), id(model.encoder.pos_embedding)}
    assert stages[-1].module_names == ("encoder.layers.encoder_layer_11", "encoder.ln")
    assert models.head_path(model) == "heads.head"


def test_lite0_stages_follow_its_resolution():
    model = models.build_model(DEFAULT_MODEL, 2, weights="none")
    stages = models.model_stages(model)
    assert [s.module_names for s in stages] == [
        ("conv_stem", "bn1", "blocks.0"), ("blocks.1",), ("blocks.2",), ("blocks.3", "blocks.4"),
        ("blocks.5", "blocks.6", "conv_head", "bn2")]


def test_classifier_layers_before_the_head_are_a_pre_head_stage():
    model = models.build_model("vgg11", 2, weights="none")
    stages = models.model_stages(model)
    assert stages[-1].name == "pre-head" and stages[-1].module_names == ("classifier.0", "classifier.3")
    report = models.freeze(model, len(stages) - 1)
    assert report.trainable_stages == ("pre-head",)


def test_squeezenet_head_is_a_conv_and_features_keep_their_spatial_shape():
    model = models.build_model("squeezenet1_1", 4, weights="none").eval()
    assert isinstance(models.head_of(model), nn.Conv2d) and models.head_path(model) == "classifier.1"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = models.forward_features(model, x)
        assert features.dim() == 4
        assert torch.allclose(models.classify_features(model, features), model(x), atol=1e-6)


# --- freeze depth text ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("all", "all"), ("ALL", "all"), ("none", 0), ("0", 0), (" 3 ", 3),
                                            ("5", 5)])
def test_parse_freeze_accepts_all_none_and_stage_counts(text, expected):
    assert config.parse_freeze(text, 5) == expected


@pytest.mark.parametrize("text", ["6", "-1", "half", "", "1.5"])
def test_parse_freeze_refuses_bad_values_with_the_valid_range(text):
    with pytest.raises(UserError, match="Freeze depth"):
        config.parse_freeze(text, 5)


def test_parse_freeze_without_a_stage_count_only_refuses_negative_depths():
    assert config.parse_freeze("40") == 40
    with pytest.raises(UserError, match="0 or more"):
        config.parse_freeze("-2")


def test_freeze_refuses_a_depth_beyond_the_stages():
    model = models.build_model("resnet18", 2, weights="none")
    with pytest.raises(UserError, match="5 stages"):
        models.freeze(model, 6)


def test_unfreezing_after_freezing_trains_everything_again():
    model = models.build_model("resnet18", 2, weights="none")
    models.freeze(model, "all")
    models.set_train_mode(model)
    assert not model.bn1.training
    report = models.freeze(model, "none")
    models.set_train_mode(model)
    assert report.trainable_params == report.total_params and model.bn1.training


# --- weights ----------------------------------------------------------------------------------------------------------


def _imagenet_resnet18_file(path: Path, seed: int = 1) -> dict:
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_default_weights_come_from_the_hub_cache(torch_home):
    expected = _imagenet_resnet18_file(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = models.build_model("resnet18", 2)  # no network: the cached file is used without re-hashing it
    assert torch.equal(model.conv1.weight, expected["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, expected["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 2


def test_weights_from_a_file_load_strictly(tmp_path):
    expected = _imagenet_resnet18_file(tmp_path / "mine.pth")
    model = models.build_model("resnet18", 5, weights=tmp_path / "mine.pth")
    assert torch.equal(model.layer1[0].conv1.weight, expected["layer1.0.conv1.weight"])


def test_weights_of_another_architecture_are_refused_clearly(tmp_path):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(UserError, match=r"resnet34.pth does not fit resnet18: .* unexpected"):
        models.build_model("resnet18", 2, weights=tmp_path / "resnet34.pth")


def test_a_pickled_model_is_not_loaded(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")  # a whole pickled module could run code when loaded
    with pytest.raises(UserError, match="loading those can run code"):
        models.build_model("resnet18", 2, weights=tmp_path / "module.pth")


def test_missing_weights_file_and_bad_class_count_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        models.build_model("resnet18", 2, weights=tmp_path / "nope.pth")
    with pytest.raises(UserError, match="at least one class"):
        models.build_model("resnet18", 0, weights="none")


def test_googlenet_pretrained_file_with_aux_heads_loads_and_drops_them(tmp_path):
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    torch.save(reference.state_dict(), tmp_path / "googlenet.pth")
    model = models.build_model("googlenet", 2, weights=tmp_path / "googlenet.pth")
    assert model.aux1 is None and model.aux2 is None and model.transform_input
    assert torch.equal(model.inception5b.branch1.conv.weight, reference.inception5b.branch1.conv.weight)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 2)


def test_a_model_rebuilt_without_weights_computes_what_the_trained_one_did(tmp_path):
    for name in ("googlenet", "inception_v3"):  # their pretrained architecture rescales the input itself
        trained = models.build_model(name, 2, weights=_pretrained_file(name, tmp_path)).eval()
        rebuilt = models.build_model(name, 2, weights="none").eval()
        rebuilt.load_state_dict(trained.state_dict())
        x = torch.randn(1, 3, 80, 80)
        with torch.no_grad():
            assert torch.equal(trained(x), rebuilt(x))


@pytest.mark.parametrize("name", ["resnet18", "regnet_x_400mf", "swin_t", "maxvit_t", DEFAULT_MODEL])
def test_a_trained_model_rebuilt_skips_random_values_and_computes_what_the_usual_build_does(name):
    """A run's export and Grad-CAM load the trained state dict into uninitialised memory
    (models._uninitialised); the network is the one the usual build then load gives, buffers computed by the
    builder (Swin's and MaxViT's relative position indices) included, and owns its values."""
    torch.manual_seed(0)
    trained = models.build_model(name, 3, weights="none").eval()
    state = trained.state_dict()
    rebuilt = models.build_trained_model(name, 3, state, "test").eval()
    values = rebuilt.state_dict()
    assert values.keys() == state.keys() and all(torch.equal(values[key], state[key]) for key in state)
    assert not any(p.is_meta for p in rebuilt.parameters()) and not any(b.is_meta for b in rebuilt.buffers())
    assert not {p.data_ptr() for p in rebuilt.parameters()} & {t.data_ptr() for t in state.values()}
    side = max(catalog.get_model_info(name).min_size, 64)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained(x))


def test_a_plain_dict_of_weights_loads_into_a_model_that_checks_its_layout_version():
    """A .pt2 file's weights come as a plain dict, without the layout versions a state dict carries;
    torchvision's MNASNet refused them (ValueError: version should be set to 1 or 2), so Grad-CAM
    could not open an MNASNet model file."""
    trained = models.build_model("mnasnet0_5", 3, weights="none").eval()
    plain = dict(trained.state_dict())
    rebuilt = models.build_trained_model("mnasnet0_5", 3, plain, "model.pt2").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained(x))


@pytest.mark.parametrize("name", ["resnet18", DEFAULT_MODEL])
def test_a_seed_draws_the_same_new_head_with_pretrained_weights_as_without(name, tmp_path):
    """The new head is drawn after the backbone's random values, even where the pretrained weights then
    replace them: skipping those draws would give every seed another run than before (ants/bees' first
    default run: best val accuracy 0.961 -> 0.941)."""
    weights_file = tmp_path / "imagenet.pth"
    torch.save(models.build_imagenet_model(catalog.get_model_info(name), "none").state_dict(), weights_file)
    torch.manual_seed(0)
    random_backbone = models.build_model(name, 3, weights="none")
    torch.manual_seed(0)
    pretrained = models.build_model(name, 3, weights=weights_file)
    assert torch.equal(models.head_of(pretrained).weight, models.head_of(random_backbone).weight)


def test_a_builder_value_no_state_dict_holds_is_kept_by_building_as_usual():
    class WithConstant(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 2)
            self.register_buffer("scale", torch.full((2,), 3.0), persistent=False)

    model = models._uninitialised(WithConstant)
    assert torch.equal(model.scale, torch.full((2,), 3.0)) and not model.layer.weight.is_meta


def _pretrained_file(name: str, folder: Path) -> Path:
    path = folder / f"{name}.pth"
    torch.save(torchvision.models.get_model(name, weights=None, aux_logits=True, init_weights=False).state_dict(),
               path)
    return path


# --- the bundled backbone ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_imagenet():
    model = models.build_imagenet_model(catalog.get_model_info(DEFAULT_MODEL)).eval()
    return model


def test_bundled_lite0_weights_load_strictly_with_renamed_keys(lite0_imagenet):
    from tl_studio.core import lite0, weights

    raw = weights.load_state_dict_file(lite0.bundled_weights_path())
    assert any(key.startswith("_blocks.") for key in raw)  # the file really is in EfficientNet-PyTorch names
    assert torch.equal(lite0_imagenet.blocks[5][3].conv_pwl.weight, raw["_blocks.14._project_conv.weight"])
    assert torch.equal(lite0_imagenet.classifier.weight, raw["_fc.weight"])


def test_lite0_weights_saved_in_timm_names_load_too(lite0_imagenet, tmp_path):
    torch.save(lite0_imagenet.state_dict(), tmp_path / "lite0_timm.pth")
    model = models.build_model(DEFAULT_MODEL, 2, weights=tmp_path / "lite0_timm.pth")
    assert torch.equal(model.conv_stem.weight, lite0_imagenet.conv_stem.weight)
    assert model.classifier.out_features == 2


def test_bundled_lite0_features_tell_images_apart(lite0_imagenet, tmp_path):
    from tests.helpers import make_image

    images = [_preprocess(make_image(tmp_path / f"{i}.png", colour, size=96, seed=i))
              for i, colour in enumerate([(200, 40, 40), (40, 60, 200)])]
    with torch.no_grad():
        features = models.forward_features(lite0_imagenet, torch.stack(images))
    assert features.shape == (2, 1280)
    assert not torch.allclose(features[0], features[1], atol=1e-2)


def test_bundled_lite0_recognises_real_ants(lite0_imagenet):
    files = sorted(ANTS.glob("*.jpg"))[:5] if ANTS.is_dir() else []
    if not files:
        pytest.skip(f"the real dataset is not at {ANTS}")
    with torch.no_grad():
        probabilities = lite0_imagenet(torch.stack([_preprocess(f) for f in files])).softmax(1)
    top5 = probabilities.topk(5).indices
    assert all(IMAGENET_ANT in row.tolist() for row in top5)
    assert (probabilities.argmax(1) == IMAGENET_ANT).sum() >= 3


def _preprocess(path: Path) -> torch.Tensor:
    """The catalog's preprocessing for lite0: resize, centre crop, normalise."""
    import torchvision.transforms.v2 as T
    from PIL import Image

    info = catalog.get_model_info(DEFAULT_MODEL)
    transform = T.Compose([
        T.Resize(info.resize_size, interpolation=T.InterpolationMode(info.interpolation)),
        T.CenterCrop(info.crop_size), T.ToImage(), T.ToDtype(torch.float32, scale=True),
        T.Normalize(info.mean, info.std)])
    with Image.open(path) as image:
        return transform(image.convert("RGB"))


def test_a_model_built_again_reuses_its_stage_plan_and_gets_the_same_stages():
    """The plan is computed once per architecture in a process (a shapes-only forward pass); a second
    build, with another head, has the same stages over its own modules."""
    first = models.build_model("resnet18", 2, weights="none")
    second = models.build_model("resnet18", 5, weights="none")
    assert second.tl_stage_plans is first.tl_stage_plans
    first_stages, second_stages = models.model_stages(first), models.model_stages(second)
    assert [s.module_names for s in first_stages] == [s.module_names for s in second_stages]
    assert all(a is not b for s1, s2 in zip(first_stages, second_stages) for a, b in zip(s1.modules, s2.modules))
    assert models.head_of(second).out_features == 5
