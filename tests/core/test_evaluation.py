"""Evaluation: the metrics against hand computation, the rankings, and a real model file's figures against
plain torch on the same images."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluation_helpers import (CLASSES, copy_dataset, hand_metrics, one_torch_thread, plain_torch_probabilities,
                                     tiny_model)
from tests.helpers import make_image
from tl_studio.core import eval_metrics
from tl_studio.core.errors import UserError
from tl_studio.core.evaluation import Evaluation, EvaluationSet, evaluate, evaluation_set, scan_for_model

# 6 images, 3 classes. Rows: probabilities; the comment says true -> predicted.
PROBABILITIES = np.array([
    [0.90, 0.05, 0.05],  # 0 -> 0
    [0.40, 0.50, 0.10],  # 0 -> 1 (a hesitant mistake)
    [0.05, 0.90, 0.05],  # 1 -> 1
    [0.97, 0.02, 0.01],  # 1 -> 0 (a confident mistake)
    [0.10, 0.20, 0.70],  # 2 -> 2
    [0.30, 0.10, 0.60],  # 2 -> 2
])
TRUE = np.array([0, 0, 1, 1, 2, 2])


def small_evaluation() -> Evaluation:
    paths = tuple(f"/data/{i}.jpg" for i in range(len(TRUE)))
    return Evaluation(("a", "b", "c"), paths, TRUE, PROBABILITIES)


def test_metrics_equal_a_hand_computation():
    evaluation = small_evaluation()
    # Worked out on paper: a: P=1/2 R=1/2, b: P=1/2 R=1/2, c: P=1 R=1.
    assert evaluation.confusion_matrix().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert evaluation.accuracy == pytest.approx(4 / 6)
    metrics = evaluation.per_class()
    assert [(m.precision, m.recall, m.f1, m.support) for m in metrics] == \
        [pytest.approx((0.5, 0.5, 0.5, 2)), pytest.approx((0.5, 0.5, 0.5, 2)), pytest.approx((1.0, 1.0, 1.0, 2))]
    assert evaluation.macro_f1 == pytest.approx(2 / 3)
    assert hand_metrics(TRUE, evaluation.predicted, 3)["macro_f1"] == pytest.approx(evaluation.macro_f1)


def test_a_class_absent_from_the_set_does_not_count_in_macro_f1():
    matrix = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
    metrics = eval_metrics.per_class_metrics(matrix, ["a", "b", "c"])
    assert metrics[2].support == 0 and metrics[2].f1 == 0.0
    assert eval_metrics.macro_f1(matrix, metrics) == pytest.approx((metrics[0].f1 + metrics[1].f1) / 2)
    # nor when the model answers it for some images (a folder of ants and bees, a model that knows flowers):
    # those mistakes lower ants' recall already; counted as an F1 of 0 they made 95 % accuracy a 0.64
    wrongly = np.array([[60, 2, 3], [1, 80, 0], [0, 0, 0]])
    metrics = eval_metrics.per_class_metrics(wrongly, ["ants", "bees", "flowers"])
    assert eval_metrics.macro_f1(wrongly, metrics) == pytest.approx((metrics[0].f1 + metrics[1].f1) / 2)
    assert eval_metrics.macro_f1(wrongly, metrics) > 0.95 and eval_metrics.absent_classes(metrics) == ["flowers"]


def test_cell_top_losses_and_likely_mislabelled():
    evaluation = small_evaluation()
    assert evaluation.cell(1, 0) == [3]
    assert evaluation.cell(2, 2) == [5, 4]  # the higher loss first (0.6 < 0.7 for the true class)
    assert evaluation.top_losses() == [3, 1]  # 97 % sure and wrong comes before 50 % sure and wrong
    suspects = evaluation.likely_mislabelled()
    assert suspects[0].index == 3 and suspects[0].suggested == 0  # labelled b, the model says a
    assert suspects[0].given_probability == pytest.approx(0.02)
    assert 2 not in {s.index for s in suspects}  # confidently right: not a suspect


def test_a_class_the_model_barely_knows_is_not_suggested_for_images_it_answers_right():
    """A class of one training image gets 0.005 of every image, its own too: each image was above that
    class's threshold, and 81 of 122 (right answers among them) were offered as that class."""
    true = np.array([0] * 10 + [1] * 10 + [2])
    probabilities = np.array([[0.9, 0.095, 0.005]] * 10 + [[0.1, 0.895, 0.005]] * 10 + [[0.95, 0.045, 0.005]])
    probabilities[0] = [0.095, 0.9, 0.005]  # labelled a, the model sure of b: a real suspect, as is the c
    suspects = eval_metrics.likely_mislabelled(probabilities, true)
    assert [(s.index, s.suggested) for s in suspects] == [(20, 0), (0, 1)]


