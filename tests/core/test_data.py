"""Scanning dataset folders: classes, splits and every problem a real folder can have."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import make_image, make_image_folder
from tests.unprivileged import reachable_folder, run_without_privileges
from tl_studio.core.data import SPLITS, DatasetScan, ImageRecord, Problem, scan_dataset, verify_images
from tl_studio.core.errors import Cancelled, DatasetError, UserError
from tl_studio.core.images import NOT_AN_IMAGE, ImageLoadError, load_rgb

_unique = itertools.count(1)


def add_images(folder: Path, count: int, prefix: str = "img") -> list[Path]:
    """``count`` distinct small JPEGs (each from its own seed, so no two are identical)."""
    return [make_image(folder / f"{prefix}_{i:03d}.jpg", (120, 80, 40), size=32, seed=next(_unique))
            for i in range(count)]


def make_classes(root: Path, **counts: int) -> Path:
    for name, count in counts.items():
        add_images(root / name, count)
    return root


def problems_by_path(scan: DatasetScan) -> dict[str, Problem]:
    return {problem.path: problem for problem in scan.problems}


def split_of(scan: DatasetScan) -> dict[str, str]:
    return {scan.relative(record.path): record.split for record in scan.records}


# ---------------------------------------------------------------- classes and records

def test_each_sub_folder_is_a_class_with_its_images(tiny_dataset):
    scan = scan_dataset(tiny_dataset)
    assert scan.classes == ("blue", "green", "red")
    assert scan.class_counts() == {"blue": 12, "green": 12, "red": 12}
    assert not scan.presplit and scan.problems == ()
    blue = [record for record in scan.records if record.label == scan.classes.index("blue")]
    assert all(record.path.parent.name == "blue" and record.path.is_absolute() for record in blue)


def test_images_in_nested_folders_belong_to_their_class(tmp_path):
    make_classes(tmp_path, cats=2, dogs=2)
    add_images(tmp_path / "cats" / "2023" / "summer", 3, "nested")
    scan = scan_dataset(tmp_path)
    assert scan.class_counts() == {"cats": 5, "dogs": 2}
    assert "cats/2023/summer/nested_000.jpg" in split_of(scan)


def test_records_and_counts_agree(tiny_dataset):
    scan = scan_dataset(tiny_dataset, val_fraction=0.25, test_fraction=0.25)
    counts = scan.counts()
    assert set(counts) == set(SPLITS)
    for split in SPLITS:
        assert sum(counts[split].values()) == len(scan.split(split))
    assert all(isinstance(record, ImageRecord) for record in scan.records)
    with pytest.raises(ValueError):
        scan.split("validation")


# ---------------------------------------------------------------- the stratified split

def test_the_split_is_stratified_with_the_requested_fractions(tmp_path):
    make_classes(tmp_path, big=300, small=60)
    scan = scan_dataset(tmp_path, val_fraction=0.2, test_fraction=0.1)
    counts, totals = scan.counts(), scan.class_counts()
    for name, total in totals.items():
        # Each class on its own gets close to the requested shares (binomial spread: about sqrt(n)).
        tolerance = 2.5 * (total * 0.2 * 0.8) ** 0.5
        assert abs(counts["val"][name] - 0.2 * total) <= tolerance, counts
        assert abs(counts["test"][name] - 0.1 * total) <= tolerance, counts
    assert abs(len(scan.split("val")) / len(scan.records) - 0.2) < 0.05
    assert abs(len(scan.split("test")) / len(scan.records) - 0.1) < 0.04


def test_the_default_split_keeps_about_a_fifth_for_validation_and_no_test(tiny_dataset):
    counts = scan_dataset(tiny_dataset).counts()
    assert all(1 <= count <= 5 for count in counts["val"].values()), counts  # 12 images a class
    assert counts["test"] == {"blue": 0, "green": 0, "red": 0}


def test_every_class_with_two_images_gets_a_validation_image(tmp_path):
    make_classes(tmp_path, one=1, two=2, three=3, many=40)
    for seed in range(5):
        counts = scan_dataset(tmp_path, val_fraction=0.05, test_fraction=0.05, seed=seed).counts()
        assert counts["val"]["one"] == 0 and counts["train"]["one"] == 1
        assert counts["val"]["two"] == 1 and counts["train"]["two"] == 1 and counts["test"]["two"] == 0
        assert (counts["val"]["three"], counts["test"]["three"], counts["train"]["three"]) == (1, 1, 1)
        assert counts["val"]["many"] >= 1 and counts["test"]["many"] >= 1 and counts["train"]["many"] >= 30


def test_removing_or_moving_one_image_leaves_every_other_image_in_its_split(tmp_path):
    """A split keyed by file, not by position: the user fixes one label and nothing else moves."""
    make_classes(tmp_path, cats=40, dogs=30)
    before = split_of(scan_dataset(tmp_path, val_fraction=0.25, test_fraction=0.1))
    for relative in sorted(before)[::7]:  # files of both classes and all three splits
        (tmp_path / relative).rename(tmp_path / "aside.jpg")
        after = split_of(scan_dataset(tmp_path, val_fraction=0.25, test_fraction=0.1))
        assert after == {path: split for path, split in before.items() if path != relative}
        moved_to = "dogs" if relative.startswith("cats/") else "cats"
        (tmp_path / "aside.jpg").rename(tmp_path / moved_to / "moved.jpg")
        after = split_of(scan_dataset(tmp_path, val_fraction=0.25, test_fraction=0.1))
        del after[f"{moved_to}/moved.jpg"]
        assert after == {path: split for path, split in before.items() if path != relative}
        (tmp_path / moved_to / "moved.jpg").rename(tmp_path / relative)
    assert {"train", "val", "test"} == set(before.values())


def test_the_split_is_the_same_on_every_run_and_changes_with_the_seed(tiny_dataset, tmp_path):
    first, again = scan_dataset(tiny_dataset, seed=7), scan_dataset(tiny_dataset, seed=7)
    assert split_of(first) == split_of(again)
    # The same files copied elsewhere (created in another order) split the same way.
    copy = tmp_path / "copy"
    for path in sorted(tiny_dataset.rglob("*.jpg"), reverse=True):
        (copy / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy / path.parent.name / path.name)
    assert split_of(scan_dataset(copy, seed=7)) == split_of(first)
    assert split_of(scan_dataset(tiny_dataset, seed=8)) != split_of(first)


def test_adding_images_to_one_class_does_not_reshuffle_another(tmp_path):
    make_classes(tmp_path, cats=10, dogs=10)
    before = {path: split for path, split in split_of(scan_dataset(tmp_path)).items() if path.startswith("dogs/")}
    add_images(tmp_path / "cats", 5, "more")
    after = {path: split for path, split in split_of(scan_dataset(tmp_path)).items() if path.startswith("dogs/")}
    assert after == before


@pytest.mark.parametrize("val, test", [(0, 0), (1, 0), (-0.1, 0), (0.2, -0.1), (0.5, 0.5), (0.7, 0.4)])
def test_invalid_fractions_are_refused_with_a_clear_message(tiny_dataset, val, test):
    with pytest.raises(UserError, match="fraction"):
        scan_dataset(tiny_dataset, val_fraction=val, test_fraction=test)


# ---------------------------------------------------------------- pre-split folders

@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Val"])
def test_a_train_val_folder_is_pre_split_and_its_split_respected(tmp_path, val_name):
    make_classes(tmp_path / "train", ants=6, bees=4)
    make_classes(tmp_path / val_name, ants=3, bees=2)
    scan = scan_dataset(tmp_path, val_fraction=0.5)
    assert scan.presplit and scan.classes == ("ants", "bees")
    assert scan.counts()["train"] == {"ants": 6, "bees": 4}
    assert scan.counts()["val"] == {"ants": 3, "bees": 2}
    assert all(path.split("/")[0] == ("train" if split == "train" else val_name)
               for path, split in split_of(scan).items())


def test_a_test_folder_is_respected_too(tmp_path):
    for split, count in (("train", 5), ("val", 2), ("test", 3)):
        make_classes(tmp_path / split, ants=count, bees=count)
    counts = scan_dataset(tmp_path, test_fraction=0.5).counts()
    assert counts == {"train": {"ants": 5, "bees": 5}, "val": {"ants": 2, "bees": 2}, "test": {"ants": 3, "bees": 3}}


def test_train_and_test_folders_without_val_draw_validation_from_train(tmp_path):
    make_classes(tmp_path / "train", ants=10, bees=10)
    make_classes(tmp_path / "test", ants=4, bees=4)
    scan = scan_dataset(tmp_path, val_fraction=0.2)
    assert scan.presplit
    counts = scan.counts()
    assert counts["test"] == {"ants": 4, "bees": 4}
    assert all(counts["val"][name] >= 1 and counts["val"][name] + counts["train"][name] == 10
               for name in ("ants", "bees")), counts
    assert all(path.startswith("train/") for path, split in split_of(scan).items() if split == "val")


def test_a_class_in_only_some_splits_is_still_a_class_and_reported(tmp_path):
    make_classes(tmp_path / "train", ants=4, bees=4)
    make_classes(tmp_path / "val", ants=2, bees=2, wasps=2)
    scan = scan_dataset(tmp_path)
    assert scan.classes == ("ants", "bees", "wasps")
    assert scan.counts()["train"]["wasps"] == 0
    wasps = problems_by_path(scan)["train/wasps"]  # the folder that lacks it, where its images would go
    assert wasps.kind == "missing_split" and "no images in the train folder" in wasps.reason
    assert scan.imbalance_ratio() == float("inf")


def test_a_class_missing_from_val_is_named_by_the_val_folder(tmp_path):
    make_classes(tmp_path / "Train", ants=4, bees=4, birds=3)
    make_classes(tmp_path / "valid", ants=2, bees=2)
    birds = problems_by_path(scan_dataset(tmp_path))["valid/birds"]  # was train/birds, which is not missing
    assert birds.kind == "missing_split" and "no images in the validation folder" in birds.reason


def test_classes_named_train_and_test_are_classes_not_split_folders(tmp_path):
    add_images(tmp_path / "train", 3)  # vehicles: a train, a test rig, a plane
    add_images(tmp_path / "test", 3)
    add_images(tmp_path / "plane", 3)
    scan = scan_dataset(tmp_path)
    assert not scan.presplit and scan.classes == ("plane", "test", "train") and scan.problems == ()


def test_other_folders_beside_the_splits_are_reported(tmp_path):
    make_classes(tmp_path / "train", ants=2, bees=2)
    make_classes(tmp_path / "val", ants=2, bees=2)
    add_images(tmp_path / "extras", 2)
    scan = scan_dataset(tmp_path)
    assert problems_by_path(scan)["extras"].kind == "ignored_folder"
    assert len(scan.records) == 8


def test_the_real_hymenoptera_dataset(hymenoptera):
    scan = scan_dataset(hymenoptera)
    counts = scan.counts()
    assert scan.presplit and scan.classes == ("ants", "bees")
    assert counts["train"] == {"ants": 124, "bees": 121} and len(scan.split("train")) == 245
    assert counts["val"] == {"ants": 70, "bees": 83} and len(scan.split("val")) == 153
    assert scan.problems == ()


# ---------------------------------------------------------------- problems with files

def test_bad_files_are_reported_with_a_reason_and_left_out(tmp_path):
    make_classes(tmp_path, cats=3, dogs=3)
    (tmp_path / "cats" / "zero.jpg").touch()
    (tmp_path / "cats" / "notes.txt").write_text("not a picture")
    (tmp_path / "dogs" / "fake.png").write_text("<html>a web page saved as png</html>")
    good = make_image(tmp_path / "dogs" / "whole.jpg", (1, 2, 3), seed=next(_unique)).read_bytes()
    (tmp_path / "dogs" / "cut.jpg").write_bytes(good[: len(good) // 2])
    scan = scan_dataset(tmp_path)
    problems = problems_by_path(scan)
    assert {path: problem.kind for path, problem in problems.items()} == {
        "cats/zero.jpg": "empty_file", "cats/notes.txt": "not_image", "dogs/fake.png": "not_image",
        "dogs/cut.jpg": "truncated"}
    assert all(problem.reason and "\n" not in problem.reason for problem in scan.problems)
    assert scan.class_counts() == {"cats": 3, "dogs": 4}


def test_images_over_the_pixel_limit_are_reported(tmp_path):
    make_classes(tmp_path, cats=2, dogs=2)
    Image.new("RGB", (300, 300)).save(tmp_path / "cats" / "huge.png")
    scan = scan_dataset(tmp_path, max_pixels=200 * 200)
    assert problems_by_path(scan)["cats/huge.png"].kind == "too_large"
    assert scan.class_counts()["cats"] == 2
    assert "cats/huge.png" not in problems_by_path(scan_dataset(tmp_path))  # the default limit is far higher


def test_unreadable_files_and_folders_are_reported(tmp_path, monkeypatch):
    make_classes(tmp_path, cats=3, dogs=2)
    locked = tmp_path / "cats" / "img_000.jpg"
    real_open = open

    def open_unless_locked(file, *args, **kwargs):  # root can read anything, so deny it here
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("tl_studio.core.images.open", open_unless_locked, raising=False)
    scan = scan_dataset(tmp_path)
    assert problems_by_path(scan)["cats/img_000.jpg"].kind == "unreadable"
    assert "permission denied" in problems_by_path(scan)["cats/img_000.jpg"].reason


def test_a_folder_without_permission_is_reported():
    with reachable_folder() as folder:
        make_classes(folder, cats=2, dogs=2)
        add_images(folder / "cats" / "private", 2)
        for path in folder.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (folder / "cats" / "private").chmod(0)

        def check():
            problems = problems_by_path(scan_dataset(folder))
            assert problems["cats/private"].kind == "unreadable", problems

        run_without_privileges(check)


def test_verify_images_finds_damage_the_quick_scan_cannot_see(tmp_path):
    make_classes(tmp_path, cats=3, dogs=3)
    png = tmp_path / "cats" / "damaged.png"
    Image.effect_noise((48, 48), 60).convert("RGB").save(png)
    damaged = bytearray(png.read_bytes())
    start = damaged.index(b"IDAT") + 10
    damaged[start:start + 30] = bytes(byte ^ 0x55 for byte in damaged[start:start + 30])
    png.write_bytes(bytes(damaged))
    scan = scan_dataset(tmp_path)
    # The header check lets it through: a usable record, no problem, although it cannot be decoded.
    assert scan.problems == () and "cats/damaged.png" in split_of(scan)
    with pytest.raises(ImageLoadError):
        load_rgb(png)
    calls = []
    problems = verify_images(scan, progress=lambda done, total: calls.append((done, total)))
    assert [(problem.path, problem.kind) for problem in problems] == [("cats/damaged.png", "corrupt")]
    assert calls[-1] == (len(scan.records), len(scan.records))
    cleaned = scan.with_problems(problems)
    assert cleaned.class_counts()["cats"] == 3 and cleaned.problems[-1] == problems[0]


# ---------------------------------------------------------------- problems with classes and layout

def test_empty_and_tiny_classes_are_reported(tmp_path):
    make_classes(tmp_path, cats=3, dogs=3, solo=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jpg").write_text("nope")
    scan = scan_dataset(tmp_path)
    problems = problems_by_path(scan)
    assert scan.classes == ("cats", "dogs", "solo")  # solo has an image; empty and broken have none
    assert [p.reason for p in scan.problems if p.path == "empty"] == ["Empty class folder: it holds no files"]
    assert problems["broken"].kind == "empty_class" and "no usable images" in problems["broken"].reason
    assert problems["broken/a.jpg"].kind == "not_image"
    assert problems["solo"].kind == "small_class" and "only 1 usable image" in problems["solo"].reason
    assert scan.counts()["train"]["solo"] == 1


def test_hidden_and_system_files_are_ignored_silently(tmp_path):
    make_classes(tmp_path, cats=2, dogs=2)
    for junk in ("cats/.DS_Store", "cats/Thumbs.db", "dogs/desktop.ini", "dogs/._img_000.jpg", ".DS_Store"):
        (tmp_path / junk).write_bytes(b"\0\x05\x16\x07 system junk")
    add_images(tmp_path / "cats" / ".thumbnails", 2)
    add_images(tmp_path / "__MACOSX" / "cats", 2)
    add_images(tmp_path / ".git", 1)
    scan = scan_dataset(tmp_path)
    assert scan.problems == ()
    assert scan.classes == ("cats", "dogs") and len(scan.records) == 4


def test_files_in_the_root_are_reported_when_they_are_or_are_named_like_images(tmp_path):
    make_classes(tmp_path, cats=2, dogs=2)
    add_images(tmp_path, 1, "stray")
    (tmp_path / "README.txt").write_text("my dataset")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")  # Pillow writes PDFs but opens none
    (tmp_path / "empty.JPG").write_bytes(b"")  # named like an image: listed too
    scan = scan_dataset(tmp_path)
    assert sorted(problems_by_path(scan)) == ["empty.JPG", "stray_000.jpg"]
    assert {problem.kind for problem in scan.problems} == {"outside_class"}
    assert len(scan.records) == 4


def test_symlink_loops_end_and_linked_files_are_followed(tmp_path):
    make_classes(tmp_path / "data", cats=2, dogs=2)
    outside = add_images(tmp_path / "elsewhere", 1, "linked")[0]
    (tmp_path / "data" / "cats" / "loop").symlink_to(tmp_path / "data" / "cats", target_is_directory=True)
    (tmp_path / "data" / "dogs" / "up").symlink_to(tmp_path / "data", target_is_directory=True)
    (tmp_path / "data" / "dogs" / "linked.jpg").symlink_to(outside)
    (tmp_path / "data" / "dogs" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    scan = scan_dataset(tmp_path / "data")
    assert scan.class_counts() == {"cats": 2, "dogs": 3}
    assert list(problems_by_path(scan)) == ["dogs/gone.jpg"]



def test_a_loop_of_file_links_is_reported_not_a_crash(tmp_path):
    make_classes(tmp_path, cats=2, dogs=2)
    (tmp_path / "cats" / "x1.jpg").symlink_to("x2.jpg")
    (tmp_path / "cats" / "x2.jpg").symlink_to("x1.jpg")
    (tmp_path / "x3.jpg").symlink_to("x3.jpg")  # in the root too, where unlabelled images are looked for
    scan = scan_dataset(tmp_path)
    problems = problems_by_path(scan)
    assert sorted(problems) == ["cats/x1.jpg", "cats/x2.jpg", "x3.jpg"]
    assert all(problem.kind == "unreadable" and "Link loop" in problem.reason for problem in problems.values())
    assert scan.class_counts() == {"cats": 2, "dogs": 2}


@pytest.mark.parametrize("name", ["...", "....", " ", "cats.", "ca\x1b[31mts"])
def test_a_folder_whose_name_cannot_be_a_class_is_reported(tmp_path, name):
    make_classes(tmp_path, cats=2, dogs=2)
    add_images(tmp_path / name, 3)
    scan = scan_dataset(tmp_path)
    assert scan.classes == ("cats", "dogs") and len(scan.records) == 4
    assert [(problem.path, problem.kind) for problem in scan.problems] == [(name, "bad_class_name")]
    assert "cannot be a class" in scan.problems[0].reason


# ---------------------------------------------------------------- duplicates

def test_duplicates_across_train_and_val_are_reported(tmp_path):
    train_ants = add_images(tmp_path / "train" / "ants", 3)
    add_images(tmp_path / "train" / "bees", 3)
    add_images(tmp_path / "val" / "ants", 1)
    add_images(tmp_path / "val" / "bees", 1)
    shutil.copy(train_ants[0], tmp_path / "val" / "ants" / "copy.jpg")
    shutil.copy(train_ants[1], tmp_path / "train" / "ants" / "same_split_copy.jpg")  # harmless
    scan = scan_dataset(tmp_path)
    problems = problems_by_path(scan)
    assert list(problems) == ["val/ants/copy.jpg"]
    assert problems["val/ants/copy.jpg"].kind == "duplicate"
    assert "train/ants/img_000.jpg" in problems["val/ants/copy.jpg"].reason
    assert len(scan.records) == 10  # duplicates are reported, not removed


def test_the_same_image_in_two_classes_is_reported(tmp_path):
    cats = make_classes(tmp_path, cats=3, dogs=3)
    shutil.copy(cats / "cats" / "img_001.jpg", tmp_path / "dogs" / "looks_like_a_dog.jpg")
    problem = problems_by_path(scan_dataset(tmp_path))["dogs/looks_like_a_dog.jpg"]
    assert problem.kind == "duplicate" and "two labels" in problem.reason


def test_the_split_keeps_identical_files_together(tmp_path):
    originals = add_images(tmp_path / "cats", 10) + add_images(tmp_path / "dogs", 10)
    for path in originals:
        shutil.copy(path, path.with_name("copy_of_" + path.name))
    scan = scan_dataset(tmp_path, val_fraction=0.3)
    splits = split_of(scan)
    assert scan.problems == ()
    assert all(splits[f"{p.parent.name}/{p.name}"] == splits[f"{p.parent.name}/copy_of_{p.name}"] for p in originals)
    # Pairs of identical files are held out together: an even number of val images in each class.
    assert all(count % 2 == 0 and count >= 2 for count in scan.counts()["val"].values()), scan.counts()


def test_duplicates_of_larger_files_are_found_by_hashing(tmp_path):
    make_classes(tmp_path / "train", ants=2, bees=2)
    make_classes(tmp_path / "val", ants=1, bees=1)
    big = tmp_path / "train" / "ants" / "big.png"
    Image.effect_noise((200, 200), 80).convert("RGB").save(big)  # over 64 KB: not read whole by the check
    assert big.stat().st_size > 64 * 1024
    shutil.copy(big, tmp_path / "val" / "ants" / "big_copy.png")
    near_copy = bytearray(big.read_bytes())  # same size, same start and end, one byte different
    near_copy[len(near_copy) // 2] ^= 1
    (tmp_path / "val" / "bees" / "near_copy.png").write_bytes(bytes(near_copy))
    problems = problems_by_path(scan_dataset(tmp_path))
    assert problems["val/ants/big_copy.png"].kind == "duplicate"
    assert "val/bees/near_copy.png" not in problems


# ---------------------------------------------------------------- errors, progress, cancel

def test_a_missing_folder_or_a_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "nowhere")
    (tmp_path / "file.jpg").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "file.jpg")


def test_fewer_than_two_usable_classes_is_a_dataset_error_with_a_way_forward(tmp_path):
    make_classes(tmp_path / "project" / "images", cats=2, dogs=2)
    with pytest.raises(DatasetError) as error:
        scan_dataset(tmp_path / "project")
    assert "at least two" in str(error.value) and str(tmp_path / "project" / "images") in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no usable class"):
        scan_dataset(tmp_path / "empty")


def test_the_folder_of_one_class_given_for_the_dataset_is_named_so(tmp_path):
    """hymenoptera/train/ants: "none of the 124 files in its class folders could be used (the first, …:
    Not inside a class folder …)" said there were class folders and that there were none."""
    make_classes(tmp_path / "pets", cats=3, dogs=2)
    with pytest.raises(DatasetError) as error:
        scan_dataset(tmp_path / "pets" / "cats")
    assert str(error.value) == (f"{tmp_path / 'pets' / 'cats'} has no usable class, and a dataset needs at least "
                                f"two: its 3 images lie in it, not in class folders; if it is one class's folder, "
                                f"give the folder above it ({tmp_path / 'pets'}), else put each class in a "
                                "sub-folder of its own.")


