"""The one checked loader: every model file the app opens (File > Open Model File, the Predict and
Evaluate steps, Grad-CAM, ``tl-studio predict`` and ``evaluate``) comes through ``load_model_file``.

A model file is data, never code. What each format can do when it is loaded, and what we do about it:

- ``.pt2`` (torch.export): a zip of JSON and tensors, but ``torch.export.load`` unpickles some parts with
  ``weights_only=False`` (and falls back to it after any error), ``sympy.sympify``s the shape expressions
  (an ``eval``), ``exec``s the input guards when ``.module()`` is called, writes the graph's node names
  into generated Python source, calls whatever ``torch.*`` attribute a node names, and loads compiled
  AOTInductor libraries. So before anything in it is unpickled or run, ``check_pt2`` reads the archive
  with ``zipfile`` and ``json`` only and refuses it unless: every member is one that ``torch.export.save``
  writes for a plain program (no compiled code, no pickled custom objects), there once (torch's own zip
  reader may pick another of two copies than ``zipfile``) and stored uncompressed; every pickle in it
  imports only a short allow-list of tensor-rebuilding globals; every node target is an ATen operator or
  a plain arithmetic function; every node name is an identifier and every parameter, buffer and module
  name identifiers and indices joined by dots (torch writes them into generated code); every shape
  expression and guard is made of an allow-list of names, numbers and operators. The load itself then runs with
  ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` set, so no ``torch.load`` inside it can fall back to
  ``weights_only=False``; and the legacy-format fallback of ``torch.export.load`` cannot be reached
  because the check requires the current layout (one root folder, ``archive_format`` = ``pt2``).
- TorchScript (``.ts``, ``.pt``, ``.pth``, ``.jit``) carries its own code, which runs when it is loaded
  (a ``__setstate__`` can write files). There is no safe mode: it is loaded only when the caller says
  the user trusts the file (``--trust`` in the CLI, a confirmation dialog in the GUI). Its pickles are
  still scanned, as a second line.
- ONNX is protobuf read by onnxruntime, which runs no Python: it loads as it is.

The pickles are scanned with picklescan (https://github.com/mmaitre314/picklescan): small, pure Python,
no dependencies, the scanner the Hugging Face Hub runs on uploaded files, and its ``ScanResult`` lists
every global a pickle imports (through GLOBAL, INST and STACK_GLOBAL, memo included), so our own short
allow-list can be applied instead of its deny-list. fickling was the other candidate: it decompiles
pickles into an AST, which is more than we need and its API has moved between releases; modelscan is a
CLI framework with many dependencies and a deny-list. On top of picklescan, every opcode is listed with
``pickletools`` so that an unparseable pickle or an extension-registry opcode (EXT1/2/4, which reaches a
global without naming it) is refused too.
"""

from __future__ import annotations

import io
import json
import keyword
import os
import pickletools
import re
import threading
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from tl_studio.core.errors import UserError
from tl_studio.core.model_metadata import answers_one_per_class, check_metadata
from tl_studio.core.run_folder import BEST_CHECKPOINT, MODEL_FILE as RUN_MODEL_FILE, export_command

METADATA_KEY = "tl_studio.json"
TORCHSCRIPT_SUFFIXES = (".ts", ".pt", ".pth", ".jit")

# What a pickle inside a model file may import: rebuilding tensors and their storages, nothing else.
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
ALLOWED_GLOBALS = frozenset({
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
    *(("torch", f"{kind}Storage") for kind in _STORAGES),
})
# TorchScript's own pickles also rebuild lists, and name the classes its code defines (``__torch__.*``).
_TORCHSCRIPT_GLOBALS = frozenset({("torch.jit._pickle", f"build_{kind}list")
                                  for kind in ("int", "double", "bool", "tensor")})

# The members torch.export.save writes for a plain exported program (below the archive's root folder).
_PT2_LAYOUT = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                         r"|models/\w+\.json|data/weights/\w+(\.json)?|data/constants/\w+(\.json)?"
                         r"|data/sample_inputs/\w+\.pt|extra/[\w.\-]+)")
