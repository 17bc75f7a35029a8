"""A hand-edited model file's metadata is one sentence naming the field when the file is loaded, never a
traceback deep in predict or evaluate."""

from __future__ import annotations

import json

import pytest
import torch

from tests.model_file_helpers import _rewrite_zip, tiny_exports
from tl_studio.core.model_metadata import BadMetadata, answers_one_per_class, check_metadata

GOOD = {"classes": ["ants", "bees"], "preprocessing": {"crop_size": 224, "resize_size": 256, "interpolation":
        "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}, "unknown": {"threshold": 0.7}}


def test_the_metadata_the_app_writes_passes():
    check_metadata("model.pt2", GOOD)
    check_metadata("model.pt2", {**GOOD, "batchnorm_folded": True})
    check_metadata("model.pt2", {"classes": ["a", "b"]})  # no preprocessing: classified whole, one at a time


@pytest.mark.parametrize("edit, reason", [
    (lambda m: [1, 2], "its metadata is not a JSON object"),
    (lambda m: {**m, "classes": []}, "it has no class names in its metadata (is it a TL Studio export?)"),
    (lambda m: {**m, "classes": "antsbees"}, "its class names are not a list of names"),
    (lambda m: {**m, "classes": [1, None]}, "its class names are not a list of names"),
    (lambda m: {**m, "classes": ["ants", " "]}, "its class names are not a list of names"),
    (lambda m: {**m, "classes": ["ants", "ants"]}, "its class names list ants more than once"),
    (lambda m: {**m, "unknown": [1]}, "its metadata's unknown is not a JSON object"),
    (lambda m: {**m, "batchnorm_folded": "yes"}, "its metadata's batchnorm_folded is not true or false"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "interpolation": "lanczos9"}}, "interpolation 'lanczos9'"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "mean": [0.5]}}, "its preprocessing mean is not three"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "std": [0.5, 0, 0.5]}}, "std is not three positive"),
    (lambda m: {**m, "preprocessing": {**m["preprocessing"], "crop_size": -3}}, "sizes are not whole numbers"),
])
def test_each_bad_field_is_one_sentence(edit, reason):
    with pytest.raises(BadMetadata, match=reason.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        check_metadata("model.pt2", edit(dict(GOOD)))


def test_an_answer_of_another_width_than_the_class_names_is_refused():
    predict = answers_one_per_class("model.pt2", lambda images: torch.ones(len(images), 2) / 2, 3)
    with pytest.raises(BadMetadata, match="its model answers 2 classes but its metadata names 3"):
        predict(torch.zeros(4, 3, 8, 8))
    assert answers_one_per_class("m.pt2", lambda images: torch.ones(1, 3), 3)(None).shape == (1, 3)


def test_a_model_file_with_three_names_for_two_outputs_is_one_sentence_in_predict(tmp_path, capsys):
    from tl_studio.cli.main import main

    good = tiny_exports(tmp_path / "exports")["pt2"]

    def three_names(name, data):
        if not name.endswith("extra/tl_studio.json"):
            return data
        return json.dumps({**json.loads(data), "classes": ["a", "b", "c"]}).encode()
    crafted = _rewrite_zip(good, tmp_path / "three.pt2", three_names)
    image = tmp_path / "one.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(image)
    assert main(["predict", str(crafted), str(image)]) != 0
    out, err = capsys.readouterr()
    assert "three.pt2 cannot be used: its model answers 2 classes but its metadata names 3." in err
    assert "Traceback" not in err
    assert "does not take a batch" not in out + err  # the batch probe met the same refusal: not its cause
