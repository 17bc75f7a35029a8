"""Finding, among the images about to be evaluated, the ones the model's run trained on
(core/training_overlap.py): by content, so a sub-folder of the training folder, a copy under another name
and a duplicate across the run's own split all count; the run's validation images, a folder that is not
here and a model file that names none do not."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import make_image, make_image_folder
from tl_studio.core import feature_layout, training_overlap
from tl_studio.core.config import TrainConfig
from tl_studio.core.evaluation import Evaluation, format_report, scan_for_model
from tl_studio.core.training_overlap import Overlap, seen_in_training


@pytest.fixture
def trained(tmp_path):
    """A folder split as a run with the default settings split it, the metadata its model file would
    carry, and the run's training and validation images."""
    data = make_image_folder(tmp_path / "data", per_class=8)
    metadata = {"training_config": TrainConfig(data_dir=str(data)).to_dict()}
    scan = scan_for_model(data, metadata)
    train, val = [r.path for r in scan.split("train")], [r.path for r in scan.split("val")]
    assert train and val
    return data, metadata, train, val


def test_the_runs_validation_images_are_not_training_images(trained):
    _, metadata, _, val = trained
    assert seen_in_training(val, metadata) == Overlap(0)


def test_a_sub_folder_copies_and_renamed_files_count_by_content(trained, tmp_path):
    data, metadata, train, val = trained
    assert seen_in_training(train, metadata) == Overlap(len(train))  # the user opened the training folder itself
    elsewhere = tmp_path / "test-photos"
    elsewhere.mkdir()
    for i, path in enumerate(train[:3]):
        shutil.copy(path, elsewhere / f"copy_{i}.jpg")
    shutil.copy(val[0], elsewhere / "new.jpg")
    make_image(elsewhere / "unseen.jpg", (200, 10, 10), seed=999_999)
    overlap = seen_in_training(sorted(elsewhere.iterdir()), metadata)
    assert overlap == Overlap(3, tuple(str(elsewhere / f"copy_{i}.jpg") for i in range(3)))


def test_a_duplicate_across_the_runs_own_split_counts(trained):
    _, metadata, train, val = trained
    shutil.copy(train[0], val[0])  # the same photo twice: the split keeps equal files together, in train
    assert seen_in_training(val, metadata) == Overlap(1)


def test_a_duplicate_in_a_pre_split_validation_folder_is_a_copy(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4, splits=("train", "val"))
    metadata = {"training_config": TrainConfig(data_dir=str(data)).to_dict()}
    scan = scan_for_model(data, metadata)
    train, val = [r.path for r in scan.split("train")], [r.path for r in scan.split("val")]
    shutil.copy(train[0], val[0])
    assert seen_in_training(val, metadata) == Overlap(1, (str(val[0]),))


def test_only_files_the_size_of_a_training_image_are_read(trained, tmp_path, monkeypatch):
    _, metadata, train, _ = trained
    read = []
    real = feature_layout.file_digest
    monkeypatch.setattr(training_overlap, "file_digest", lambda path: read.append(str(path)) or real(path))
    other = make_image(tmp_path / "other.png", (10, 200, 10), size=300)  # a size no training JPEG has
    assert seen_in_training([other], metadata) == Overlap(0) and read == []
    assert seen_in_training([train[0]], metadata) == Overlap(1)
    assert str(other) not in read and read.count(str(train[0])) == 1  # read once though it is on both sides


def test_nothing_is_said_when_the_training_folder_is_not_here(trained, tmp_path):
    data, metadata, train, _ = trained
    moved = {"training_config": {**metadata["training_config"], "data_dir": str(tmp_path / "gone")}}
    assert seen_in_training(train, moved) is None
    assert seen_in_training(train, {}) is None  # a model file from elsewhere names no training folder


def _evaluation(paths, seen, copies=()) -> Evaluation:
    import numpy as np

    return Evaluation(("a", "b"), tuple(paths), np.zeros(len(paths), dtype=np.int64),
                      np.tile([[0.9, 0.1]], (len(paths), 1)).astype(np.float32), seen_in_training=seen,
                      copies_of_training=tuple(copies))


@pytest.mark.parametrize("count, seen, start", [
    (4, 4, "All 4 images evaluated here are among"), (4, 1, "1 of the 4 images evaluated here is among"),
    (1, 1, "The image evaluated here is among"), (4, 3, "3 of the 4 images evaluated here are among")])
def test_the_report_warns_when_some_images_were_trained_on(count, seen, start):
    evaluation = _evaluation([f"/x/{i}.jpg" for i in range(count)], seen)
    assert evaluation.training_note().startswith(start)
    assert "overstate" in format_report(evaluation) and evaluation.to_dict()["seen_in_training"] == seen
    for quiet in (0, None):
        assert _evaluation(["/x/0.jpg"], quiet).training_note() == ""
        assert "overstate" not in format_report(_evaluation(["/x/0.jpg"], quiet))


@pytest.mark.parametrize("copies, start", [
    (1, "1 of the 4 images evaluated here is a copy of an image this model was trained on (0.jpg), so"),
    (4, "All 4 images evaluated here are copies of images this model was trained on (0.jpg, 1.jpg, 2.jpg …)")])
def test_copies_of_training_images_are_named_and_the_way_is_to_remove_them(copies, start):
    """A duplicate in the validation split was told to "evaluate on the validation split", which it was."""
    paths = [f"/x/{i}.jpg" for i in range(4)]
    note = _evaluation(paths, copies, paths[:copies]).training_note()
    assert note.startswith(start) and note.endswith("remove the copies from the images you evaluate, or from the "
                                                    "training images and train again.")
    mixed = _evaluation(paths, 2, paths[:1]).training_note()  # one trained on where it is: the general advice
    assert "evaluate it on the validation split" in mixed and "copy" not in mixed
    assert _evaluation(paths, copies, paths[:copies]).to_dict()["copies_of_training_images"] == paths[:copies]
