"""Building a registered model with a new head, and the stages that freezing works on.

Every function here works for every model of the catalog through generic rules, not per-model tables:

- The head is the last ``Linear`` (or ``Conv2d``: SqueezeNet) registered in the model: the ImageNet classifier,
  replaced by a fresh layer sized to the classes.
- The backbone is cut into units: the children of the model, where the known trunk containers (``features``,
  ``layers``, ``trunk_output``, ``blocks``, ``encoder`` and ``encoder.layers``) are opened into their children.
  Units are grouped into stages by the resolution of their output (stride 2, 4, 8, 16, 32), measured with one
  forward pass on the "meta" device (shapes only: no memory, no time). Units without a spatial output (transformer
  blocks) are a stage each; a single layer after them (the final LayerNorm) joins the last one.
- The first stage is "stem": it also holds the parameters that no unit owns (ViT's class token and position
  embedding). The other layers of the classifier before the head (VGG, AlexNet, MobileNetV3, MaxViT, ConvNeXt)
  are a last stage, "pre-head".

So resnet18 has stem (conv1, bn1), stage1..stage4 (layer1..layer4); efficientnet_lite0 has stem (conv_stem, bn1,
blocks.0), stage1 (blocks.1), stage2 (blocks.2), stage3 (blocks.3-4), stage4 (blocks.5-6, conv_head, bn2); and
vit_b_16 has stem (conv_proj, class_token, encoder.pos_embedding) and stage1..stage12 (the encoder layers, the
last with encoder.ln).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from tl_studio.core import catalog, lite0, weights
from tl_studio.core.catalog import ModelInfo
from tl_studio.core.config import parse_freeze
from tl_studio.core.errors import UserError
from tl_studio.core.weights import CancelCallback, ProgressCallback

TRUNK_CONTAINERS = frozenset({"features", "layers", "trunk_output", "blocks", "encoder"})
AUX_HEADS = ("aux1", "aux2", "AuxLogits")  # GoogLeNet's and Inception v3's auxiliary classifiers
DEFAULT_TRACE_SIZE = 224


@dataclass(frozen=True, eq=False)
class Stage:
    """A run of backbone modules (from input to output) that is frozen or trained as one."""

    name: str  # "stem", "stage1", ..., "pre-head"
    modules: tuple[nn.Module, ...]
    module_names: tuple[str, ...]  # their paths in the model, e.g. ("layer1",)
    loose_parameters: tuple[nn.Parameter, ...] = ()  # parameters no module of the stage owns (ViT's class token)
    stride: int | None = None  # how much smaller than the input its output is; None for tokens and the pre-head

    def parameters(self) -> Iterator[nn.Parameter]:
        for module in self.modules:
            yield from module.parameters()
        yield from self.loose_parameters

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass(frozen=True)
class FreezeReport:
    depth: int  # how many of the first stages are frozen
    num_stages: int
    frozen_stages: tuple[str, ...]
    trainable_stages: tuple[str, ...]
    trainable_params: int  # the head included
    total_params: int


@dataclass(frozen=True)
class _StagePlan:
    """A stage by names, cached on the model; resolved to modules on each model_stages() call."""

    name: str
    module_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    stride: int | None


# --- building ---------------------------------------------------------------------------------------------------


def build_model(name: str, num_classes: int, weights: str | Path | None = "default", *,
                progress: ProgressCallback | None = None, cancel: CancelCallback | None = None) -> nn.Module:
    """The model ``name`` with a new ``num_classes`` head.

    ``weights``: "default" = the pretrained weights (bundled, from the hub cache, or downloaded with ``progress``
    and ``cancel``), "none" (or None) = random initialisation, or the path of a state dict of the full pretrained
    architecture (ImageNet head included), loaded with weights_only=True and strict=True.
    """
    info = catalog.get_model_info(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"A model needs at least one class, not {num_classes!r}.")
    model, weights_file = _build_imagenet(info, weights, progress, cancel)
    _replace_head(model, num_classes)
    model.tl_name = info.name
    model.tl_num_classes = num_classes
    model.tl_input_size = info.crop_size
    model.tl_weights = str(weights if weights is not None else "none")
    model.tl_weights_file = weights_file  # the file loaded (None: random weights), for backbone_facts.stamp
    model.tl_stage_plans = _stage_plans_for(info.name, model)  # now, while no other thread can be using it
    return model


def build_imagenet_model(info: ModelInfo, weights: str | Path | None = "default", *,
                         progress: ProgressCallback | None = None,
                         cancel: CancelCallback | None = None) -> nn.Module:
    """The architecture with its 1000-class ImageNet head and the chosen weights loaded strictly."""
    return _build_imagenet(info, weights, progress, cancel)[0]


def _build_imagenet(info: ModelInfo, weights: str | Path | None, progress: ProgressCallback | None,
                    cancel: CancelCallback | None) -> tuple[nn.Module, Path | None]:
    """build_imagenet_model's model, and the weights file it loaded (None for random weights)."""
    state_dict, path = _state_dict_for(info, weights, progress, cancel)
    source = path.name if path is not None else ""
    # Drawn at random even when the weights replace every value: the new head is drawn next, from the random
    # state these draws leave, so skipping them (_uninitialised) would give a seed another run.
    if info.bundled:
        model = lite0.create_architecture()
        if state_dict is not None:
            state_dict = lite0.to_timm_keys(state_dict, model)
    else:
        model = _torchvision_architecture(info, state_dict)
    if state_dict is not None:
        load_strict(model, state_dict, source, info.name)
    _drop_aux_heads(model)
    return model, path