def test_class_folders_whose_every_file_is_refused_say_why_not_how_to_lay_out_folders(tiny_dataset):
    # every image over the pixel limit: "put the images of each class in their own sub-folder" was
    # advice on folders that were already right
    with pytest.raises(DatasetError) as error:
        scan_dataset(tiny_dataset, max_pixels=100)
    message = str(error.value)
    assert re.search(r"none of the \d+ files in its class folders could be used \(the first, ", message)
    assert "over the limit of 100 pixels" in message
    assert "sub-folder" not in message


def test_a_folder_whose_one_class_file_is_refused_does_not_call_it_its_only_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("notes")
    (tmp_path / "readme.txt").write_text("about")
    with pytest.raises(DatasetError) as error:
        scan_dataset(tmp_path)
    assert "the one file in its class folders, sub/a.txt, could not be used" in str(error.value)


def test_a_class_left_with_no_file_under_the_pixel_limit_is_said_as_the_reason(tmp_path):
    from PIL import Image

    for name, size, count in (("ants", (4, 4), 3), ("bees", (40, 40), 3)):
        (tmp_path / name).mkdir()
        for index in range(count):
            Image.new("RGB", size, (index * 40, 90, 30)).save(tmp_path / name / f"{index}.png")
    with pytest.raises(DatasetError) as error:
        scan_dataset(tmp_path, max_pixels=100)  # the 4 x 4 ants pass, the 40 x 40 bees do not
    message = str(error.value)
    assert "only one usable class (ants)" in message and "sub-folder" not in message
    assert "the files of the other class folders could not be used (3 files; the first, bees/" in message
    assert "over the limit of 100 pixels" in message


