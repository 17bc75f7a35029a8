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


def test_undoing_every_exclude_leaves_no_empty_excluded_folder(dataset):
    editor = DatasetEditor.for_scan(scan_dataset(dataset))
    editor.exclude(dataset / "blue" / "blue_001.jpg")
    editor.exclude(dataset / "red" / "red_001.jpg")
    editor.undo()
    assert (dataset / EXCLUDED / "blue_001.jpg").is_file()  # still excluded: the folder stays
    editor.undo()
    assert not (dataset / EXCLUDED).exists() and (dataset / "blue" / "blue_001.jpg").is_file()


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


# ---------------------------------------------------------------- a journal that came with the data set

def _crafted_journal(dataset, moves, bound_to=None):
    import json

    (dataset / JOURNAL_NAME).write_text(json.dumps({
        "version": 2, "dataset": str((bound_to or dataset).resolve()),
        "moves": [{"source": source, "destination": destination} for source, destination in moves]}))


@pytest.mark.parametrize("source, destination", [
    ("../outside/victim.txt", "red/red_000.jpg"),  # moves a dataset file out, onto the user's file's name
    ("red/red_001.jpg", "../outside/victim.txt"),  # moves the user's file into the dataset
    ("/tmp/victim.txt", "red/red_000.jpg"),
    ("C:x/victim.txt", "red/red_000.jpg"),
    ("CON/red_000.jpg", "red/red_000.jpg"),
    ("red\\..\\..\\outside\\victim.txt", "red/red_000.jpg"),
    ("link/victim.txt", "red/red_000.jpg"),  # a symlink inside the dataset that points outside
])
def test_a_crafted_journal_cannot_move_anything_outside_the_dataset(dataset, tmp_path, source, destination):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("the user's own file")
    (dataset / "link").symlink_to(outside)
    _crafted_journal(dataset, [(source, destination)])
    before = sorted(p.name for p in outside.iterdir()), sorted(p.relative_to(dataset) for p in dataset.rglob("*"))
    editor = DatasetEditor.for_scan(scan_dataset(dataset))
    assert not editor.can_undo
    with pytest.raises(UserError, match="undo list .* not used"):
        editor.undo()
    after = sorted(p.name for p in outside.iterdir()), sorted(p.relative_to(dataset) for p in dataset.rglob("*"))
    assert after == before and victim.read_text() == "the user's own file"


def test_a_journal_of_another_dataset_is_refused(dataset, tmp_path):
    other = make_image_folder(tmp_path / "other", classes=("red", "green"), per_class=1, size=32)
    _crafted_journal(dataset, [("red/red_000.jpg", "green/red_000.jpg")], bound_to=other)
    editor = DatasetEditor.for_scan(scan_dataset(dataset))
    with pytest.raises(UserError, match="written for another dataset folder"):
        editor.undo()
    assert (dataset / "green" / "green_000.jpg").is_file() and (dataset / "red" / "red_000.jpg").is_file()


def test_the_journal_stores_paths_relative_to_its_dataset(dataset):
    import json

    DatasetEditor.for_scan(scan_dataset(dataset)).move_to_class(dataset / "red" / "red_003.jpg", "blue")
    journal = json.loads((dataset / JOURNAL_NAME).read_text())
    assert journal["dataset"] == str(dataset.resolve())
    assert journal["moves"] == [{"source": "red/red_003.jpg", "destination": "blue/red_003.jpg"}]


@pytest.mark.parametrize("name", ["C:x", "..", ".", "CON", "con.txt", "nul", "COM1", "LPT9", "a/b", "a\\b",
                                  "trailing.", "trailing ", "a*b", "a?b", "a|b", "\x1b[31mred", ".hidden", ""])
def test_class_names_no_platform_accepts_are_refused(dataset, name):
    editor = DatasetEditor(dataset, presplit=False)
    with pytest.raises(UserError, match="cannot be a class folder name"):
        editor.move_to_class(dataset / "red" / "red_000.jpg", name)
    assert (dataset / "red" / "red_000.jpg").is_file()