def build_trained_model(name: str, num_classes: int, state_dict: dict[str, Tensor], source: str,
                        batchnorm_folded: bool = False) -> nn.Module:
    """``build_model(name, num_classes, "none")`` with a trained state dict (its head included) loaded strictly,
    without first drawing the random values it replaces. ``batchnorm_folded``: the state dict is of a copy
    whose BatchNorms were folded into its convolutions (a model file's, export.BATCHNORM_FOLDED); the model
    is laid out the same way first, and comes in eval mode."""
    model = _uninitialised(lambda: build_model(name, num_classes, "none"))
    if batchnorm_folded:
        from tl_studio.core.bn_folding import with_folded_layout

        with_folded_layout(model)
    load_strict(model, state_dict, source, name)
    return model


def _uninitialised(build) -> nn.Module:
    """``build()``'s model with uninitialised memory, for a state dict that overwrites every value, the head's
    included: drawing random weights only to replace them took seconds for larger models (convnext_base 1.1 s,
    swin_b 1.5 s here). A model that keeps a value no state dict holds (a non-persistent buffer) is built as
    usual."""
    model = _shapes_only(build)
    saved = model.state_dict().keys()
    if any(name not in saved for name, _ in model.named_buffers()):
        return build()
    return model.to_empty(device="cpu")


def build_shapes_only(name: str, num_classes: int) -> nn.Module:
    """``build_model(name, num_classes, "none")`` with its parameters and buffers on the meta device: their
    shapes without their memory or the time their random initialisation takes (seconds for the largest)."""
    return _shapes_only(lambda: build_model(name, num_classes, "none"))


def _shapes_only(build) -> nn.Module:
    with torch.device("meta"), _ArithmeticOnTheCpu():
        return build()


