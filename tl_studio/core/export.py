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
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from tl_studio import __version__
from tl_studio.core.errors import UserError
from tl_studio.core.fileio import atomic_path
from tl_studio.core.preprocess import Preprocess, PreprocessSpec

FORMATS = {"pt2": ".pt2", "onnx": ".onnx", "torchscript": ".ts"}
METADATA_KEY = "tl_studio.json"
MAX_PROBABILITY_DIFFERENCE = 1e-3


class ExportCheckError(UserError):
    """The exported file does not answer like the PyTorch model."""


class ExportedClassifier(nn.Module):
    """Preprocessing + network + softmax: the whole contract in one module."""

    def __init__(self, network: nn.Module, spec: PreprocessSpec):
        super().__init__()
        self.preprocess = Preprocess(spec)
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.preprocess(images)).float(), dim=1)


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
                 check_images: Sequence[torch.Tensor]) -> ExportReport:
    """Writes ``path`` atomically in ``fmt`` and checks it against the PyTorch model."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown export format {fmt!r}; choose pt2, onnx or torchscript.")
    started = time.perf_counter()
    model = ExportedClassifier(network.cpu().float().eval(), spec).eval()
    images = list(check_images) or _synthetic_images()
    path = Path(path)
    with atomic_path(path) as tmp:
        _WRITERS[fmt](model, metadata, tmp)
        check = check_agreement(model, load_model_file(tmp, fmt).predict, images)
        if not check.passed:
            raise ExportCheckError(check.describe() + " The file was not written; please report this model.")
    return ExportReport(path, fmt, check, time.perf_counter() - started)


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


def _write_pt2(model: nn.Module, metadata: dict, path: Path) -> None:
    torch.export.save(_export_program(model), str(path), extra_files={METADATA_KEY: json.dumps(metadata)})


def _write_onnx(model: nn.Module, metadata: dict, path: Path) -> None:
    import onnx

    program = torch.onnx.export(_export_program(model), (_example_input(),), dynamo=True,
                                input_names=["images"], output_names=["probabilities"], verbose=False)
    program.save(str(path))
    proto = onnx.load(str(path))
    for key, value in ((METADATA_KEY, json.dumps(metadata)), ("classes", json.dumps(metadata["classes"]))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _write_torchscript(model: ExportedClassifier, metadata: dict, path: Path) -> None:
    # The preprocessing is scripted (its shape arithmetic must stay dynamic); the network sees a fixed
    # size after it, so tracing the network is exact and works for every architecture.
    crop = model.preprocess.crop_size
    with torch.no_grad(), _torchscript_is_deliberate():
        network = torch.jit.trace(model.network, torch.rand(2, 3, crop, crop))
        scripted = torch.jit.script(_TorchScriptClassifier(torch.jit.script(model.preprocess), network))
        torch.jit.save(scripted, str(path), _extra_files={METADATA_KEY: json.dumps(metadata)})


@contextmanager
def _torchscript_is_deliberate():
    """TorchScript is deprecated in favour of torch.export; the TorchScript export exists for older
    runtimes on purpose, so its deprecation warnings are not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchScript.*")
        yield


class _TorchScriptClassifier(nn.Module):
    def __init__(self, preprocess, network):
        super().__init__()
        self.preprocess = preprocess
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.preprocess(images)).float(), dim=1)


_WRITERS = {"pt2": _write_pt2, "onnx": _write_onnx, "torchscript": _write_torchscript}


# ---- loading ---------------------------------------------------------------------------------------
@dataclass
class ModelFile:
    path: Path
    format: str
    metadata: dict
    predict: Callable[[torch.Tensor], torch.Tensor]  # N x 3 x H x W in [0, 1] -> N x C probabilities

    @property
    def classes(self) -> list[str]:
        return list(self.metadata.get("classes", []))


def format_of(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    for fmt, ext in FORMATS.items():
        if suffix == ext:
            return fmt
    if suffix in (".pt", ".pth", ".jit"):
        return "torchscript"
    raise UserError(f"{Path(path).name} is not a model file TL Studio knows (.pt2, .onnx or .ts).")


def load_model_file(path: Path, fmt: str | None = None) -> ModelFile:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No model file at {path}; train a model first or pick an existing file.")
    fmt = fmt or format_of(path)
    try:
        return _LOADERS[fmt](path)
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"{path.name} could not be loaded as a {fmt} model ({type(error).__name__}); "
                        f"is it a TL Studio export?") from None


def _load_pt2(path: Path) -> ModelFile:
    extra = {METADATA_KEY: ""}
    module = torch.export.load(str(path), extra_files=extra).module()
    return ModelFile(path, "pt2", json.loads(extra[METADATA_KEY] or "{}"), _no_grad(module))


def _load_torchscript(path: Path) -> ModelFile:
    extra = {METADATA_KEY: ""}
    with _torchscript_is_deliberate():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return ModelFile(path, "torchscript", json.loads(extra[METADATA_KEY] or "{}"), _no_grad(module))


def _load_onnx(path: Path) -> ModelFile:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    input_name = session.get_inputs()[0].name

    def predict(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: images.numpy()})[0])

    return ModelFile(path, "onnx", json.loads(meta.get(METADATA_KEY, "{}")), predict)


def _no_grad(module) -> Callable:
    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(images)
    return predict


_LOADERS = {"pt2": _load_pt2, "onnx": _load_onnx, "torchscript": _load_torchscript}
