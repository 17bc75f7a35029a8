"""`tl-studio evaluate`: its JSON equals plain-torch figures on the same images; the report; mistakes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.evaluation_helpers import (CLASSES, copy_dataset, hand_metrics, one_torch_thread, plain_torch_probabilities,
                                      tiny_model)
from tests.helpers import make_image, make_image_folder
from tl_studio.cli.main import main


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


def _images_by_class(folder):
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / name).glob("*.jpg")):  # absent classes have no images
            paths.append(path)
            labels.append(label)
    return paths, np.array(labels)


def test_json_equals_plain_torch_on_a_plain_folder(model, tmp_path, capsys):
    # A separate test folder with two of the model's classes, whose positions in the folder's own sorted
    # class list (green, purple, red) differ from the model's (blue, green, red), and a class it does not know.
    test_dir = make_image_folder(tmp_path / "test", classes=("green", "red"), per_class=3, size=64, seed=5)
    make_image(test_dir / "purple" / "p.jpg", (140, 50, 160))
    assert main(["evaluate", str(model.model_file), str(test_dir), "--json", "--split", "all"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["split"] == "all"
    assert "purple (1)" in err and report["skipped_classes"] == {"purple": 1}
    paths, labels = _images_by_class(test_dir)
    expected = hand_metrics(labels, plain_torch_probabilities(model.model_file, paths).argmax(axis=1), len(CLASSES))
    assert report["num_images"] == 6 and report["classes"] == list(CLASSES)
    assert [c["support"] for c in report["per_class"]] == [0, 3, 3]
    assert report["confusion_matrix"] == expected["matrix"]
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert [c["name"] for c in report["per_class"]] == list(CLASSES)
    for ours, theirs in zip(report["per_class"], expected["per_class"]):
        assert {k: ours[k] for k in theirs} == pytest.approx(theirs)


def test_an_unsplit_folder_defaults_to_the_val_split_and_says_so(model, capsys):
    # As the Evaluate step does: the images the model was validated on, not the ones it was trained on.
    from tl_studio.core.evaluation import scan_for_model
    from tl_studio.core.model_file import load_model_file

    metadata = load_model_file(model.model_file).metadata
    val_images = {str(r.path) for r in scan_for_model(model.data_dir, metadata).split("val")}
    assert 0 < len(val_images) < 30
    assert main(["evaluate", str(model.model_file), str(model.data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "val" and report["num_images"] == len(val_images)
    assert main(["evaluate", str(model.model_file), str(model.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "(the val split of" in out
    assert "(By default the val split the run made of the folder it trained on, so that no training image" in out


def test_another_unsplit_folder_is_evaluated_whole(model, tmp_path, capsys):
    # New images in a folder of class folders: every one of them, not the fifth a split would keep.
    other = make_image_folder(tmp_path / "new photos", classes=CLASSES, per_class=5, size=64, seed=9)
    assert main(["evaluate", str(model.model_file), str(other), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "all" and report["num_images"] == 15
    assert main(["evaluate", str(model.model_file), str(other)]) == 0
    out = capsys.readouterr().out
    assert "Evaluated 15 images (every image of" in out
    assert "(By default every image, as this is not the folder the model was trained on; --split" in out


def test_the_training_images_of_the_model_evaluated_again_are_pointed_out(model, tmp_path, capsys):
    """The user copied the training folder and evaluates the copy whole (or opened its train/ folder):
    the figures are the model's on its own training images, and the report says so; its own val split
    and new photos get no such sentence."""
    import shutil

    from tl_studio.core.evaluation import scan_for_model
    from tl_studio.core.model_file import load_model_file

    metadata = load_model_file(model.model_file).metadata
    trained = len(list(scan_for_model(model.data_dir, metadata).split("train")))
    copy = shutil.copytree(model.data_dir, tmp_path / "copy")
    assert main(["evaluate", str(model.model_file), str(copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seen_in_training"] == trained
    assert main(["evaluate", str(model.model_file), str(copy)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{trained} of the 30 images evaluated here are copies of images this model was trained on" in out
    assert main(["evaluate", str(model.model_file), str(model.data_dir), "--json"]) == 0  # its val split
    assert json.loads(capsys.readouterr().out)["seen_in_training"] == 0
    other = make_image_folder(tmp_path / "new photos", classes=CLASSES, per_class=2, size=64, seed=9)
    assert main(["evaluate", str(model.model_file), str(other)]) == 0
    assert "trained on, so these figures" not in capsys.readouterr().out


def test_a_moved_training_folder_is_not_taken_for_new_images(model, tmp_path, capsys):
    """The training folder renamed (mv1 -> mv3) and evaluated whole: 187 of its 249 images were ones the
    model trained on, and the report read "every image, as this is not the folder the model was trained
    on", accuracy 0.988 against the run's 0.952, with no word of it."""
    moved = tmp_path / "renamed"
    model.data_dir.rename(moved)
    try:
        assert main(["evaluate", str(model.model_file), str(moved)]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "this is not the folder the model was trained on" not in out
        assert ("(By default every image, as the folder the model was trained on is not here to compare; if this is "
                "that folder, moved or renamed, its val split holds the images the run did not train on;") in out
        assert (f"Not checked for training images: the folder this model was trained on, {model.data_dir}, is not "
                "here.") in out
        assert main(["evaluate", str(model.model_file), str(moved), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["seen_in_training"] is None and report["training_folder_missing"] == str(model.data_dir)
    finally:
        moved.rename(model.data_dir)
    assert main(["evaluate", str(model.model_file), str(model.data_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["training_folder_missing"] is None


def test_a_folder_of_new_images_of_one_class_is_evaluated(model, tmp_path, capsys):
    # new photos of one class test the model as well: refused before as "only one usable class"
    other = make_image_folder(tmp_path / "new reds", classes=("red",), per_class=6, size=64, seed=3)
    assert main(["evaluate", str(model.model_file), str(other), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 6 and report["split"] == "all"
    empty = tmp_path / "empty"
    (empty / "red").mkdir(parents=True)
    assert main(["evaluate", str(model.model_file), str(empty)]) == 2
    err = capsys.readouterr().err
    assert "has no usable class" in err and "at least two" not in err and err.count("\n") == 1


def test_presplit_folder_defaults_to_val_and_prints_a_report(model, tmp_path, capsys):
    data = make_image_folder(tmp_path / "split", classes=CLASSES, per_class=2, size=64, splits=("train", "val"))
    assert main(["evaluate", str(model.model_file), str(data)]) == 0
    out = capsys.readouterr().out
    assert "Evaluated 6 images (the val split of" in out
    assert "Accuracy" in out and "Confusion matrix" in out and all(name in out for name in CLASSES)
    assert main(["evaluate", str(model.model_file), str(data), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 12


def test_user_mistakes_get_one_sentence(model, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.pt2"), str(model.data_dir)]) == 2
    assert "No model file" in capsys.readouterr().err
    assert main(["evaluate", str(model.model_file), str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    data = copy_dataset(model.data_dir, tmp_path / "data")
    assert main(["evaluate", str(model.model_file), str(data), "--split", "test"]) == 2
    assert "test split" in capsys.readouterr().err


def test_the_batch_size_changes_no_figure(model, capsys):
    reports = []
    for flags in (["--batch-size", "1", "--workers", "0"], [], ["--batch-size", "7", "--workers", "2"]):
        assert main(["evaluate", str(model.model_file), str(model.data_dir), "--json", "--split", "all", *flags]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    first = reports[0]
    assert first["num_images"] == 30
    for other in reports[1:]:
        for key in ("num_images", "confusion_matrix", "accuracy", "macro_f1", "per_class", "failed"):
            assert other[key] == first[key], key
        assert other["ece"] == pytest.approx(first["ece"], abs=1e-5)


def test_evaluate_names_the_files_the_scan_left_out(model, tmp_path, capsys):
    test_dir = copy_dataset(model.data_dir, tmp_path / "data")
    (test_dir / "red" / "notes.jpg").write_text("not an image")
    assert main(["evaluate", str(model.model_file), str(test_dir), "--json", "--split", "all"]) == 0
    out, err = capsys.readouterr()
    assert ("The dataset scan found 1 problem: 1 file left out of the evaluation (red/notes.jpg).") in err
    assert json.loads(out)["num_images"] == 3 * 10