_TENSOR_CONSTANT_PREFIX = "tensor_"
# Node targets: ATen operators and plain arithmetic; never an arbitrary ``torch.*`` attribute, and none of
# the ``operator`` functions that reach attributes or call things (attrgetter, methodcaller, call...).
_ARITHMETIC = ("add|sub|mul|truediv|floordiv|mod|pow|neg|pos|abs|eq|ne|lt|le|gt|ge|and_|or_|xor|not_|invert"
               "|lshift|rshift|matmul|truth|getitem")
_TARGET = re.compile(rf"torch\.ops\.aten\.\w+\.\w+|_operator\.({_ARITHMETIC})|math\.(ceil|floor|trunc|sqrt)"
                     rf"|torch\.sym_(min|max|not|int|float|ite|sqrt|sum)")
_FORBIDDEN_ATEN = re.compile(r"torch\.ops\.aten\.\w*(file|save|load)\w*\.")  # from_file can create files
# Shape expressions (sympy) and input guards (Python) are evaluated: only these names may appear.
_EXPRESSION_NAMES = frozenset({
    "Add", "Mul", "Pow", "Symbol", "Integer", "Rational", "Float", "Min", "Max", "Abs", "Mod", "Eq", "Ne",
    "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "oo", "zoo", "nan", "true", "false", "True", "False",
    "positive", "negative", "integer", "nonnegative", "real", "finite", "zero", "nonzero", "even", "odd",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat",
    "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "OpaqueUnaryFn_sqrt",
    "IsNonOverlappingAndDenseIndicator", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or",
    "and", "or", "not", "L", "size", "torch", "sym_min", "sym_max", "sym_not", "sym_int", "sym_float",
    "sym_ite", "math", "isnan", "inf", "floor", "ceil", "trunc",
    # pure builtins torch's Python printer writes for Max, Min, Abs and RoundToInt: torch 2.13 (the CPU
    # build the app bundle carries) puts them in input guards, e.g. a centre crop's "max(2, (7*min(H, W)) // 8)"
    "max", "min", "abs", "round",
})
_EXPRESSION_TOKEN = re.compile(r"\s+|[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*|'[A-Za-z_]\w*'|\d+(\.\d+)?(e[+-]?\d+)?"
                               r"|\*\*|//|==|!=|<=|>=|[()\[\],=+\-*/%<>.]")
_NAME_KEYS = ("name", "as_name")
# Names torch turns into attribute paths on the loaded module: set with setattr, and written into its
# generated Python as self.a.b, or getattr(self.a, "b") for a part that is not an identifier, quotes
# unescaped: a parameter named 'w")+__import__("os").system("...")+("' ran the command. So each part
# must be an identifier or an index.
_ATTRIBUTE_PATH_KEYS = ("parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name",
                        "user_input_name", "fqn")


class UnsafeModelFile(UserError):
    """The file reaches something a model file never needs; nothing in it was run."""


class TorchScriptNeedsTrust(UserError):
    """TorchScript runs its own code when loaded; the user has to say they trust the file."""


def torchscript_warning(path: Path) -> str:
    return (f"{Path(path).name} is a TorchScript file, and TorchScript files carry code that runs when they are "
            f"loaded; open it only if you trust where it came from.")


