"""The checked loader: crafted model files that would run code are refused before anything in them is
unpickled or run, by every way the app opens a model file; the files TL Studio writes pass."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.model_file_helpers import (evil_torchscript, plain_torch_load_creates, pt2_with_code_in_a_guard,
                                      pt2_with_pickled_code, tiny_exports)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return tiny_exports(tmp_path_factory.mktemp("exports"))


@pytest.fixture()
def marker(tmp_path):
    return tmp_path / "marker"


@pytest.fixture()
def evil_pt2(exports, tmp_path, marker):
    path = pt2_with_pickled_code(exports["pt2"], tmp_path / "evil.pt2", marker)
    assert plain_torch_load_creates(path, marker), "the crafted file must really run code with plain torch"
    return path


@pytest.fixture()
def evil_ts(tmp_path, marker):
    path = evil_torchscript(tmp_path, tmp_path / "evil.ts", marker)
    assert plain_torch_load_creates(path, marker), "the crafted file must really run code with plain torch"
    return path


@pytest.mark.parametrize("fmt", ["pt2", "onnx", "torchscript"])
def test_every_file_tl_studio_writes_passes_the_check(exports, fmt):
    from tl_studio.core.model_file import check_model_file, load_model_file

    assert check_model_file(exports[fmt]) == fmt
    model = load_model_file(exports[fmt], trust_torchscript=True)
    assert model.classes == ["a", "b"] and model.metadata["model"] == "tiny"


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_damaged_or_foreign_file_is_refused_when_opened_with_one_sentence(exports, tmp_path, fmt):
    """File > Open Model File checks a file before the app accepts it; for ONNX that is its protobuf
    structure: random bytes, text and a cut-short download are refused at once, a real export passes."""
    import os

    from tl_studio.core.model_file import UnsafeModelFile, check_model_file

    whole = exports[fmt].read_bytes()
    for name, content in (("random", os.urandom(5000)), ("text", b"not a model at all\n" * 50),
                          ("cut", whole[: len(whole) // 2]), ("empty", b"")):
        path = tmp_path / f"{name}.{fmt}"
        path.write_bytes(content)
        with pytest.raises(UnsafeModelFile) as refused:
            check_model_file(path)
        assert str(refused.value) == (f"{path.name} was not opened: it is not a readable {fmt} file (damaged, cut "
                                      "short, or another kind of file saved under this name).")
    assert check_model_file(exports[fmt]) == fmt


def test_a_pt2_whose_pickle_runs_code_is_refused_and_nothing_runs(evil_pt2, marker):
    from tl_studio.core.model_file import UnsafeModelFile, load_exported_program, load_model_file

    from tl_studio.core.gradcam import load_network

    for load in (load_model_file, load_exported_program,
                 lambda path: load_network(path, {"model": "resnet18", "classes": ["a", "b"]})):  # Grad-CAM
        with pytest.raises(UnsafeModelFile, match=r"evil\.pt2 was not opened: .*builtin.*exec"):
            load(evil_pt2)
    assert not marker.exists()


def test_a_pt2_with_code_in_its_guards_is_refused(exports, tmp_path, marker):
    from tl_studio.core.model_file import UnsafeModelFile, check_model_file

    crafted = pt2_with_code_in_a_guard(exports["pt2"], tmp_path / "guard.pt2", marker)
    with pytest.raises(UnsafeModelFile, match="names 'open'"):
        check_model_file(crafted)


def test_no_torch_load_inside_the_checked_load_can_unpickle_code(evil_pt2, marker):
    """The second line: even with the check skipped, the load itself forbids weights_only=False."""
    import torch

    from tl_studio.core.model_file import weights_only_everywhere

    with weights_only_everywhere(), pytest.raises(Exception):
        torch.export.load(str(evil_pt2))
    assert not marker.exists()


def test_torchscript_needs_trust_and_is_not_loaded_without_it(evil_ts, marker):
    from tl_studio.core.model_file import TorchScriptNeedsTrust, load_model_file

    with pytest.raises(TorchScriptNeedsTrust, match="carry code that runs when they are loaded"):
        load_model_file(evil_ts)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"\xff\xd8\xff\xe0 a JPEG", bytes(range(256)) * 12])
@pytest.mark.parametrize("suffix", [".pth", ".ts"])
def test_a_file_that_is_no_torchscript_is_named_so_not_offered_to_trust(tmp_path, content, suffix):
    """A photo or random bytes named .pth was called "a TorchScript file" that needs --trust."""
    from tl_studio.core.errors import UserError
    from tl_studio.core.model_file import TorchScriptNeedsTrust, load_model_file

    path = tmp_path / f"fake{suffix}"
    path.write_bytes(content)
    with pytest.raises(UserError) as refused:
        load_model_file(path)
    assert not isinstance(refused.value, TorchScriptNeedsTrust) and "--trust" not in str(refused.value)


@pytest.mark.parametrize("saved", ["state dict", "whole model"])
def test_a_torch_save_file_is_named_for_what_it_is_in_one_sentence_each_time(tmp_path, saved):
    """A state dict saved as sd.pt was "a TorchScript file ... Add --trust", then with --trust "could not be
    loaded"; a pickled model was refused for a class named differently each time (a set's order)."""
    import torch

    from tl_studio.core.model_file import UnsafeModelFile, load_model_file

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict() if saved == "state dict" else model, path)
    messages = set()
    for trust in (False, True, False):
        with pytest.raises(UnsafeModelFile) as refused:
            load_model_file(path, trust_torchscript=trust)
        messages.add(str(refused.value))
    assert messages == {"sd.pt holds tensors or objects saved with torch.save (a state dict, a checkpoint or a "
                        "whole pickled model), not a model file, and nothing in it was run; export the model from "
                        "PyTorch to ONNX or TorchScript (torch.onnx.export, torch.jit.script) and open that instead."}


