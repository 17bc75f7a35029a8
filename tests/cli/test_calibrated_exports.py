"""Calibrated model files with an unknown answer, int8 files behind their gate, and the format report,
through the commands a user runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.evaluation_helpers import one_torch_thread, tiny_model
from tl_studio.cli.main import main


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


def _metadata(path):
    from tl_studio.core.model_file import load_model_file

    return load_model_file(path).metadata


def test_the_run_model_file_is_calibrated_and_carries_its_unknown_rule(model):
    metadata = _metadata(model.model_file)
    calibration, rule = metadata["calibration"], metadata["unknown"]
    assert calibration["fitted_on"] == "val" and calibration["temperature"] > 0
    assert calibration["images"] > 0 and 0 <= calibration["ece_after"] <= 1
    assert rule["score"] == "max_probability" and rule["keep"] == 0.95 and rule["kept_on_val"] >= 0.95


def test_exported_probabilities_use_the_recorded_temperature(model, tmp_path):
    """The file's softmax is the network's logits divided by the recorded T (an export with T forced to
    a very large value gives near-uniform probabilities; the recorded one does not)."""
    import torch

    from tl_studio.core.export import ExportedClassifier, temperature_of
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.runs import open_run

    run = open_run(model.run_dir)
    loaded = load_model_file(model.model_file)
    image = torch.rand(1, 3, 80, 70, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ExportedClassifier(run.build_network(), run.spec, temperature_of(loaded.metadata)).eval()(image)
        flat = ExportedClassifier(run.build_network(), run.spec, 1e6).eval()(image)
    assert torch.allclose(torch.as_tensor(loaded.predict(image)), expected, atol=1e-4)
    assert float(flat.max() - flat.min()) < 1e-4


def test_predict_marks_unknown_images_in_json_text_and_csv(model, tmp_path, capsys, monkeypatch):
    from tl_studio.core import predict as predict_module
    from tl_studio.core.unknown import UnknownRule

    images = sorted((model.data_dir / "red").glob("*.jpg"))[:3]
    # a rule no answer can pass: every image is unknown, with its closest class still given
    monkeypatch.setattr(predict_module, "unknown_rule_of", lambda metadata: UnknownRule(1.01, 0.95, 0.95))
    out_csv = tmp_path / "p.csv"
    assert main(["predict", str(model.model_file), *map(str, images), "--json", "--csv", str(out_csv)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["unknown"] for r in records] == [True] * 3 and all(r["top"] for r in records)
    rows = list(csv.DictReader(out_csv.open()))
    assert [row["unknown"] for row in rows] == ["yes"] * 3
    assert main(["predict", str(model.model_file), str(images[0])]) == 0
    assert "unknown (closest: " in capsys.readouterr().out
    # the file's own rule keeps the images it was fitted to keep
    monkeypatch.undo()
    assert main(["predict", str(model.model_file), *map(str, images), "--json"]) == 0
    assert all(json.loads(line)["unknown"] is False for line in capsys.readouterr().out.splitlines())


def test_evaluate_reports_ece_and_the_unknown_answer_on_a_folder(model, tmp_path, capsys):
    from PIL import Image

    ood = tmp_path / "ood"
    ood.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(ood / f"noise{i}.png")
    (ood / "broken.jpg").write_bytes(b"not an image")  # left out, and counted (it was silent)
    assert main(["evaluate", str(model.model_file), str(model.data_dir), "--json", "--ood", str(ood)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["ece"] <= 1 and sum(b["count"] for b in result["reliability"]) == result["num_images"]
    assert result["ood"]["ood_images"] == 6 and 0 <= result["ood"]["ood_rejected"] <= 1
    assert 0 <= result["ood"]["auroc"] <= 1 and result["ood"]["val_images"] == result["num_images"]
    assert (result["ood"]["ood_unreadable"], result["ood"]["ood_also_evaluated"]) == (1, 0)
    # the evaluated images given as the unfamiliar ones: said (AUROC 0.500 stood as a finding)
    assert main(["evaluate", str(model.model_file), str(model.data_dir), "--ood", str(model.data_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "of the unfamiliar images are among the evaluated ones, so these figures say little" in out


def test_int8_export_refused_when_the_gate_fails(model, tmp_path, monkeypatch, capsys):
    from tl_studio.core import quantize

    real_compare = quantize.compare

    def worse(*args, **kwargs):  # the real comparison, then an int8 file that lost 2 % agreement
        check = real_compare(*args, **kwargs)
        return quantize.Int8Check(check.images, 0.98, check.fp32_accuracy, check.fp32_accuracy - 0.02)

    monkeypatch.setattr(quantize, "compare", worse)
    # the check's images are decoded as predict and evaluate decode them (a large JPEG reduced): decoded
    # whole, a 96 px run's check gave accuracy 0.784 where every other command gave 0.797
    from tl_studio.core import images
    from tl_studio.core.runs import open_run

    sides, real_load = [], images.load_rgb
    monkeypatch.setattr(images, "load_rgb", lambda path, *args, **kwargs: sides.append(kwargs.get("min_side")) or
                        real_load(path, *args, **kwargs))
    out = tmp_path / "model.int8.onnx"
    assert main(["export", str(model.run_dir), "--format", "onnx-int8", "--out", str(out)]) == 2
    assert sides and set(sides) == {open_run(model.run_dir).spec.resize_size}
    assert "int8 check FAILED" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no file, no temporary folder left


def test_int8_export_writes_a_checked_file_with_the_same_contract(model, tmp_path, capsys):
    out = tmp_path / "model.int8.onnx"
    code = main(["export", str(model.run_dir), "--format", "onnx-int8", "--out", str(out)])
    printed = capsys.readouterr()
    if code != 0:  # the gate may refuse a tiny model; then it must say so and leave nothing behind
        assert "int8 check FAILED" in printed.err and not out.exists()
        return
    # the calibration figures are the full-precision model's, and said so
    assert "(of the full-precision model; tl-studio evaluate measures this file's own)." in printed.out
    metadata = _metadata(out)
    assert metadata["quantization"]["check"]["passed"] and metadata["classes"] == list(_metadata(model.model_file)["classes"])
    assert "calibration" in metadata and "unknown" in metadata
    import onnx

    graph = onnx.load(str(out)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert made_by.get(convolutions[0].input[1]) != "DequantizeLinear"  # the stem's weights stay float
    assert any(made_by.get(node.input[1]) == "DequantizeLinear" for node in convolutions[1:])


def test_benchmark_reports_each_format(model, capsys, monkeypatch):
    from tl_studio.core import images
    from tl_studio.core.runs import open_run

    sides, real_load = [], images.load_rgb  # its accuracy is on images decoded as evaluate decodes them
    monkeypatch.setattr(images, "load_rgb", lambda path, *args, **kwargs: sides.append(kwargs.get("min_side")) or
                        real_load(path, *args, **kwargs))
    assert main(["benchmark", str(model.run_dir), "--formats", "onnx", "pt2", "onnx", "--json"]) == 0  # once each
    assert sides and set(sides) == {open_run(model.run_dir).spec.resize_size}
    report = json.loads(capsys.readouterr().out)
    rows = {row["format"]: row for row in report["formats"]}
    assert set(rows) == {"onnx", "pt2"} and len(report["formats"]) == 2
    for row in rows.values():
        assert not row["error"] and row["file_bytes"] > 100_000
        assert row["latency_ms"] > 0 and row["images_per_s"] > 0
        assert row["agreement"] == 1.0 and 0 <= row["val_accuracy"] <= 1


def test_a_file_another_export_wrote_meanwhile_is_not_replaced(model, tmp_path, monkeypatch):
    """Two exports to one new --out both passed the 'already exists' check, 15-35 s apart; the second
    replaced the first's file without a word."""
    from tl_studio.core import export as export_module
    from tl_studio.core.errors import UserError
    from tl_studio.core.runs import export_run

    out = tmp_path / "shared.onnx"
    real = export_module.ExportedClassifier

    def and_another_export_finishes_first(*args, **kwargs):
        out.write_bytes(b"the other export's file")
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "ExportedClassifier", and_another_export_finishes_first)
    with pytest.raises(UserError, match="was written by another export while this one ran; it was left as it is"):
        export_run(model.run_dir, "onnx", out)
    assert out.read_bytes() == b"the other export's file"
    assert not list(tmp_path.glob(".shared*"))  # no temporary file left
    export_run(model.run_dir, "onnx", out, overwrite=True)  # asked for: replaced
    assert out.read_bytes() != b"the other export's file"