def peek_metadata(path: Path) -> dict | None:
    """A .pt2 or TorchScript file's metadata, read from its archive's JSON member without loading the
    model (nothing is unpickled or run); None where that cannot be told so (an ONNX file, whose metadata
    is inside its protobuf; a damaged file: the loader will say what is wrong with it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((info for info in archive.infolist()
                           if info.filename.endswith("/extra/" + METADATA_KEY) and info.file_size <= 1 << 20), None)
            metadata = json.loads(archive.read(member)) if member is not None else None
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return None
    return metadata if isinstance(metadata, dict) else None


def peek_class_count(path: Path) -> int | None:
    """How many classes a model file's metadata names (peek_metadata), for a window that lays itself out
    before the file is loaded through load_model_file; None where that cannot be told."""
    classes = (peek_metadata(path) or {}).get("classes")
    return len(classes) if isinstance(classes, list) and classes else None


# ---- the checks ------------------------------------------------------------------------------------
def format_of(path: Path) -> str:
    from tl_studio.core.export_formats import format_for_suffix

    return format_for_suffix(Path(path))


def check_model_file(path: Path, fmt: str | None = None) -> str:
    """Raises ``UnsafeModelFile`` (one sentence naming the file and the reason) unless ``path`` passes the
    check of its format; returns the format. Reads the file with zipfile/json/pickletools (ONNX: its
    protobuf structure) only."""
    path = Path(path)
    fmt = fmt or format_of(path)
    try:
        if fmt == "pt2":
            check_pt2(path)
        elif fmt == "torchscript":
            check_torchscript_pickles(path)
        elif fmt == "onnx":
            check_onnx_structure(path)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        raise UnsafeModelFile(f"{path.name} was not opened: it is not a readable {fmt} file (damaged, cut short, "
                              f"or another kind of file saved under this name).") from None
    return fmt


def check_onnx_structure(path: Path) -> None:
    """An ONNX model is one protobuf ModelProto. Walks its top-level fields (a tag, then a value whose
    length the wire type gives) to the end of the file and requires the IR version (field 1) and the
    graph (field 7): random bytes, a text file or a cut-short download fail here at once, without
    importing onnx (about a second) in the window's thread. ValueError when the structure is wrong."""
    seen = set()
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        while file.tell() < size:
            tag = _varint(file)
            field, wire = tag >> 3, tag & 7
            if field == 0 or wire not in (0, 1, 2, 5):  # 3 and 4 (groups) never occur in ONNX
                raise ValueError("not a protobuf message")
            if wire == 0:
                _varint(file)
            else:
                length = {1: 8, 5: 4}.get(wire) or _varint(file)
                if file.tell() + length > size:
                    raise ValueError("a field runs past the end of the file")
                file.seek(length, os.SEEK_CUR)
            seen.add(field)
    if not {1, 7} <= seen:
        raise ValueError("no IR version or no graph")


def _varint(file) -> int:
    value = shift = 0
    while True:
        byte = file.read(1)
        if not byte or shift > 63:
            raise ValueError("a number runs past the end of the file")
        value |= (byte[0] & 0x7F) << shift
        shift += 7
        if byte[0] < 0x80:
            return value