def test_cli_predict_and_evaluate_refuse_crafted_files(evil_pt2, evil_ts, marker, tmp_path, capsys):
    from tests.helpers import make_image_folder
    from tl_studio.cli.main import main

    data = make_image_folder(tmp_path / "data", classes=("a", "b"), per_class=2, size=32)
    for command in (["predict", str(evil_pt2), str(data)], ["evaluate", str(evil_pt2), str(data)]):
        assert main(command) == 2
        assert "evil.pt2 was not opened" in capsys.readouterr().err
    for command in (["predict", str(evil_ts), str(data)], ["evaluate", str(evil_ts), str(data)]):
        assert main(command) == 2
        assert "--trust" in capsys.readouterr().err
    assert not marker.exists()


def test_predict_json_contract(exports, tmp_path, capsys):
    from tests.helpers import make_image
    from tl_studio.cli.main import main

    good = make_image(tmp_path / "in" / "good.png", (200, 10, 10), size=40)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not an image")
    assert main(["predict", str(exports["pt2"]), str(tmp_path / "in"), "--json", "--top-k", "2"]) == 0
    records = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert records["broken.jpg"].keys() == {"path", "error"}
    assert records["good.png"]["path"] == str(good)
    top = records["good.png"]["top"]
    assert [set(entry) for entry in top] == [{"label", "prob"}] * 2
    assert {entry["label"] for entry in top} == {"a", "b"} and top[0]["prob"] >= top[1]["prob"]



def _edit_program(good_pt2: Path, target: Path, edit) -> Path:
    from tests.model_file_helpers import _rewrite_zip

    def replace(name, data):
        if not name.endswith("models/model.json"):
            return data
        program = json.loads(data)
        edit(program)
        return json.dumps(program).encode()
    return _rewrite_zip(good_pt2, target, replace)


def _first_node(program) -> dict:
    return program["graph_module"]["graph"]["nodes"][0]


@pytest.mark.parametrize("edit, reason", [
    (lambda p: _first_node(p).update(target="torch.serialization.os.system"), "not a tensor operator"),
    (lambda p: _first_node(p).update(target="_operator.attrgetter"), "not a tensor operator"),
    (lambda p: _first_node(p).update(target="torch.ops.aten.from_file.default"), "not a tensor operator"),
    (lambda p: _first_node(p).update(name="x=__import__('os').system('id')"), "not a plain name"),
    (lambda p: p["graph_module"]["graph"]["inputs"][0]["as_tensor"].update(name="a, b"), "not a plain name"),
    (lambda p: p["range_constraints"].update({"__import__('os')": {"min_val": 1, "max_val": 2}}), "shape expression"),
    (lambda p: p.update(guards_code=["eval(chr(49))"]), "names 'eval'"),
])
def test_a_pt2_whose_graph_reaches_code_is_refused(exports, tmp_path, edit, reason):
    from tl_studio.core.model_file import UnsafeModelFile, check_model_file

    with pytest.raises(UnsafeModelFile, match=reason):
        check_model_file(_edit_program(exports["pt2"], tmp_path / "crafted.pt2", edit))


def test_a_pt2_with_compiled_code_or_pickled_objects_is_refused(exports, tmp_path):
    from tests.model_file_helpers import _rewrite_zip
    from tl_studio.core.model_file import UnsafeModelFile, check_model_file

    def add_library(source, target, member):
        _rewrite_zip(source, target, lambda name, data: data)
        root = zipfile.ZipFile(source).namelist()[0].split("/")[0]
        with zipfile.ZipFile(target, "a") as archive:
            archive.writestr(f"{root}/{member}", b"\x7fELF")
        return target

    with pytest.raises(UnsafeModelFile, match="never writes"):
        check_model_file(add_library(exports["pt2"], tmp_path / "aoti.pt2", "data/aotinductor/model/model.so"))

    def opaque_constant(name, data):
        if not name.endswith("model_constants_config.json"):
            return data
        config = json.loads(data)
        first = next(iter(config["config"].values()))
        first["path_name"] = "opaque_obj_0"
        return json.dumps(config).encode()
    with pytest.raises(UnsafeModelFile, match="pickled Python or TorchBind object"):
        check_model_file(_rewrite_zip(exports["pt2"], tmp_path / "opaque.pt2", opaque_constant))