class _ArithmeticOnTheCpu(TorchFunctionMode):
    """Inside ``torch.device("meta")``: ``torch.arange`` and ``torch.tensor`` without a device make CPU tensors.
    Builders compute with them on plain numbers and read the result back (RegNet's layer widths:
    ``torch.arange(depth) * w_a + w_0 ... .tolist()``), which a meta tensor, having no data, cannot do;
    storage for parameters comes from the other factories (``empty``, ``zeros``, ``ones``...), still meta."""

    FACTORIES = (torch.arange, torch.tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "cpu"  # the enclosing torch.device("meta") leaves a given device as it is
        return func(*args, **kwargs)


def _state_dict_for(info: ModelInfo, choice: str | Path | None, progress: ProgressCallback | None,
                    cancel: CancelCallback | None) -> tuple[dict[str, Tensor] | None, Path | None]:
    if choice is None or choice == "none":
        return None, None
    if choice == "default":
        path = weights.ensure_weights(info, progress=progress, cancel=cancel)
    else:
        path = Path(choice).expanduser()
        if path.is_dir():
            raise UserError(f"{path} is a folder; --weights takes 'default', 'none' or a .pth file.")
        if not path.is_file():
            raise UserError(f"The weights file {path} does not exist (use 'default', 'none' or a file).")
    return weights.load_state_dict_file(path), path


def _torchvision_architecture(info: ModelInfo, state_dict: dict[str, Tensor] | None) -> nn.Module:
    import torchvision.models

    builder = torchvision.models.get_model_builder(info.name)
    return builder(weights=None, **_builder_kwargs(info, state_dict))


def _builder_kwargs(info: ModelInfo, state_dict: dict[str, Tensor] | None) -> dict:
    """What torchvision's builders set when they load pretrained weights, applied whatever the weights, so the
    model always has the shape and input size the catalog describes."""
    pretrained = state_dict is not None
    if info.family in ("googlenet", "inception"):
        # Published files include the auxiliary classifiers: build them to load strictly, then drop them.
        # transform_input (the input rescaling the ported weights expect) is kept even without weights, so a
        # model rebuilt with weights="none" to load a trained state dict computes exactly what was trained.
        has_aux = pretrained and any(key.split(".")[0] in AUX_HEADS for key in state_dict)
        return {"aux_logits": has_aux, "transform_input": True, "init_weights": not pretrained}
    if info.family == "vision_transformer":
        return {"image_size": info.min_size}
    if info.family == "maxvit":
        return {"input_size": (info.min_size, info.min_size)}
    return {}


def _drop_aux_heads(model: nn.Module) -> None:
    """As torchvision does after loading: training uses only the main classifier."""
    for name in AUX_HEADS:
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    if hasattr(model, "aux_logits"):
        model.aux_logits = False


def load_strict(model: nn.Module, state_dict: dict[str, Tensor], source: str, name: str) -> None:
    """load_state_dict(strict=True), with a UserError that says how the file does not fit."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [key for key in expected if key in state_dict and state_dict[key].shape != expected[key].shape]
    if missing or unexpected or reshaped:
        example = (missing + unexpected + reshaped)[0]
        raise UserError(
            f"{source} does not fit {name}: {len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(reshaped)} differently shaped tensors (e.g. '{example}'); it must be a state dict of the "
            f"full {name} architecture with its ImageNet head.")
    if getattr(state_dict, "_metadata", None) is None:
        # A plain dict (a .pt2 file's weights) carries no layout versions, which some modules need to
        # load (torchvision's MNASNet refuses to): the model's own apply, the layout the keys were just
        # checked against.
        state_dict = OrderedDict(state_dict)
        state_dict._metadata = expected._metadata
    model.load_state_dict(state_dict, strict=True)


# --- the head ---------------------------------------------------------------------------------------------------


def head_path(model: nn.Module) -> str:
    """The path of the final classifier layer: recorded at build time, else the last Linear/Conv2d registered."""
    recorded = getattr(model, "tl_head_path", None)
    if recorded:
        return recorded
    last = None
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = path
    if last is None:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to use as its head")
    return last


def head_of(model: nn.Module) -> nn.Module:
    """The final classifier layer (a Linear, or SqueezeNet's 1x1 Conv2d)."""
    return model.get_submodule(head_path(model))


def _replace_head(model: nn.Module, num_classes: int) -> None:
    path = head_path(model)
    old = model.get_submodule(path)
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding,
                        bias=old.bias is not None)
    model.set_submodule(path, new)
    model.tl_head_path = path
    if isinstance(getattr(model, "num_classes", None), int):  # timm and some torchvision models keep a copy
        model.num_classes = num_classes


def _split_path(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition(".")
    return parent, name


def _modules_after_head(model: nn.Module) -> list[nn.Module]:
    """Layers applied to the head's output inside its container (SqueezeNet: ReLU, global average pool)."""
    parent_path, name = _split_path(head_path(model))
    parent = model.get_submodule(parent_path) if parent_path else model
    if not parent_path or not isinstance(parent, nn.Sequential):
        return []
    names = [child for child, _ in parent.named_children()]
    return [parent.get_submodule(child) for child in names[names.index(name) + 1:]]


def forward_features(model: nn.Module, x: Tensor) -> Tensor:
    """What the head receives in ``model(x)`` (pre-logits), e.g. to cache the features of a frozen backbone."""
    captured: list[Tensor] = []
    handle = head_of(model).register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"the head of {getattr(model, 'tl_name', type(model).__name__)} was not called")
    return captured[-1]


def classify_features(model: nn.Module, features: Tensor) -> Tensor:
    """The logits ``model(x)`` returns, from ``forward_features(model, x)``: the head and whatever follows it."""
    output = head_of(model)(features)
    for module in _modules_after_head(model):
        output = module(output)
    return torch.flatten(output, 1)


# --- stages -------------------------------------------------------------------------------------------------------


def model_stages(model: nn.Module) -> list[Stage]:
    """The backbone stages from input to output, the head excluded. Every parameter outside the head belongs to
    exactly one stage."""
    plans = getattr(model, "tl_stage_plans", None)
    if plans is None:
        plans = model.tl_stage_plans = _plan_stages(model)
    return [Stage(plan.name, tuple(model.get_submodule(p) for p in plan.module_names), plan.module_names,
                  tuple(model.get_parameter(p) for p in plan.parameter_names), plan.stride) for plan in plans]


# The stages of each architecture built in this process, by model name: a name always builds the same modules
# (the head, replaced before planning, is not in a stage), and planning costs a shapes-only forward pass of
# 0.2-0.5 s that a process building the model again (the Model step's summary, a run, its export, Grad-CAM)
# then skips. Plans hold names only, never modules.
_stage_plans_by_name: dict[str, tuple[_StagePlan, ...]] = {}


def _stage_plans_for(name: str, model: nn.Module) -> tuple[_StagePlan, ...]:
    plans = _stage_plans_by_name.get(name)
    if plans is None:
        plans = _stage_plans_by_name[name] = _plan_stages(model)
    return plans


def _plan_stages(model: nn.Module) -> tuple[_StagePlan, ...]:
    head = head_path(model)
    container, _ = _split_path(head)
    pre_head = _pre_head_units(model, head)
    units = _trunk_units(model, "", skip=container or head)
    levels = _resolution_levels(model, units, getattr(model, "tl_input_size", DEFAULT_TRACE_SIZE))
    groups = _group_units(model, units, levels)
    loose = _loose_parameter_names(model, units + pre_head + [head])
    plans = []
    for index, (paths, level) in enumerate(groups or [([], None)]):
        name = "stem" if index == 0 else f"stage{index}"
        plans.append(_StagePlan(name, tuple(paths), tuple(loose) if index == 0 else (),
                                None if level is None else 2 ** level))
    if pre_head:
        plans.append(_StagePlan("pre-head", tuple(pre_head), (), None))
    return tuple(plan for plan in plans if plan.module_names or plan.parameter_names)


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in itertools.chain(module.parameters(), module.buffers()))


