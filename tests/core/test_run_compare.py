"""Two runs' models on the same validation images: accuracy of each and where they disagree."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.run_folders import write_run
from tl_studio.core.errors import UserError


@dataclass
class FakeModelFile:
    """Stands in for a loaded model file: a colour rule instead of a network (the comparison is under
    test here, not the loader)."""
    classes: list
    rule: str

    def predict(self, images):
        import torch

        means = images.mean(dim=(2, 3))  # N x 3: red, green, blue
        if self.rule == "colour":  # classes are ("blue", "green", "red")
            index = means.argmax(dim=1)
            winner = torch.tensor([2, 1, 0])[index]
        else:  # always "red"
            winner = torch.full((images.shape[0],), 2)
        return torch.nn.functional.one_hot(winner, 3).float()


@pytest.fixture
def two_runs(tiny_dataset, tmp_path, monkeypatch):
    a = write_run(tmp_path / "runs" / "good", data_dir=str(tiny_dataset))
    b = write_run(tmp_path / "runs" / "always-red", data_dir=str(tiny_dataset), model="resnet18")
    opened = []

    def fake_loader(path, fmt=None):
        opened.append(path)
        return FakeModelFile(["blue", "green", "red"], "colour" if path.parent.name == "good" else "red")

    monkeypatch.setattr("tl_studio.core.model_file.load_model_file", fake_loader)
    return a, b, opened


def test_accuracy_of_each_and_the_images_where_they_disagree(two_runs, tiny_dataset):
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.run_compare import compare_on_validation

    a, b, opened = two_runs
    result = compare_on_validation(a, b)
    val = list(scan_dataset(tiny_dataset).split("val"))  # about 20 % of 3 x 12 images, split per file
    names = [scan_dataset(tiny_dataset).classes[r.label] for r in val]
    assert [p.name for p in opened] == ["model.pt2", "model.pt2"] and opened[0].parent == a
    assert result.images == len(val) and 5 <= len(val) <= 10
    assert result.accuracy_a == pytest.approx(1.0)
    assert result.accuracy_b == pytest.approx(names.count("red") / len(val))  # b always answers red
    assert sorted(d.true_label for d in result.disagreements) == sorted(n for n in names if n != "red")
    assert all(d.label_b == "red" and d.label_a == d.true_label for d in result.disagreements)
    assert result.note == ""


def test_runs_of_different_data_sets_are_refused_in_one_sentence(two_runs, tmp_path):
    from tl_studio.core.run_compare import compare_on_validation

    a, _, _ = two_runs
    other = write_run(tmp_path / "runs" / "other", data_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(UserError, match="different data sets"):
        compare_on_validation(a, other)


def test_a_run_without_a_model_file_says_so(two_runs):
    from tl_studio.core.run_compare import compare_on_validation

    a, b, _ = two_runs
    (b / "model.pt2").unlink()
    with pytest.raises(UserError, match="has no model.pt2"):
        compare_on_validation(a, b)
