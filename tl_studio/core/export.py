"""The trained model file: ``model.pt2`` (torch.export), ONNX and TorchScript, with one contract.

Each file takes float RGB in [0, 1], N x 3 x H x W of any H and W, and returns N x C class
probabilities; resizing, cropping and normalisation happen inside (the same ``Preprocess`` the app
uses). Class names, the model name, the preprocessing and the training config travel in the file.

Every export is checked before it is reported as written: the file is loaded back the way a user
would load it, run on sample images, and compared with the PyTorch model (top-1 identical on every
image, probabilities within 1e-3). A failed check is an error, and the file is not left behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from tl_studio import __version__
from tl_studio.core import program_cache
from tl_studio.core.errors import UserError
from tl_studio.core.export_formats import EXPORT_FORMATS, get_format
from tl_studio.core.fileio import atomic_path
from tl_studio.core.model_file import METADATA_KEY, check_model_file, load_model_file, torchscript_is_deliberate
from tl_studio.core.model_metadata import BATCHNORM_FOLDED
from tl_studio.core.preprocess import Preprocess, PreprocessSpec

FORMATS = {name: fmt.suffix for name, fmt in EXPORT_FORMATS.items()}  # name -> suffix
MAX_PROBABILITY_DIFFERENCE = 1e-3


class ExportCheckError(UserError):
    """The exported file does not answer like the PyTorch model."""


class ExportedClassifier(nn.Module):
    """Preprocessing + network + calibrated softmax: the whole contract in one module. ``temperature``
    is the one scalar of temperature scaling (core/calibration.py); 1.0 leaves the softmax as trained."""

    def __init__(self, network: nn.Module, spec: PreprocessSpec, temperature: float = 1.0):
        super().__init__()
        self.preprocess = Preprocess(spec)
        self.network = network
        self.register_buffer("temperature", torch.tensor(float(temperature)), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.preprocess(images)).float() / self.temperature, dim=1)


def temperature_of(metadata: dict) -> float:
    """The calibration temperature a model file's metadata records (1.0 for files without one)."""
    return float((metadata.get("calibration") or {}).get("temperature", 1.0))


@dataclass(frozen=True)
class AgreementCheck:
    images: int
    top1_identical: bool
    max_probability_difference: float

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.top1_identical and self.max_probability_difference <= MAX_PROBABILITY_DIFFERENCE

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        same = "identical" if self.top1_identical else "different"
        return (f"Export check {verdict}: on {self.images} images top-1 is {same}, "
                f"max probability difference {self.max_probability_difference:.2e} (limit {MAX_PROBABILITY_DIFFERENCE:g}).")


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    check: AgreementCheck
    seconds: float


def metadata_for_run(config, classes: Sequence[str], spec: PreprocessSpec, best_epoch: int | None,
                     val_acc: float | None) -> dict:
    return {
        "format_version": 1, "tl_studio_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "classes": list(classes), "model": config.model, "preprocessing": spec.to_dict(),
        "input": "float32 RGB in [0, 1], N x 3 x H x W, any H and W",
        "output": "N x C class probabilities, in the order of 'classes'",
        "best_epoch": best_epoch, "val_acc": val_acc, "training_config": config.to_dict(),
    }


def export_model(network: nn.Module, spec: PreprocessSpec, metadata: dict, path: Path, fmt: str,
                 check_images: Sequence[torch.Tensor], keep_existing: bool = False) -> ExportReport:
    """Writes ``path`` atomically in ``fmt`` and checks it against the PyTorch model. The file is read
    back through the checked loader (model_file.py), so every file TL Studio writes passes the check that
    files from elsewhere must pass. ``keep_existing``: a file another export wrote at ``path`` meanwhile
    is not replaced (FileExistsError)."""
    export_format = get_format(fmt)
    started = time.perf_counter()
    trained = ExportedClassifier(network.cpu().float().eval(), spec, temperature_of(metadata)).eval()
    images = list(check_images) or _synthetic_images()
    model, metadata = _with_batchnorm_folded(trained, spec, metadata, images)
    path = Path(path)
    with atomic_path(path, keep_existing=keep_existing) as tmp:
        entry = program_cache.entry_for(model) if fmt == "pt2" else None
        # the file is checked against the model as it trained, so the folding is checked with it
        check = _from_stored_program(entry, model, metadata, tmp, images, trained)
        if check is None:
            export_format.write(model, metadata, tmp)
            check = _checked(trained, tmp, fmt, images)
            if check.passed:
                program_cache.remember(entry, tmp)
        if not check.passed:
            raise ExportCheckError(check.describe() + " The file was not written; please report this model.")
    return ExportReport(path, fmt, check, time.perf_counter() - started)


def _with_batchnorm_folded(model: ExportedClassifier, spec: PreprocessSpec, metadata: dict,
                           images: Sequence[torch.Tensor]) -> tuple[ExportedClassifier, dict]:
    """``model`` with its network's BatchNorms folded into the convolutions before them (bn_folding.py,
    checked on the first two ``images`` as the network sees them), and ``metadata`` saying so
    (BATCHNORM_FOLDED, which Grad-CAM reads to rebuild the network from the file's weights); both as
    they are when nothing folds. In eval mode a BatchNorm is a fixed scale and shift, so the file
    answers the same (to float rounding) with half the graph: efficientnet_lite0's has 228 nodes instead
    of 473, and tracing, saving, reading back and every later load of it take less time (its whole
    export 3.2 -> 2.1 s on the 2-core CPU), as does every pass of it on the CPU."""
    from tl_studio.core.bn_folding import folded_for_inference

    with torch.no_grad():
        probe = torch.cat([model.preprocess(image) for image in images[:2]])
    network = folded_for_inference(model.network, probe, lambda module, inputs: module(inputs))
    if network is model.network:
        return model, metadata
    folded = ExportedClassifier(network, spec, temperature_of(metadata)).eval()
    return folded, {**metadata, BATCHNORM_FOLDED: True}