def test_metrics_csv_has_every_class_and_the_totals():
    lines = small_evaluation().metrics_csv().splitlines()
    assert lines[0] == "class,precision,recall,f1,support"
    assert [line.split(",")[0] for line in lines[1:]] == ["a", "b", "c", "accuracy", "macro avg"]


def test_class_names_that_look_like_formulas_are_escaped_in_the_metrics_csv():
    evaluation = Evaluation(("=cmd|' /C calc'!A0", "+b", "@c"), small_evaluation().paths, TRUE, PROBABILITIES)
    cells = [line.split(",")[0] for line in evaluation.metrics_csv().splitlines()[1:4]]
    assert all(cell.lstrip('"').startswith("'") for cell in cells)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


def test_evaluate_equals_plain_torch(model):
    from tl_studio.core.export import load_model_file

    model_file = load_model_file(model.model_file)
    scan = scan_for_model(model.data_dir, model_file.metadata)
    chosen = evaluation_set(scan, "all", model_file.classes)
    result = evaluate(model_file.predict, chosen)
    expected = plain_torch_probabilities(model.model_file, chosen.paths)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)
    reference = hand_metrics(np.array(chosen.labels), expected.argmax(axis=1), len(CLASSES))
    assert result.confusion_matrix().tolist() == reference["matrix"]
    assert result.accuracy == pytest.approx(reference["accuracy"])
    assert result.macro_f1 == pytest.approx(reference["macro_f1"])
    assert [m.support for m in result.per_class()] == [10, 10, 10]


def test_batches_change_no_figure(model, tmp_path):
    # The metrics of a real model file (efficientnet_lite0) in batches of 32, decoded by a loader process,
    # against one image at a time and whole, as evaluate ran before batching; a broken file among them.
    from tl_studio.core.export import load_model_file
    from tl_studio.core.inference import plan_for

    model_file = load_model_file(model.model_file)
    chosen = evaluation_set(scan_for_model(model.data_dir, model_file.metadata), "all", model_file.classes)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    chosen = EvaluationSet((*chosen.paths[:7], broken, *chosen.paths[7:]), (*chosen.labels[:7], 0, *chosen.labels[7:]),
                           chosen.classes)
    before = evaluate(model_file.predict, chosen)
    plan = plan_for(model_file, 32)
    assert plan.batched, plan.note
    after = evaluate(model_file.predict, chosen, plan=plan, workers=1)
    kept = [(str(path), label) for path, label in zip(chosen.paths, chosen.labels) if path != broken]
    assert list(zip(after.paths, after.true.tolist())) == list(zip(before.paths, before.true.tolist())) == kept
    assert after.failed == before.failed and [path for path, _ in after.failed] == [str(broken)]
    np.testing.assert_allclose(after.probabilities, before.probabilities, atol=1e-5)
    assert after.confusion_matrix().tolist() == before.confusion_matrix().tolist()
    assert (after.accuracy, after.macro_f1) == (before.accuracy, before.macro_f1)
    assert after.ece == pytest.approx(before.ece, abs=1e-5)


def test_val_split_is_the_split_the_model_was_trained_against(model):
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.data import scan_dataset

    metadata = {"training_config": TrainConfig(val_fraction=0.3, seed=7).to_dict()}
    scan = scan_for_model(model.data_dir, metadata)
    same = scan_dataset(model.data_dir, val_fraction=0.3, seed=7)
    assert scan.split("val") == same.split("val")