def check_pt2(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        _check_members(path, archive)
        members = [name for name in archive.namelist() if not name.endswith("/")]
        root = _single_root(path, members)
        inside = {name[len(root) + 1:]: name for name in members}
        for relative in inside:
            if not _PT2_LAYOUT.fullmatch(relative):
                _refuse(path, f"it holds {relative!r}, which torch.export never writes for a plain model "
                              f"(compiled code or an unknown part)")
        if "archive_format" not in inside or archive.read(inside["archive_format"]).strip() != b"pt2":
            _refuse(path, "it is not in the current torch.export archive format")
        for relative, name in inside.items():
            if relative.startswith("models/"):
                _check_program(path, json.loads(archive.read(name)))
            elif relative.startswith("data/sample_inputs/"):
                _check_torch_save(path, archive.read(name), ALLOWED_GLOBALS)
            elif relative.endswith("_config.json"):
                _check_payloads(path, archive, root, relative, json.loads(archive.read(name)))


def _check_members(path: Path, archive: zipfile.ZipFile) -> None:
    """The archive reads the same to this check and to torch: torch's reader (miniz) finds a member name
    by binary search, so of two members of one name it may read the other one than ``zipfile`` (the last)
    did: a program checked clean, and one with code in it loaded. And torch.export.save stores every
    member uncompressed, so a compressed one (a few MB that inflate to gigabytes when torch reads an
    extra file) is refused, and no member may claim more bytes than the file has."""
    size = Path(path).stat().st_size
    seen: set[str] = set()
    for info in archive.infolist():
        if info.filename in seen:
            _refuse(path, f"it holds two members named {info.filename!r}")
        seen.add(info.filename)
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            _refuse(path, f"its member {info.filename!r} is compressed, which torch.export never does")
        if info.header_offset + info.compress_size > size:
            _refuse(path, f"its member {info.filename!r} claims more bytes than the file has")


def check_torchscript_pickles(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        if not any("/code/" in name for name in archive.namelist()):
            # torch.save's archive (a state dict, a checkpoint, a pickled nn.Module): it was called a
            # TorchScript file that needs --trust, then "could not be loaded"; a pickled model named the
            # first class of its own the check met, a different one each time
            raise UnsafeModelFile(
                f"{Path(path).name} holds tensors or objects saved with torch.save (a state dict, a checkpoint "
                "or a whole pickled model), not a model file, and nothing in it was run; export the model from "
                "PyTorch to ONNX or TorchScript (torch.onnx.export, torch.jit.script) and open that instead.")
        for name in archive.namelist():
            if name.endswith(".pkl") or name.endswith(".debug_pkl"):
                _check_pickle(path, archive.read(name), ALLOWED_GLOBALS | _TORCHSCRIPT_GLOBALS,
                              allow_module=lambda module: module.split(".")[0] == "__torch__")


def _single_root(path: Path, members: list[str]) -> str:
    roots = {name.split("/", 1)[0] for name in members}
    if len(roots) != 1 or any("/" not in name for name in members):
        _refuse(path, "it is not laid out as a torch.export archive (one root folder)")
    return roots.pop()


def _check_payloads(path: Path, archive: zipfile.ZipFile, root: str, relative: str, config: dict) -> None:
    folder = relative.rsplit("/", 1)[0]
    for fqn, payload in config.get("config", {}).items():
        if not _is_attribute_path(fqn):  # set on the module by name, and written into its generated code
            _refuse(path, f"its weights name the attribute {fqn!r}, which is not a plain dotted name")
        file_name = str(payload.get("path_name", ""))
        if folder == "data/constants" and not file_name.startswith(_TENSOR_CONSTANT_PREFIX):
            _refuse(path, f"its constant {fqn!r} is a pickled Python or TorchBind object, not a tensor")
        if payload.get("use_pickle"):
            _check_torch_save(path, archive.read(f"{root}/{folder}/{file_name}"), ALLOWED_GLOBALS)


def _check_torch_save(path: Path, data: bytes, allowed: frozenset) -> None:
    """A torch.save payload: a zip whose ``data.pkl`` is unpickled, or (old style) a bare pickle."""
    if data[:2] != b"PK":
        _check_pickle(path, data, allowed)
        return
    with zipfile.ZipFile(io.BytesIO(data)) as inner:
        pickles = [name for name in inner.namelist() if name.endswith(".pkl")]
        if not pickles:
            _refuse(path, "a tensor payload in it has no data.pkl")
        for name in pickles:
            _check_pickle(path, inner.read(name), allowed)


def _check_pickle(path: Path, data: bytes, allowed: frozenset,
                  allow_module: Callable[[str], bool] = lambda module: False) -> None:
    from picklescan.scanner import scan_pickle_bytes

    try:
        opcodes = [opcode.name for opcode, _, _ in pickletools.genops(data)]
    except Exception:  # noqa: BLE001 - anything pickletools cannot read is refused, whatever the error
        _refuse(path, "a pickle in it cannot be parsed")
    if any(name.startswith("EXT") for name in opcodes):
        _refuse(path, "a pickle in it imports through the extension registry")
    result = scan_pickle_bytes(io.BytesIO(data), path.name, multiple_pickles=False)
    if result.scan_err:
        _refuse(path, "a pickle in it cannot be parsed")
    for found in result.globals:
        if (found.module, found.name) not in allowed and not allow_module(found.module):
            _refuse(path, f"a pickle in it imports {found.module}.{found.name}, which a model file never needs")


def _check_program(path: Path, program: dict) -> None:
    for key, value in _strings(program):
        if key == "target" and (not _TARGET.fullmatch(value) or _FORBIDDEN_ATEN.match(value)):
            _refuse(path, f"its graph calls {value!r}, which is not a tensor operator")
        elif key in _NAME_KEYS and not (value.isidentifier() and not keyword.iskeyword(value)):
            _refuse(path, f"its graph has a node named {value!r}, which is not a plain name")
        elif key in _ATTRIBUTE_PATH_KEYS and not _is_attribute_path(value, empty_ok=key == "fqn"):
            _refuse(path, f"its graph names the attribute {value!r}, which is not a plain dotted name")
        elif key in ("expr_str", "guards_code"):
            _check_expression(path, value)
    for symbol in program.get("range_constraints", {}):
        _check_expression(path, symbol)


# A part of a module's name that is not an identifier, as torchvision's RegNet names its blocks
# ("block1-0"). torch.fx writes such a part into generated code as getattr(..., "part") without escaping
# it, so a part may hold nothing that ends a string: ASCII letters, digits, "_" and "-".
_QUOTED_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _is_attribute_path(text: str, empty_ok: bool = False) -> bool:
    """network.blocks.0.conv.weight: identifiers (not keywords), indices and names like RegNet's
    block1-0, joined by dots."""
    if text == "" and empty_ok:  # the program's own module in the module call graph
        return True
    return all(part.isdigit() and part.isascii()
               or (part.isidentifier() and part.isascii() and not keyword.iskeyword(part))
               or (not part.isidentifier() and _QUOTED_PART.fullmatch(part) is not None)
               for part in text.split("."))


def _strings(node, key: str | None = None) -> Iterator[tuple[str, str]]:
    """Every string in a JSON tree with the key it sits under (a list passes its key on)."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield from _strings(child, child_key)
    elif isinstance(node, list):
        for child in node:
            yield from _strings(child, key)
    elif isinstance(node, str) and key is not None:
        yield key, node


def _check_expression(path: Path, text: str) -> None:
    position = 0
    while position < len(text):
        token = _EXPRESSION_TOKEN.match(text, position)
        if token is None:
            _refuse(path, f"a shape expression in it holds {text[position:position + 20]!r}")
        word = token.group()
        if word[0].isalpha() and word not in _EXPRESSION_NAMES and not re.fullmatch(r"[a-z]\d+", word):
            _refuse(path, f"a shape expression in it names {word!r}")
        position = token.end()


def _refuse(path: Path, reason: str):
    raise UnsafeModelFile(f"{Path(path).name} was not opened: {reason}; nothing in it was run.")


# ---- loading -------------------------------------------------------------------------------------
@dataclass
class ModelFile:
    path: Path
    format: str
    metadata: dict
    predict: Callable  # N x 3 x H x W float in [0, 1] -> N x C probabilities
    module: object = None  # .pt2: the torch module behind ``predict``

    @property
    def classes(self) -> list[str]:
        return list(self.metadata.get("classes", []))


def load_model_file(path: Path, fmt: str | None = None, *, trust_torchscript: bool = False) -> ModelFile:
    """The checked loader. TorchScript needs ``trust_torchscript`` (the user's explicit consent)."""
    path = Path(path)
    if path.is_dir() and (path / RUN_MODEL_FILE).is_file():
        path = path / RUN_MODEL_FILE  # a run folder, given for the model file it wrote
    elif path.is_dir() and (path / BEST_CHECKPOINT).is_file() and _still_training(path):
        raise UserError(f"The run {path} is still training; it writes its model file when it ends, and until "
                        f"then {export_command(path)} writes one from its best epoch so far.")
    elif path.is_dir() and (path / BEST_CHECKPOINT).is_file():  # a run stopped before it wrote one
        raise UserError(f"The run {path} has no model file yet (it stopped before writing one); "
                        f"{export_command(path)} writes it from the run's best epoch, or "
                        "open the run on the app's Runs step.")
    elif path.is_dir():
        raise UserError(f"{path} is a folder without a model file ({RUN_MODEL_FILE}); give a model file "
                        f"(.pt2, .onnx or .ts) or the run folder that wrote one.")
    if not path.is_file():
        raise UserError(f"No model file at {path}; train a model first or pick an existing file.")
    fmt = fmt or format_of(path)
    # Checked first (nothing in it is run): a JPEG or random bytes named .pth was called "a TorchScript
    # file" and the user asked to add --trust, for a file that is no model at all.
    check_model_file(path, fmt)
    if fmt == "torchscript" and not trust_torchscript:
        raise TorchScriptNeedsTrust(torchscript_warning(path) + " Add --trust to load it.")
    try:
        model = _LOADERS[fmt](path)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a third-party loader is one sentence
        article = "an" if fmt[0] in "aeiou" else "a"
        raise UserError(f"{path.name} could not be loaded as {article} {fmt} model ({type(error).__name__}); "
                        f"is it a TL Studio export?") from None
    check_metadata(path, model.metadata)
    return replace(model, predict=answers_one_per_class(path, model.predict, len(model.classes)))


def _still_training(run_dir: Path) -> bool:
    from tl_studio.core.run_folder import RunFolder

    return RunFolder(run_dir).is_locked()


def load_exported_program(path: Path):
    """The checked ``ExportedProgram`` of a .pt2 file and its TL Studio metadata (for Grad-CAM's weights)."""
    path = Path(path)
    check_model_file(path, "pt2")
    return _export_load(path)


_env_lock = threading.Lock()


@contextmanager
def weights_only_everywhere() -> Iterator[None]:
    """Every ``torch.load`` in this block runs with ``weights_only=True``, even one that asks for False
    (torch reads TORCH_FORCE_WEIGHTS_ONLY_LOAD at each call)."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    with _env_lock:
        saved = {name: os.environ.get(name) for name in names}
        os.environ[names[0]] = "1"
        os.environ.pop(names[1], None)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _export_load(path: Path):
    import torch

    extra = {METADATA_KEY: ""}
    with weights_only_everywhere():
        program = torch.export.load(str(path), extra_files=extra)
    return program, json.loads(extra[METADATA_KEY] or "{}")


def _load_pt2(path: Path) -> ModelFile:
    program, metadata = _export_load(path)
    module = program.module()
    return ModelFile(path, "pt2", metadata, _no_grad(module), module)


# Folding costs a copy of the graph and two passes of one image (~0.1-0.2 s here); from about two
# batches on, the faster passes pay for it.
FOLD_FROM_IMAGES = 64


def for_many_images(model: ModelFile, count: int) -> ModelFile:
    """``model`` with its BatchNorms folded into the convolutions before them (bn_folding.folded_graph:
    EfficientNet-Lite0 ~1.5x faster on the CPU) when it is a .pt2 file about to classify ``count``
    images; otherwise, or when folding would change its answers, ``model`` as it is."""
    import torch

    from tl_studio.core.bn_folding import folded_graph

    if model.format != "pt2" or model.module is None or count < FOLD_FROM_IMAGES:
        return model
    probe = torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    folded = folded_graph(model.module, probe)
    if folded is model.module:
        return model
    return replace(model, predict=answers_one_per_class(model.path, _no_grad(folded), len(model.classes)),
                   module=folded)


@contextmanager
def torchscript_is_deliberate():
    """TorchScript is deprecated in favour of torch.export; the TorchScript export exists for older
    runtimes on purpose, so its deprecation warnings are not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchScript.*")
        yield


def _load_torchscript(path: Path) -> ModelFile:
    import torch

    extra = {METADATA_KEY: ""}
    with torchscript_is_deliberate(), weights_only_everywhere():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return ModelFile(path, "torchscript", json.loads(extra[METADATA_KEY] or "{}"), _no_grad(module))


def _load_onnx(path: Path) -> ModelFile:
    import torch

    from tl_studio.core.interrupts import ctrl_c_deferred

    with ctrl_c_deferred():  # a native library's initialisation is no place for a KeyboardInterrupt
        import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    input_name = session.get_inputs()[0].name

    def predict(images):
        return torch.from_numpy(session.run(None, {input_name: images.numpy()})[0])

    return ModelFile(path, "onnx", json.loads(meta.get(METADATA_KEY, "{}")), predict)


def _no_grad(module) -> Callable:
    import torch

    def predict(images):
        with torch.no_grad():
            return module(images)
    return predict


_LOADERS = {"pt2": _load_pt2, "onnx": _load_onnx, "torchscript": _load_torchscript}