def test_guards_with_the_number_builtins_torch_writes_are_accepted(exports, tmp_path):
    """torch 2.13 (the app bundle's build) writes a centre crop's input guard with max and min; the app must
    open its own files, while the same builtins cannot call anything else."""
    from tl_studio.core.model_file import UnsafeModelFile, check_model_file

    guard = ["max(2, (7*min(s0, s1)) // 8) <= s2", "abs(s0 - s1) >= 0", "round(s0 / 2) > 0"]
    check_model_file(_edit_program(exports["pt2"], tmp_path / "guards.pt2", lambda p: p.update(guards_code=guard)))
    with pytest.raises(UnsafeModelFile, match="names 'getattr'"):
        check_model_file(_edit_program(exports["pt2"], tmp_path / "call.pt2",
                                       lambda p: p.update(guards_code=["max(getattr(s0, 'x'), 1)"])))


def test_a_pt2_with_two_programs_of_one_name_is_refused_and_nothing_runs(exports, tmp_path, marker):
    """The check read the last of the duplicated members (zipfile), torch another one (a binary search):
    a program with code in it loaded after a clean one was checked."""
    from tests.model_file_helpers import pt2_with_a_second_program
    from tl_studio.core.model_file import UnsafeModelFile, load_model_file

    # which copy torch's search lands on is torch's business: the first crafted file that runs code
    crafted = next((candidate for copies in (2, 3, 4) for evil_at in range(copies)
                    if plain_torch_load_creates(candidate := pt2_with_a_second_program(
                        exports["pt2"], tmp_path / f"two_{copies}_{evil_at}.pt2", marker, copies, evil_at), marker)),
                   None)
    assert crafted is not None, "one of the crafted files must really run code with plain torch"
    with pytest.raises(UnsafeModelFile, match="two members named"):
        load_model_file(crafted)
    assert not marker.exists()


def test_a_pt2_whose_parameter_name_holds_code_is_refused_and_nothing_runs(exports, tmp_path):
    from tests.model_file_helpers import pt2_with_code_in_a_parameter_name
    from tl_studio.core.model_file import UnsafeModelFile, load_model_file

    marker = tmp_path / "marker"
    crafted = pt2_with_code_in_a_parameter_name(exports["pt2"], tmp_path / "named.pt2", marker)
    assert plain_torch_load_creates(crafted, marker, classify=True), "the crafted file must really run code"
    with pytest.raises(UnsafeModelFile, match="not a plain dotted name"):
        load_model_file(crafted)
    assert not marker.exists()


def test_a_pt2_with_a_compressed_member_is_refused(exports, tmp_path):
    """A few MB deflated in extra/ inflated to 400 MB in memory when torch read it."""
    from tl_studio.core.model_file import UnsafeModelFile, check_model_file

    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(exports["pt2"]) as original, zipfile.ZipFile(bomb, "w") as crafted:
        for info in original.infolist():
            crafted.writestr(info, original.read(info.filename))
        root = original.namelist()[0].split("/")[0]
        crafted.writestr(f"{root}/extra/big", b"\0" * 10_000_000, compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < exports["pt2"].stat().st_size + 100_000
    with pytest.raises(UnsafeModelFile, match="is compressed"):
        check_model_file(bomb)


def test_names_of_the_attributes_a_model_really_has_pass():
    from tl_studio.core.model_file import _is_attribute_path

    assert all(_is_attribute_path(name) for name in ("network.blocks.0.1.conv_pw.weight", "fc.bias", "_x.y9",
                                                      "network.trunk_output.block1.block1-0.proj.0.weight"))
    assert _is_attribute_path("", empty_ok=True) and not _is_attribute_path("")
    assert not any(_is_attribute_path(name) for name in ('a.b")+x+("', "a..b", "a.class", "a.b c", "a.é", "a.-1",
                                                         'a.b-"c', "a.b-\\", "a.b-\n"))


def test_a_network_with_a_hyphen_in_a_layer_name_exports_and_loads(tmp_path):
    """torchvision's RegNet names its blocks block1-0, block1-1, ...: its model file was refused by
    the very check it has to pass, so no RegNet run could export one."""
    import torch
    from torch import nn

    from tl_studio.core.export import ExportedClassifier, export_model
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.preprocess import PreprocessSpec

    trunk = nn.Sequential()
    trunk.add_module("block1-0", nn.Conv2d(3, 4, 3))
    network = nn.Sequential(trunk, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    spec = PreprocessSpec(crop_size=32, resize_size=36)
    image = torch.rand(1, 3, 40, 50)
    assert export_model(network, spec, {"classes": ["a", "b"]}, tmp_path / "m.pt2", "pt2", [image]).check.passed
    with torch.no_grad():
        expected = ExportedClassifier(network, spec).eval()(image)
    assert torch.allclose(load_model_file(tmp_path / "m.pt2").predict(image), expected, atol=1e-6)