def test_unknown_classes_are_skipped_and_unreadable_files_reported(model, tmp_path):
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.export import load_model_file

    data = copy_dataset(model.data_dir, tmp_path / "data")
    for i in range(3):
        make_image(data / "purple" / f"p{i}.jpg", (140, 50, 160), seed=i)
    model_file = load_model_file(model.model_file)
    chosen = evaluation_set(scan_dataset(data), "all", model_file.classes)
    assert chosen.unknown == {"purple": 3} and "purple (3)" in chosen.describe_unknown()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    mixed = EvaluationSet((chosen.paths[0], broken, chosen.paths[-1]), (chosen.labels[0], 0, chosen.labels[-1]),
                          chosen.classes)
    result = evaluate(model_file.predict, mixed)
    assert len(result.paths) == 2 and [path for path, _ in result.failed] == [str(broken)]


def test_a_folder_with_none_of_the_models_classes_is_a_user_error(tmp_path):
    from tests.helpers import make_image_folder
    from tl_studio.core.data import scan_dataset

    scan = scan_dataset(make_image_folder(tmp_path / "other", classes=("yellow", "purple"), per_class=2))
    with pytest.raises(UserError, match="none of the classes|None of the classes"):
        evaluation_set(scan, "all", list(CLASSES))
    # Ants/ and BEES/ for a model of ants and bees: the only difference is named, with the remedy
    scan = scan_dataset(make_image_folder(tmp_path / "capitals", classes=("Ants", "BEES"), per_class=2))
    with pytest.raises(UserError) as refused:
        evaluation_set(scan, "all", ["ants", "bees"])
    assert str(refused.value).endswith("(ants, bees); the folder names differ from them only in case, so rename "
                                       "Ants to ants, BEES to bees.")


def test_the_text_report_names_every_class_in_the_matrix_and_what_macro_f1_leaves_out():
    from tl_studio.core.evaluation import Evaluation, format_report

    classes = ("ants", "bees", "flowers", "a_very_long_class_name_indeed")
    true = np.array([0, 0, 1, 1])
    probabilities = np.eye(4, dtype=np.float32)[[0, 2, 1, 1]]
    evaluation = Evaluation(classes, tuple(f"{i}.jpg" for i in range(4)), true, probabilities, (), {}, "a folder",
                            "model.pt2", "all")
    report = format_report(evaluation)
    heading = next(line for line in report.splitlines()[report.splitlines().index(
        "Confusion matrix (rows: true class, columns: predicted):") + 1:])
    assert heading.split() == ["ants", "bees", "flowers", "a_very_long…"]  # "flowe" read as no class at all
    assert "(over the 2 classes these images have; not flowers, a_very_long_class_name_indeed)" in report
    flowers = next(line for line in report.splitlines() if line.startswith("flowers "))
    assert flowers.split()[1:] == ["0.0000", "-", "-", "0"]  # one ant called flowers: precision 0, no recall
    long_name = next(line for line in report.splitlines() if line.startswith("a_very_long_class_name_indeed "))
    assert long_name.split()[1:] == ["-", "-", "-", "0"]  # nothing answered as it: no precision either
    # --json: the classes left out are named, their recall and F1 null (0.0 averaged to another macro-F1)
    data = evaluation.to_dict()
    assert data["macro_f1_leaves_out"] == ["flowers", "a_very_long_class_name_indeed"]
    flowers = next(entry for entry in data["per_class"] if entry["name"] == "flowers")
    assert (flowers["precision"], flowers["recall"], flowers["f1"], flowers["support"]) == (0.0, None, None, 0)
    assert data["per_class"][3]["precision"] is None
    measured = [entry["f1"] for entry in data["per_class"] if entry["f1"] is not None]
    assert sum(measured) / len(measured) == pytest.approx(data["macro_f1"])