def test_progress_is_reported_and_ends_complete(tiny_dataset):
    calls = []
    scan_dataset(tiny_dataset, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (36, 36)
    assert any(total is None for _, total in calls)  # while listing, the total is unknown


def test_cancel_stops_the_scan(tiny_dataset):
    asked = []

    def cancel_after_ten_files() -> bool:
        asked.append(1)
        return len(asked) > 10

    with pytest.raises(Cancelled):
        scan_dataset(tiny_dataset, cancel=cancel_after_ten_files)
    assert len(asked) == 11


def test_cancel_stops_verification(tiny_dataset):
    scan = scan_dataset(tiny_dataset)
    with pytest.raises(Cancelled):
        verify_images(scan, cancel=lambda: True)



def test_held_verification_waits_then_finishes_and_can_be_cancelled_while_held(tiny_dataset):
    scan = scan_dataset(tiny_dataset)
    hold = threading.Event()
    hold.set()  # a training run is active
    progress, result = [], []
    worker = threading.Thread(target=lambda: result.append(
        verify_images(scan, progress=lambda done, total: progress.append(done), hold=hold)))
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive() and not progress  # no image decoded while held
    hold.clear()  # the run ended
    worker.join(timeout=30)
    assert result == [[]] and progress[-1] == len(scan.records)

    hold.set()
    cancelled = threading.Event()
    errors = []

    def verify_then_record():
        try:
            verify_images(scan, cancel=cancelled.is_set, hold=hold)
        except Cancelled as error:
            errors.append(error)

    worker = threading.Thread(target=verify_then_record)
    worker.start()
    time.sleep(0.2)
    cancelled.set()
    worker.join(timeout=5)
    assert not worker.is_alive() and len(errors) == 1

# ---------------------------------------------------------------- the report

def test_to_dict_is_json_with_relative_problem_paths(tmp_path):
    make_classes(tmp_path, cats=9, dogs=2)
    (tmp_path / "cats" / "bad.jpg").write_text("x")
    report = json.loads(json.dumps(scan_dataset(tmp_path).to_dict()))
    assert report["classes"] == [{"name": "cats", "label": 0, "count": 9}, {"name": "dogs", "label": 1, "count": 2}]
    assert report["num_images"] == 11 and report["presplit"] is False and report["root"] == str(tmp_path)
    assert {name: sum(report["splits"][split][name] for split in SPLITS) for name in ("cats", "dogs")} == \
        {"cats": 9, "dogs": 2}
    assert report["splits"]["val"]["dogs"] == 1 and report["splits"]["test"] == {"cats": 0, "dogs": 0}
    assert report["problems"] == [{"path": "cats/bad.jpg", "reason": NOT_AN_IMAGE, "kind": "not_image"}]
    assert report["imbalance_ratio"] == report["splits"]["train"]["cats"] / report["splits"]["train"]["dogs"] > 6


def test_the_excluded_folder_is_not_a_class(tmp_path):
    """Images set aside from the Evaluate step live in _excluded/; a rescan must not learn them."""
    from tl_studio.core.data import EXCLUDED_FOLDER, scan_dataset
    from tests.helpers import make_image_folder

    data = make_image_folder(tmp_path / "d", classes=("red", "blue"), per_class=4)
    make_image_folder(data, classes=(EXCLUDED_FOLDER,), per_class=2, seed=3)
    scan = scan_dataset(data)
    assert scan.classes == ("blue", "red") and len(scan.records) == 8
    assert not scan.problems


def test_a_split_far_from_the_asked_share_is_said_with_the_way_out(tmp_path):
    """The per-file split leaves a small class within about sqrt(n) of its share; when a class lands far
    from it (20 images at 30 %: 10 of them for validation), the scan says so and what to do."""
    make_classes(tmp_path, ants=20, bees=20)
    notes = {}
    for seed in range(40):
        scan = scan_dataset(tmp_path, val_fraction=0.3, seed=seed)
        val = scan.counts()["val"]
        far = any(abs(count - 6) >= 3 for count in val.values())
        notes[seed] = scan.uneven_split()
        assert (notes[seed] is not None) == far, (seed, val)
    said = next(note for note in notes.values() if note)
    assert "where 30% is about 6" in said and "Another seed gives another split." in said
    assert any(note is None for note in notes.values())  # most seeds land near the share
    pre = make_classes(tmp_path / "pre" / "train", a=20, b=20).parent
    make_classes(pre / "val", a=1, b=19)
    assert scan_dataset(pre).uneven_split() is None  # the user's own folders are the split


def test_an_unreadable_class_folder_is_not_also_called_empty_and_an_unreadable_dataset_says_so():
    with reachable_folder() as folder:
        dataset, locked = folder / "dataset", folder / "locked"
        make_classes(dataset, cats=2, dogs=2, birds=2)
        make_classes(locked, cats=2, dogs=2)
        for path in folder.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (dataset / "birds").chmod(0)
        locked.chmod(0)

        def check():
            scan = scan_dataset(dataset)
            assert [(p.path, p.kind) for p in scan.problems] == [("birds", "unreadable")], scan.problems
            with pytest.raises(DatasetError, match=r"cannot be read \(permission denied\); give yourself"):
                scan_dataset(locked)

        run_without_privileges(check)


def test_a_very_small_image_is_kept_and_said(tmp_path):
    """A 10 x 10 px file in a class folder was trained on (and predicted at 99.7 %) without a word."""
    from tl_studio.core.problem_summary import files_left_out, problems_sentence

    data = make_image_folder(tmp_path / "data", classes=("ants", "bees"), per_class=3, size=64)
    make_image(data / "ants" / "tiny.jpg", (200, 10, 10), size=10)
    make_image(data / "bees" / "cifar.png", (10, 10, 200), size=32)  # CIFAR's size is not tiny
    scan = scan_dataset(data)
    assert [(p.path, p.kind) for p in scan.problems] == [("ants/tiny.jpg", "tiny_image")]
    assert "Very small image (10 x 10 px)" in scan.problems[0].reason
    assert len(scan.records) == 8 and files_left_out(scan.problems) == 0
    assert "1 very small image, kept (ants/tiny.jpg)" in problems_sentence(scan.problems)


def test_a_folder_of_one_class_folder_says_to_give_the_folder_inside(tmp_path):
    """The hint said "scan .../ants instead" to a user running train, advise or the app."""
    from tl_studio.core.errors import DatasetError

    only = tmp_path / "only"
    make_image_folder(only, classes=("ants",), per_class=3)
    with pytest.raises(DatasetError, match=rf"if the class folders are inside ants/, give {only / 'ants'} instead"):
        scan_dataset(only)
