"""Moving images between class folders and undoing it, on temporary datasets: never deleted, never
overwritten, and the rescan does not take the _excluded folder for a class."""

from __future__ import annotations

import pytest

from tests.helpers import make_image, make_image_folder
from tl_studio.core.data import scan_dataset
from tl_studio.core.dataset_edit import EXCLUDED, JOURNAL_NAME, DatasetEditor, free_path, rescan
from tl_studio.core.errors import UserError


@pytest.fixture
def dataset(tmp_path):
    return make_image_folder(tmp_path / "data", classes=("red", "green", "blue"), per_class=4, size=32)


def test_move_then_undo_restores_the_file_byte_for_byte(dataset):
    image = dataset / "red" / "red_000.jpg"
    content = image.read_bytes()
    editor = DatasetEditor.for_scan(scan_dataset(dataset))
    move = editor.move_to_class(image, "green")
    assert move.destination == dataset / "green" / "red_000.jpg"
    assert not image.exists() and move.destination.read_bytes() == content
    back = editor.undo()
    assert back.destination == image and image.read_bytes() == content
    assert not move.destination.exists() and not editor.can_undo


def test_a_taken_name_is_never_overwritten(dataset):
    occupant = dataset / "green" / "red_000.jpg"
    make_image(occupant, (0, 255, 0), size=32, seed=99)
    occupant_bytes = occupant.read_bytes()
    editor = DatasetEditor(dataset, presplit=False)
    move = editor.move_to_class(dataset / "red" / "red_000.jpg", "green")
    assert move.destination.name == "red_000 (1).jpg"
    assert occupant.read_bytes() == occupant_bytes
    make_image(dataset / "red" / "red_000.jpg", (255, 0, 0), size=32, seed=98)  # its old place taken meanwhile
    back = editor.undo()
    assert back.destination.name == "red_000 (1).jpg" and back.destination.parent == dataset / "red"
    assert len(list((dataset / "red").iterdir())) == 5


def test_free_path_counts_up(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a (1).jpg").write_bytes(b"x")
    assert free_path(tmp_path, "a.jpg") == tmp_path / "a (2).jpg"


def test_excluded_images_leave_the_rescanned_dataset(dataset):
    scan = scan_dataset(dataset)
    editor = DatasetEditor.for_scan(scan)
    editor.exclude(dataset / "blue" / "blue_001.jpg")
    assert (dataset / EXCLUDED / "blue_001.jpg").is_file()
    fresh = rescan(scan)
    assert fresh.classes == ("blue", "green", "red")
    assert fresh.class_counts() == {"blue": 3, "green": 4, "red": 4}
    assert all(fresh.classes[r.label] == r.path.parent.name for r in fresh.records)
    assert not any(EXCLUDED in p.path for p in fresh.problems)


def test_a_presplit_image_stays_in_its_split(tmp_path):
    data = make_image_folder(tmp_path / "split", classes=("ants", "bees"), per_class=3, size=32,
                             splits=("train", "val"))
    editor = DatasetEditor.for_scan(scan_dataset(data))
    assert editor.presplit
    moved = editor.move_to_class(data / "val" / "ants" / "ants_000.jpg", "bees")
    assert moved.destination.parent == data / "val" / "bees"
    excluded = editor.exclude(data / "train" / "bees" / "bees_001.jpg")
    assert excluded.destination.parent == data / "train" / EXCLUDED
    fresh = rescan(scan_dataset(data))
    assert fresh.counts()["val"] == {"ants": 2, "bees": 4} and fresh.counts()["train"]["bees"] == 2


def test_the_journal_lets_a_new_editor_undo(dataset):
    image = dataset / "red" / "red_002.jpg"
    DatasetEditor.for_scan(scan_dataset(dataset)).exclude(image)
    assert (dataset / JOURNAL_NAME).is_file()
    later = DatasetEditor.for_scan(scan_dataset(dataset))
    assert later.can_undo
    later.undo()
    assert image.is_file()


def test_user_mistakes_are_explained(dataset):
    editor = DatasetEditor(dataset, presplit=False)
    with pytest.raises(UserError, match="already in the folder"):
        editor.move_to_class(dataset / "red" / "red_000.jpg", "red")
    with pytest.raises(UserError, match="cannot be a class folder name"):
        editor.move_to_class(dataset / "red" / "red_000.jpg", "../elsewhere")
    with pytest.raises(UserError, match="no longer"):
        editor.move_to_class(dataset / "red" / "gone.jpg", "green")
    assert editor.undo() is None