def _checked(model: nn.Module, written: Path, fmt: str, images: Sequence[torch.Tensor]) -> AgreementCheck:
    check_model_file(written, fmt)
    return check_agreement(model, load_model_file(written, fmt, trust_torchscript=True).predict, images)


def _from_stored_program(entry: Path | None, model: nn.Module, metadata: dict, tmp: Path,
                         images, reference: nn.Module) -> AgreementCheck | None:
    """Writes ``tmp`` from the program an earlier export of the same structure kept at ``entry``
    (program_cache.py; None: not a .pt2 export, or the store is off), with this model's weights, and
    checks it against ``reference``; None when there is none or it failed the check (then it is
    forgotten and the model is traced afresh)."""
    if not program_cache.write_with_weights(entry, model, metadata_files(metadata), tmp):
        return None
    check = _checked(reference, tmp, "pt2", images)
    if check.passed:
        return check
    program_cache.forget(entry)
    return None


def _synthetic_images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, h, w, generator=generator) for h, w in ((224, 224), (300, 400), (517, 333))]


@torch.no_grad()
def check_agreement(reference: nn.Module, candidate: Callable, images: Sequence[torch.Tensor]) -> AgreementCheck:
    """Each image separately (its own size), as a user would feed the file."""
    same, worst = True, 0.0
    for image in images:
        expected = reference(image)
        got = torch.as_tensor(candidate(image)).float()
        same &= bool(torch.equal(expected.argmax(1), got.argmax(1)))
        worst = max(worst, float((expected - got).abs().max()))
    return AgreementCheck(len(images), same, worst)


# ---- writers ---------------------------------------------------------------------------------------
def _example_input() -> torch.Tensor:
    # Distinct, unremarkable sizes so that nothing gets specialised during tracing.
    return torch.rand(2, 3, 301, 257)


def _export_program(model: nn.Module):
    batch = torch.export.Dim("batch", min=1, max=4096)
    height = torch.export.Dim("height", min=1, max=16384)
    width = torch.export.Dim("width", min=1, max=16384)
    with torch.no_grad():
        return torch.export.export(model, (_example_input(),),
                                   dynamic_shapes={"images": {0: batch, 2: height, 3: width}})


def write_pt2(model: nn.Module, metadata: dict, path: Path) -> None:
    save_program(_export_program(model), metadata, path)


def stored_example_input() -> torch.Tensor:
    """The example input a .pt2 file carries. torch.export keeps the input it traced with in the file
    (2 x 3 x 301 x 257 random floats: 1.9 MB, 11 % of an EfficientNet-Lite0 file); nothing of TL Studio
    reads it, and tools that compile the file (AOTInductor) need an input of the right form, not that
    one: one small image serves them, since the file resizes any image itself."""
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def metadata_files(metadata: dict) -> dict[str, str]:
    """The extra file a .pt2 or TorchScript file carries TL Studio's metadata in (model_file.py reads it),
    however the file is written: traced, copied from a stored program, or scripted."""
    return {METADATA_KEY: json.dumps(metadata)}


def save_program(program, metadata: dict, path: Path) -> None:
    program.example_inputs = ((stored_example_input(),), {})
    # Given an open file, torch names the archive's root folder "archive"; given a path, it takes the
    # file's name, here a temporary one (fileio.atomic_path), and two exports of one model would differ.
    with open(path, "wb") as file:
        torch.export.save(program, file, extra_files=metadata_files(metadata))


def write_onnx(model: nn.Module, metadata: dict, path: Path) -> None:
    from tl_studio.core.interrupts import ctrl_c_deferred

    with ctrl_c_deferred():  # onnx's extension crashes when a Ctrl-C interrupts its initialisation
        import onnx

    program = torch.onnx.export(_export_program(model), (_example_input(),), dynamo=True,
                                input_names=["images"], output_names=["probabilities"], verbose=False)
    program.save(str(path))
    proto = onnx.load(str(path))
    for key, value in ((METADATA_KEY, json.dumps(metadata)), ("classes", json.dumps(metadata["classes"]))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def write_torchscript(model: ExportedClassifier, metadata: dict, path: Path) -> None:
    # The preprocessing is scripted (its shape arithmetic must stay dynamic); the network sees a fixed
    # size after it, so tracing the network is exact and works for every architecture.
    crop = model.preprocess.crop_size
    with torch.no_grad(), torchscript_is_deliberate():
        network = torch.jit.trace(model.network, torch.rand(2, 3, crop, crop))
        scripted = torch.jit.script(_TorchScriptClassifier(torch.jit.script(model.preprocess), network,
                                                           float(model.temperature)))
        torch.jit.save(scripted, str(path), _extra_files=metadata_files(metadata))


class _TorchScriptClassifier(nn.Module):
    def __init__(self, preprocess, network, temperature: float):
        super().__init__()
        self.preprocess = preprocess
        self.network = network
        self.temperature = temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.preprocess(images)).float() / self.temperature, dim=1)
