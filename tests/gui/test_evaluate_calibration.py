"""The Evaluate step's Calibration tab: the reliability diagram is the evaluated images' own bins (with
their ECE and the calibration the model file records), and "Unfamiliar images…" reports what the core's
unknown check reports on the chosen folder, in the background."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

from tests.evaluation_helpers import one_torch_thread, tiny_model
from tests.helpers import make_image
from tl_studio.core.data import scan_dataset
from tl_studio.core.model_file import load_model_file
from tl_studio.gui.pages.evaluate_page import EvaluatePage
from tl_studio.gui.session import Session

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture
def page(qtbot, model):
    session = Session()
    session.set_dataset(scan_dataset(model.data_dir))
    session.set_run(model.run_dir, model.model_file)
    evaluate_page = EvaluatePage(session)
    qtbot.addWidget(evaluate_page)
    evaluate_page.source_box.setCurrentIndex(evaluate_page.source_box.findData("all"))
    with qtbot.waitSignal(evaluate_page.evaluated, timeout=TIMEOUT_MS):
        evaluate_page.evaluate_button.click()
    yield evaluate_page
    evaluate_page.shutdown()


def test_the_reliability_diagram_shows_the_evaluated_images_bins(page, model):
    evaluation = page.evaluation
    # the bins by hand: 15 equal confidence bins of the top-1 probability, right when argmax is the label
    confidence = evaluation.probabilities.max(axis=1)
    right = evaluation.probabilities.argmax(axis=1) == evaluation.true
    which = np.minimum((confidence * 15).astype(int), 14)
    expected = [(b, right[which == b].mean(), confidence[which == b].mean()) for b in range(15) if (which == b).any()]
    bars = page.reliability.bars.opts
    np.testing.assert_allclose(bars["x0"], [b / 15 for b, _, _ in expected], atol=1e-6)
    np.testing.assert_allclose(bars["height"], [accuracy for _, accuracy, _ in expected], atol=1e-6)
    dots_x, dots_y = page.reliability.points.getData()
    np.testing.assert_allclose(dots_x, [mean for _, _, mean in expected], atol=1e-6)
    np.testing.assert_allclose(dots_y, [accuracy for _, accuracy, _ in expected], atol=1e-6)

    weights = np.array([(which == b).sum() for b, _, _ in expected]) / len(confidence)
    ece = float(sum(w * abs(a - c) for w, (_, a, c) in zip(weights, expected)))
    caption = page.reliability.caption.text()
    assert f"ECE {ece:.3f}</b> on these {len(confidence)} images" in caption
    recorded = load_model_file(model.model_file).metadata["calibration"]
    assert (f"When it was trained, on its run's validation images: ECE {recorded['ece_before']:.3f} → "
            f"{recorded['ece_after']:.3f} after calibration (T = {recorded['temperature']:.2f})") in caption


def test_an_int8_files_recorded_calibration_is_said_to_be_the_full_precision_models(page, model):
    # an int8 file keeps the fp32 file's tl_studio.json (with "quantization" added): its recorded ECE was
    # measured before quantisation, and the caption must not pass it off as the int8 file's own
    metadata = dict(load_model_file(model.model_file).metadata)
    page.reliability.show_evaluation(page.evaluation, metadata)
    assert "full-precision" not in page.reliability.caption.text()
    metadata["quantization"] = {"format": "onnx-int8"}
    page.reliability.show_evaluation(page.evaluation, metadata)
    assert "after calibration" in page.reliability.caption.text()
    assert "measured on the full-precision model before int8 quantisation" in page.reliability.caption.text()


def test_a_model_file_without_calibration_says_so(page):
    page.reliability.show_evaluation(page.evaluation, {"classes": list(page.evaluation.classes)})
    assert "records no calibration" in page.reliability.caption.text()
    page.reliability.show_evaluation(None, None)
    assert page.reliability.bins == [] and page.reliability.caption.text() == ""


def test_unfamiliar_images_report_the_cores_figures(page, model, tmp_path, monkeypatch, qtbot):
    from tl_studio.core.evaluation import evaluate_unknown
    from tl_studio.core.predict import collect_image_paths, unknown_rule_of

    folder = tmp_path / "unfamiliar"
    for index in range(6):  # grey and yellow squares: none of the trained colours
        make_image(folder / "nested" / f"{index}.png", (200, 200, 40) if index % 2 else (128, 128, 128), seed=index)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    assert page.unknown_button.isEnabled()
    page.unknown_button.click()
    assert page.running and not page.unknown_button.isEnabled()
    qtbot.waitUntil(lambda: not page.running, timeout=TIMEOUT_MS)
    loaded = load_model_file(model.model_file)
    rule = unknown_rule_of(loaded.metadata)
    assert rule is not None
    expected = evaluate_unknown(loaded.predict, collect_image_paths([folder]), page.evaluation, rule)
    assert expected.ood_images == 6
    assert page.unknown_result.text() == expected.describe()
    # the images kept are those evaluated (any split or folder), not always "validation images"
    assert f"of {len(page.evaluation.paths)} evaluated images" in expected.describe()
    assert page.unknown_button.isEnabled() and page.evaluate_button.isEnabled()


def test_an_empty_unfamiliar_folder_is_one_sentence(page, tmp_path, qtbot):
    (tmp_path / "empty").mkdir()
    page.check_unknown(str(tmp_path / "empty"))
    qtbot.waitUntil(lambda: not page.running, timeout=TIMEOUT_MS)
    assert page.unknown_result.text().startswith("The folder of unfamiliar images holds no files")
