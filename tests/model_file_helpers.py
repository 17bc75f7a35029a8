"""Crafted model files for the tests of the checked loader: each would create a marker file when loaded
by torch itself. ``tiny_exports`` writes one small real export per format (no training)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

EVIL_TORCHSCRIPT_SOURCE = '''
import sys
from typing import Tuple

import torch


class Evil(torch.nn.Module):
    """Its __setstate__ runs when the file is loaded and creates the file named in it."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = bool(torch.from_file(state[0], shared=True, size=1).numel() > 5)


torch.jit.script(Evil(sys.argv[1])).save(sys.argv[2])
'''


class _Exec:
    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def tiny_exports(folder: Path, classes=("a", "b")) -> dict[str, Path]:
    import torch
    from torch import nn

    from tl_studio.core.export import export_model
    from tl_studio.core.export_formats import EXPORT_FORMATS
    from tl_studio.core.preprocess import PreprocessSpec

    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    files = {}
    spec = PreprocessSpec(32, 36)
    metadata = {"classes": list(classes), "model": "tiny", "preprocessing": spec.to_dict()}  # as every export's
    for name, fmt in EXPORT_FORMATS.items():
        report = export_model(network, spec, metadata, folder / f"model{fmt.suffix}", name, [torch.rand(1, 3, 40, 50)])
        files[name] = report.path
    return files


def _rewrite_zip(source: Path, target: Path, replace) -> Path:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as crafted:
        for info in original.infolist():
            crafted.writestr(info.filename, replace(info.filename, original.read(info.filename)))
    return target


def pt2_with_pickled_code(good_pt2: Path, target: Path, marker: Path) -> Path:
    """Its example inputs are a pickle that calls exec: torch.export.load tries weights_only=True, fails,
    and falls back to weights_only=False."""
    import torch

    buffer = io.BytesIO()
    torch.save(_Exec(f"open({str(marker)!r}, 'w').close()"), buffer)
    return _rewrite_zip(good_pt2, target, lambda name, data: buffer.getvalue()
                        if name.endswith("data/sample_inputs/model.pt") else data)


def pt2_with_code_in_a_guard(good_pt2: Path, target: Path, marker: Path) -> Path:
    """Its input guards (exec'd by ExportedProgram.module()) open a file."""
    def replace(name, data):
        if not name.endswith("models/model.json"):
            return data
        program = json.loads(data)
        program["guards_code"] = [f"open({str(marker)!r}, 'w').close() is None"]
        return json.dumps(program).encode()
    return _rewrite_zip(good_pt2, target, replace)


def evil_torchscript(folder: Path, target: Path, marker: Path) -> Path:
    script = folder / "make_evil_torchscript.py"
    script.write_text(EVIL_TORCHSCRIPT_SOURCE)
    subprocess.run([sys.executable, str(script), str(marker), str(target)], check=True, capture_output=True)
    return target


def plain_torch_load_creates(path: Path, marker: Path, classify: bool = False) -> bool:
    """Loads ``path`` with torch alone in a child process (as the app did before the check) and says
    whether the marker appeared: proof that the crafted file really runs code. ``classify``: the module
    also classifies one 32 x 32 image (code in its generated forward runs then, not when it is built)."""
    loader = ("torch.jit.load(sys.argv[1])" if path.suffix == ".ts"
              else "torch.export.load(sys.argv[1]).module()")
    if classify:
        loader += "(torch.rand(1, 3, 32, 32))"
    code = textwrap.dedent(f"""
        import sys, torch
        try:
            {loader}
        except Exception:
            pass
    """)
    subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=300)
    created = marker.exists()
    marker.unlink(missing_ok=True)
    return created


def pt2_with_a_second_program(good_pt2: Path, target: Path, marker: Path, copies: int, evil_at: int) -> Path:
    """``copies`` members named models/model.json, the one at ``evil_at`` with code in a shape expression
    (torch sympifies it, an eval, while loading): zipfile reads the last copy, torch's reader the one its
    binary search lands on."""
    with zipfile.ZipFile(good_pt2) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as crafted:
        for info in original.infolist():
            data = original.read(info.filename)
            if not info.filename.endswith("models/model.json"):
                crafted.writestr(info.filename, data)
                continue
            text = data.decode()
            symbol = text.index('"expr_str": "Symbol(') + len('"expr_str": "')
            evil = (text[:symbol] + f"open({str(marker)!r}, 'w').close() or " + text[symbol:]).encode()
            for index in range(copies):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "Duplicate name": the point of the file
                    crafted.writestr(info.filename, evil if index == evil_at else data)
    return target


def pt2_with_code_in_a_parameter_name(good_pt2: Path, target: Path, marker: Path) -> Path:
    """Its first parameter renamed, in the program and the weights, to a name torch writes into the
    module's generated code as getattr(self.x, "NAME") without escaping the quotes."""
    with zipfile.ZipFile(good_pt2) as original:
        config_name = next(name for name in original.namelist() if name.endswith("model_weights_config.json"))
        old = next(iter(json.loads(original.read(config_name))["config"]))
    head, _, last = old.rpartition(".")
    assert "." not in str(marker), "torch splits the name at dots: the path must have none"
    new = f'{head}.{last}"+str(open({str(marker)!r}, "w"))+"'.lstrip(".")
    encoded = json.dumps(new)[1:-1].encode()

    def rename(name, data):
        if name.endswith("models/model.json") or name == config_name:
            return data.replace(json.dumps(old).encode(), b'"' + encoded + b'"')
        return data
    return _rewrite_zip(good_pt2, target, rename)
