"""The export formats, in one table used by core, the CLI and the GUI: name, suffix, the label and
file-dialog filter the GUI shows, the snippet that runs the file without TL Studio, and its writer.

A new format is one entry here and one writer function. No torch import (the CLI builds its parser from
this table at start-up); the writer is named as ``module:function`` and imported when it is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

# The photo as TL Studio reads it (core/images.py): a JPEG much larger than the model's resize size decodes
# directly at 1/2, 1/4 or 1/8 of its size (Pillow's draft; several times faster on phone photos), and the
# camera's EXIF orientation is applied. Without them a 12 MP photo's confidence moved by up to 3 points.
_READ_PHOTO = '''photo = Image.open("photo.jpg")
photo.draft(None, (info["preprocessing"]["resize_size"],) * 2)  # a large JPEG decodes at 1/2-1/8 size
'''
_PHOTO = "ImageOps.exif_transpose(photo).convert(\"RGB\")"

# The answer, with the model file's unknown rule (core/unknown.py): calibrated probabilities whose maximum is
# below tl_studio.json's "unknown" threshold mean "none of my classes"; the closest class is still shown.
_ANSWER = '''best, confidence = int(probabilities.argmax()), float(probabilities.max())
if confidence < threshold:
    print(f"unknown (closest: {{classes[best]}} {{confidence:.1%}})")
else:
    print(f"{{classes[best]}} {{confidence:.1%}}")  # as the app and `tl-studio predict` show it
'''
_TORCH_SNIPPET_TAIL = '''info = json.loads(extra["tl_studio.json"])
classes = info["classes"]
threshold = (info.get("unknown") or {{}}).get("threshold", 0.0)  # below it the model is not sure: "unknown"

''' + _READ_PHOTO + f"image = pil_to_tensor({_PHOTO}).float().div(255).unsqueeze(0)\n" + '''with torch.no_grad():
    probabilities = model(image)[0]  # any image size: resizing and normalisation are inside
''' + _ANSWER
_TORCH_SNIPPET_HEAD = '''import json, torch
from PIL import Image, ImageOps
from torchvision.transforms.functional import pil_to_tensor

extra = {{"tl_studio.json": ""}}
'''


@dataclass(frozen=True)
class ExportFormat:
    name: str  # as on the command line: --format NAME
    suffix: str  # of the file written
    label: str  # the GUI's radio button
    dialog_filter: str  # the GUI's file dialogs
    snippet: str  # Python that runs the file; {path} is filled in
    writer: str  # "module:function", called as function(model, metadata, path)
    also_opens: tuple[str, ...] = ()  # other suffixes this format is read from

    def write(self, model, metadata: dict, path: Path) -> None:
        module, function = self.writer.split(":")
        getattr(importlib.import_module(module), function)(model, metadata, path)

    def snippet_for(self, path: Path) -> str:
        return self.snippet.format(path=Path(path).as_posix())

    def default_file(self, folder: Path) -> Path:
        return Path(folder) / f"model{self.suffix}"

    def opens(self, path: Path) -> bool:
        """Whether a file of this name is read as this format (its own suffix or one it also opens)."""
        suffix = Path(path).suffix.lower()
        return suffix == self.suffix or suffix in self.also_opens


EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("pt2", ".pt2", "PyTorch program (model.pt2) — recommended", "PyTorch program (*.pt2)",
                 _TORCH_SNIPPET_HEAD + 'model = torch.export.load("{path}", extra_files=extra).module()\n'
                 + _TORCH_SNIPPET_TAIL, "tl_studio.core.export:write_pt2"),
    ExportFormat("onnx", ".onnx", "ONNX (for ONNX Runtime, TensorRT, OpenVINO…)", "ONNX model (*.onnx)",
                 '''import json, numpy as np, onnxruntime
from PIL import Image, ImageOps

session = onnxruntime.InferenceSession("{path}")
info = json.loads(session.get_modelmeta().custom_metadata_map["tl_studio.json"])
classes = info["classes"]
threshold = (info.get("unknown") or {{}}).get("threshold", 0.0)  # below it the model is not sure: "unknown"

''' + _READ_PHOTO + f"image = np.asarray({_PHOTO}, dtype=np.float32) / 255\n" + '''probabilities = session.run(None, {{"images": image.transpose(2, 0, 1)[None]}})[0][0]
''' + _ANSWER, "tl_studio.core.export:write_onnx"),
    ExportFormat("torchscript", ".ts", "TorchScript (older PyTorch runtimes)", "TorchScript (*.ts *.pt *.pth *.jit)",
                 _TORCH_SNIPPET_HEAD + '# TorchScript runs code when loaded: load only files you trust\n'
                 'model = torch.jit.load("{path}", _extra_files=extra)\n' + _TORCH_SNIPPET_TAIL,
                 "tl_studio.core.export:write_torchscript", also_opens=(".pt", ".pth", ".jit")),
)}
FORMAT_NAMES = tuple(EXPORT_FORMATS)


def format_for_suffix(path: Path) -> str:
    for fmt in EXPORT_FORMATS.values():
        if fmt.opens(path):
            return fmt.name
    known = ", ".join(suffix for f in EXPORT_FORMATS.values() for suffix in (f.suffix, *f.also_opens))
    from tl_studio.core.errors import UserError

    raise UserError(f"{Path(path).name} is not a model file TL Studio knows ({known}).")


def check_suffix_fits(path: Path, fmt: ExportFormat) -> None:
    """A model file is opened by its suffix (format_for_suffix: the checked loader, the Predict and
    Evaluate steps; other tools too), so a file written in one format under another's suffix could not
    be opened: a .pt2 program named model.onnx was written, and then failed as an ONNX file."""
    if fmt.opens(path):
        return
    from tl_studio.core.errors import UserError

    raise UserError(f"{Path(path).name} does not end in {fmt.suffix}, and a model file is opened by its suffix; "
                    f"name it {Path(path).stem}{fmt.suffix}, or choose the format its suffix names.")


def check_output_file(path: Path, fmt: ExportFormat) -> None:
    """Before an export's work: a folder, a suffix of another format, or a place that cannot be written
    gets its sentence, in that order (checking the place makes its missing folders, so a file refused
    for its suffix must be refused first: it would leave them behind)."""
    from tl_studio.core.fileio import check_writable_file

    if not Path(path).expanduser().is_dir():  # a folder: check_writable_file's "is a folder"
        check_suffix_fits(path, fmt)
    check_writable_file(path)


def open_dialog_filter() -> str:
    """Every model file TL Studio opens, then one filter per format."""
    patterns = " ".join(f"*{s}" for f in EXPORT_FORMATS.values() for s in (f.suffix, *f.also_opens))
    return ";;".join([f"Model files ({patterns})", *(f.dialog_filter for f in EXPORT_FORMATS.values())])


def get_format(name: str) -> ExportFormat:
    if name not in EXPORT_FORMATS:
        from tl_studio.core.errors import UserError

        raise UserError(f"Unknown export format {name!r}; choose {', '.join(FORMAT_NAMES)}.")
    return EXPORT_FORMATS[name]