def _trunk_units(module: nn.Module, prefix: str, skip: str) -> list[str]:
    """Children with parameters, in order, opening the known trunk containers into their children."""
    units = []
    for name, child in module.named_children():
        path = prefix + name
        if path == skip:
            continue
        if name in TRUNK_CONTAINERS:
            units += _trunk_units(child, path + ".", skip)
        elif _has_state(child):
            units.append(path)
    return units


def _pre_head_units(model: nn.Module, head: str) -> list[str]:
    """The classifier's layers with parameters before the head (VGG's FC layers, ConvNeXt's LayerNorm...)."""
    parent_path, head_name = _split_path(head)
    if not parent_path:
        return []
    units = []
    for name, child in model.get_submodule(parent_path).named_children():
        if name == head_name:
            break
        if _has_state(child):
            units.append(f"{parent_path}.{name}")
    return units


def _loose_parameter_names(model: nn.Module, owned: list[str]) -> list[str]:
    prefixes = tuple(path + "." for path in owned)
    return [name for name, _ in model.named_parameters() if not name.startswith(prefixes)]


def _resolution_levels(model: nn.Module, units: list[str], size: int) -> dict[str, int | None]:
    """log2(input side / output side) of each unit, from a shapes-only forward pass on the meta device."""
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(path: str):
        def hook(_module, _args, output):
            if isinstance(output, Tensor):
                shapes.setdefault(path, tuple(output.shape))
        return hook

    handles = [model.get_submodule(path).register_forward_hook(recorder(path)) for path in units]
    try:
        _meta_forward(model, size)
    except Exception:  # an architecture the meta device cannot run: each unit becomes its own stage
        return {}
    finally:
        for handle in handles:
            handle.remove()
    return {path: _level(shape, size) for path, shape in shapes.items()}


def _meta_forward(model: nn.Module, size: int) -> None:
    tensors = {name: torch.empty_like(tensor, device="meta")
               for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())}
    modes = {module: module.training for module in model.modules()}
    model.eval()  # no dropout, no running-statistics update, whatever the caller's mode
    try:
        with torch.no_grad():
            torch.func.functional_call(model, tensors, (torch.empty(1, 3, size, size, device="meta"),))
    finally:
        for module, training in modes.items():
            module.training = training