def test_the_metrics_table_shows_no_figure_that_was_not_measured(qtbot):
    from tl_studio.core.evaluation import Evaluation
    from tl_studio.gui.metrics_table import MetricsTable

    classes = ("ants", "bees", "flowers", "wasps")
    evaluation = Evaluation(classes, ("a.jpg", "b.jpg", "c.jpg"), np.array([0, 1, 1]),
                            np.eye(4, dtype=np.float32)[[0, 1, 2]], (), {}, "a folder", "model.pt2", "all")
    table = MetricsTable()
    qtbot.addWidget(table)
    table.set_evaluation(evaluation)
    flowers = [table.model.item(2, column).text() for column in range(5)]
    assert flowers == ["flowers", "0.000", "—", "—", "0"]
    wasps = [table.model.item(3, column).text() for column in range(5)]
    assert wasps == ["wasps", "—", "—", "—", "0"]  # nothing answered as wasps: 0 of 0 is no precision


def test_an_older_model_file_gets_a_new_exports_unknown_rule_and_says_so():
    from tl_studio.core.evaluation import unknown_rule_to_check
    from tl_studio.core.unknown import UnknownRule, rule_for

    known = small_evaluation()
    rule, note = unknown_rule_to_check({}, known)
    assert rule == rule_for(known.probabilities) and "no unknown rule" in note
    own = UnknownRule(0.5, 0.9, 0.9)
    rule, note = unknown_rule_to_check({"unknown": own.to_dict()}, known)
    assert rule == own and note == ""


def test_a_dataset_moved_after_its_scan_is_one_sentence_not_accuracy_zero(model, tmp_path):
    """The Evaluate step on a folder moved away after the Data step scanned it showed 'Accuracy 0.0%,
    0 images' and a confusion matrix of zeros."""
    import shutil

    from tl_studio.core.data import scan_dataset
    from tl_studio.core.export import load_model_file

    data = copy_dataset(model.data_dir, tmp_path / "data")
    model_file = load_model_file(model.model_file)
    chosen = evaluation_set(scan_dataset(data), "all", model_file.classes)
    shutil.move(data, tmp_path / "moved")
    with pytest.raises(UserError, match=rf"None of the {len(chosen.paths)} images could be read .*; has {data} moved"):
        evaluate(model_file.predict, chosen)


def test_a_moved_pre_split_dataset_is_named_by_its_folder_not_its_val_folder(model, tmp_path):
    import shutil

    from tests.helpers import make_image_folder
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.export import load_model_file

    model_file = load_model_file(model.model_file)
    data = tmp_path / "data"
    for split in ("train", "val"):
        make_image_folder(data / split, classes=model_file.classes, per_class=3, size=32)
    chosen = evaluation_set(scan_dataset(data), "val", model_file.classes)
    shutil.move(data, tmp_path / "moved")
    with pytest.raises(UserError, match=rf"; has {data} moved or changed\?"):
        evaluate(model_file.predict, chosen)



@pytest.mark.parametrize("split, named", [("val", {"val/a/bad.jpg", "train/a/dup.jpg"}),
                                          ("train", {"train/a/bad.jpg", "train/a/dup.jpg"}),
                                          ("all", {"val/a/bad.jpg", "train/a/bad.jpg", "train/a/dup.jpg"})])
def test_an_evaluation_names_the_problems_of_its_own_split(split, named):
    """Evaluating val/ listed train/ants/empty.jpg among the files "left out of the evaluation"."""
    from types import SimpleNamespace

    from tl_studio.core.data import Problem
    from tl_studio.core.evaluation import problems_of_split

    problems = (Problem("val/a/bad.jpg", "Not an image", "not_image"),
                Problem("train/a/bad.jpg", "Not an image", "not_image"),
                Problem("train/a/dup.jpg", "Also in val", "duplicate"))  # skews the val scores: kept
    presplit = SimpleNamespace(presplit=True, problems=problems)
    assert {problem.path for problem in problems_of_split(presplit, split)} == named
    unsplit = SimpleNamespace(presplit=False, problems=problems)  # an unreadable file would be in any split
    assert problems_of_split(unsplit, split) == problems