def _level(shape: tuple[int, ...], size: int) -> int | None:
    if len(shape) != 4:
        return None
    if shape[2] == shape[3]:  # N, C, H, W
        side = shape[3]
    elif shape[1] == shape[2]:  # N, H, W, C (Swin)
        side = shape[2]
    else:
        return None
    return round(math.log2(size / side)) if side > 0 else None


def _group_units(model: nn.Module, units: list[str], levels: dict[str, int | None]
                 ) -> list[tuple[list[str], int | None]]:
    groups: list[tuple[list[str], int | None]] = []
    for path in units:
        level = levels.get(path)
        if groups and _joins_previous(model, path, level, groups[-1][1]):
            groups[-1][0].append(path)
        else:
            groups.append(([path], level))
    return groups


def _joins_previous(model: nn.Module, path: str, level: int | None, previous_level: int | None) -> bool:
    if level is not None:
        return previous_level is not None and level <= previous_level
    # A single layer without spatial output (a transformer's final norm) belongs with the block before it.
    return not any(True for _ in model.get_submodule(path).children())


# --- freezing -------------------------------------------------------------------------------------------------------


def freeze(model: nn.Module, depth: int | str) -> FreezeReport:
    """Freeze the first ``depth`` stages ("all" = every stage: only the head trains; "none" or 0 = nothing).

    Everything else, the head included, is made trainable, so calling freeze again changes the depth.
    Call set_train_mode() before training so the frozen stages' BatchNorm statistics stay as they are.
    """
    stages = model_stages(model)
    parsed = parse_freeze(depth, len(stages))
    count = len(stages) if parsed == "all" else parsed
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    for stage in stages[:count]:
        for parameter in stage.parameters():
            parameter.requires_grad_(False)
    trainable, total = param_counts(model)
    return FreezeReport(count, len(stages), tuple(s.name for s in stages[:count]),
                        tuple(s.name for s in stages[count:]), trainable, total)


def set_train_mode(model: nn.Module, freeze_all_norms: bool = False) -> None:
    """model.train(), except the normalisation layers with running statistics inside frozen stages, which stay
    in eval mode so those statistics keep the values the frozen weights were trained with. With
    ``freeze_all_norms`` every such layer stays in eval mode (its affine weights still train)."""
    model.train()
    stages = model_stages(model)
    for stage in stages if freeze_all_norms else stages[:frozen_depth(model)]:
        for module in stage.modules:
            for layer in module.modules():
                if _has_running_stats(layer):
                    layer.eval()


def frozen_depth(model: nn.Module) -> int:
    """The leading stages ``freeze`` froze: read from the parameters themselves (nothing kept on the
    model that could disagree with them)."""
    depth = 0
    for stage in model_stages(model):
        if any(p.requires_grad for p in stage.parameters()):
            break
        depth += 1
    return depth


def _has_running_stats(layer: nn.Module) -> bool:
    return bool(getattr(layer, "track_running_stats", False)) and getattr(layer, "running_mean", None) is not None


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


# --- a model's stages at a glance (for choosing a freeze depth) ---------------------------------------------------


@dataclass(frozen=True)
class StageSummary:
    """Stage names and parameter counts, enough to say what each freeze depth trains without the model."""

    names: tuple[str, ...]
    params: tuple[int, ...]
    head_params: int
    total_params: int

    def trainable(self, depth: int | str) -> int:
        """Parameters that train at this freeze depth: the head plus every stage after the frozen ones."""
        count = len(self.names) if depth == "all" else int(depth)
        return self.head_params + sum(self.params[count:]) + self._unassigned()

    def _unassigned(self) -> int:
        return self.total_params - self.head_params - sum(self.params)


def summarize_stages(name: str, num_classes: int) -> StageSummary:
    """Builds the architecture on the meta device (shapes only: instant even for the largest models, no
    memory, no download) and reports its stages."""
    model = build_shapes_only(name, num_classes)
    stages = model_stages(model)
    head = sum(p.numel() for p in head_of(model).parameters())
    total = sum(p.numel() for p in model.parameters())
    return StageSummary(tuple(s.name for s in stages), tuple(s.num_params for s in stages), head, total)
