"""The Evaluate step as a user drives it, offscreen: evaluate in the background, click a confusion-matrix
cell to see exactly its images, move an image to another class (the Data step sees it) and undo, and
look at an image with Grad-CAM."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.evaluation_helpers import copy_dataset, one_torch_thread, plain_torch_probabilities, tiny_model
from tl_studio.core.data import scan_dataset
from tl_studio.core.dataset_edit import EXCLUDED
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
def page(qtbot, model, tmp_path, monkeypatch):
    data = copy_dataset(model.data_dir, tmp_path / "data")  # the test moves files: never the shared original
    session = Session()
    session.set_dataset(scan_dataset(data))
    session.set_run(model.run_dir, model.model_file)
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    evaluate_page = EvaluatePage(session)
    qtbot.addWidget(evaluate_page)
    evaluate_page.source_box.setCurrentIndex(evaluate_page.source_box.findData("all"))
    with qtbot.waitSignal(evaluate_page.evaluated, timeout=TIMEOUT_MS):
        evaluate_page.evaluate_button.click()
    yield evaluate_page
    evaluate_page.shutdown()


def test_the_matrix_shows_the_plain_torch_counts(page, model):
    evaluation = page.evaluation
    expected = plain_torch_probabilities(model.model_file, evaluation.paths).argmax(axis=1)
    matrix = page.matrix
    assert matrix.objectName() == "confusionMatrix" and matrix.model().rowCount() == 3
    for t in range(3):
        row_total = int((evaluation.true == t).sum())
        for p in range(3):
            count = int(((evaluation.true == t) & (expected == p)).sum())
            text = matrix.cell_text(t, p)
            assert text.split("\n")[0] == str(count)
            if count:
                assert text.split("\n")[1] == f"{count / row_total:.0%}"
    assert page.metrics.model.rowCount() == 3 and "Accuracy" in page.metrics.overall.text()
    # a share, as the summary over the matrix says it, and Copy as CSV says that it copied
    assert f"Accuracy <b>{page.evaluation.accuracy:.1%}</b>" in page.metrics.overall.text()
    page.metrics.copy_button.click()
    assert page.metrics.copy_button.text() == "Copied"
    assert QApplication.clipboard().text() == page.evaluation.metrics_csv()


def test_clicking_a_cell_shows_exactly_its_images_by_loss(page):
    evaluation = page.evaluation
    predicted = evaluation.predicted
    for t in range(3):
        for p in range(3):
            page.matrix.choose_cell(t, p)
            shown = [item.index for item in page.cell_gallery.items]
            members = set(np.flatnonzero((evaluation.true == t) & (predicted == p)).tolist())
            assert set(shown) == members and len(shown) == len(members)
            losses = [float(evaluation.losses[i]) for i in shown]
            assert losses == sorted(losses, reverse=True)
            assert page.tabs.currentWidget() is page.cell_gallery


def test_move_to_another_class_updates_the_dataset_and_undo_restores_it(page, qtbot):
    session, gallery = page.session, page.cell_gallery
    page.matrix.choose_cell(0, int(page.evaluation.predicted[page.evaluation.true == 0][0]))
    first = gallery.items[0]
    original = first.path
    source_class = page.evaluation.classes[0]
    target = next(name for name in page.evaluation.classes if name != source_class)
    gallery.select_rows([0])
    gallery.class_box.setCurrentText(target)
    detail = page.images.open_image(first.index)  # a closer look, open while the image moves
    with qtbot.waitSignal(session.datasetChanged, timeout=TIMEOUT_MS) as changed:
        gallery.move_button.click()
    moved_to = page.images.current_paths[first.index]
    assert not _exists(original) and _exists(moved_to) and f"/{target}/" in moved_to
    assert detail.facts.path == moved_to and f"labelled <b>{target}</b>" in detail.caption.text()
    detail.close()
    counts = changed.args[0].class_counts()
    assert counts[source_class] == 9 and counts[target] == 11
    assert gallery.items[0].caption == f"moved → {target}" and gallery.undo_button.isEnabled()
    with qtbot.waitSignal(session.datasetChanged, timeout=TIMEOUT_MS) as changed:
        gallery.undo_button.click()
    assert _exists(original) and not _exists(moved_to)
    assert changed.args[0].class_counts()[source_class] == 10
    assert page.images.current_paths[first.index] == original and not gallery.undo_button.isEnabled()


def test_the_galleries_undo_leaves_a_change_in_another_folder_to_edit_undo(page, qtbot, tmp_path):
    """A relabel made on the Data step in one folder, then a run evaluated on another folder: the Undo under
    its images moved the file back in the first folder, and with no Redo the relabel was lost."""
    session, gallery = page.session, page.cell_gallery
    other = copy_dataset(page.scan.root, tmp_path / "other")
    other_scan = scan_dataset(other)
    photo = next(record.path for record in other_scan.records if other_scan.classes[record.label] == "red")
    with qtbot.waitSignal(session.fixer.rescanned, timeout=TIMEOUT_MS):
        session.fixer.move([str(photo)], "green", other_scan)  # as the Data step's thumbnail menu does
    assert session.fixer.can_undo and not gallery.undo_button.isEnabled()
    assert "The last change is in other" in gallery.undo_button.toolTip()
    gallery.undoRequested.emit()  # the button's signal: nothing moves back
    assert (other / "green" / Path(photo).name).exists() and session.fixer.can_undo


def test_exclude_keeps_the_file_out_of_the_classes(page, qtbot):
    gallery = page.loss_gallery if page.loss_gallery.items else page.suspect_gallery
    if not gallery.items:  # a perfect model: take any image through a diagonal cell
        page.matrix.choose_cell(0, 0)
        gallery = page.cell_gallery
    gallery.select_rows([0])
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS) as changed:
        gallery.exclude_button.click()
    scan = changed.args[0]
    assert EXCLUDED not in scan.classes and len(scan.records) == 29
    assert (scan.root / EXCLUDED).is_dir() and len(list((scan.root / EXCLUDED).iterdir())) == 1
    assert gallery.items[0].caption == "excluded"  # short enough for a thumbnail's caption


def test_the_image_view_shows_probabilities_and_grad_cam(page, qtbot):
    detail = page.images.open_image(0)
    qtbot.waitUntil(lambda: "image" in detail.arrays, timeout=TIMEOUT_MS)
    assert detail.chart.bars is not None and not detail.showing_overlay()
    with qtbot.waitSignal(detail.camFinished, timeout=TIMEOUT_MS):
        detail.cam_toggle.setChecked(True)
    assert detail.showing_overlay()
    assert detail.arrays["overlay"].shape == detail.arrays["image"].shape
    # the uncoloured border is explained where it shows: the share of the shorter side the model sees
    import re

    spec = detail.cams.metadata["preprocessing"]
    said = re.search(r"sees only the centre square \((\d+)% of the shorter side\)", detail.caption.text())
    assert said and abs(int(said.group(1)) - 100 * spec["crop_size"] / spec["resize_size"]) <= 1
    detail.close()


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_file()


def test_a_double_click_opens_one_viewer_and_enter_opens_one_too(page, qtbot):
    from PySide6.QtCore import Qt

    page.matrix.choose_cell(0, int(page.evaluation.predicted[page.evaluation.true == 0][0]))
    view = page.cell_gallery.view
    page.show()
    qtbot.waitExposed(page)
    qtbot.waitUntil(lambda: view.visualRect(page.cell_gallery.thumbnails.index(0)).isValid())
    rect = view.visualRect(page.cell_gallery.thumbnails.index(0))
    # what a real double-click delivers in Qt 6: press, release, press, double-click, release
    for act in (qtbot.mousePress, qtbot.mouseRelease, qtbot.mousePress, qtbot.mouseDClick, qtbot.mouseRelease):
        act(view.viewport(), Qt.LeftButton, pos=rect.center())
    assert len(page.images.details) == 1
    view.setFocus()
    view.setCurrentIndex(page.cell_gallery.thumbnails.index(0))
    qtbot.keyClick(view, Qt.Key_Return)
    assert len(page.images.details) == 2
    for detail in list(page.images.details):
        detail.close()


def test_selecting_an_image_offers_its_predicted_class_as_the_move_target(page):
    evaluation = page.evaluation
    gallery = page.loss_gallery if page.loss_gallery.items else None
    if gallery is None:  # no mistakes: any cell's images still have a prediction
        page.matrix.choose_cell(0, int(evaluation.predicted[evaluation.true == 0][0]))
        gallery = page.cell_gallery
    for row, item in enumerate(gallery.items[:3]):
        gallery.class_box.setCurrentIndex(0 if gallery.class_box.currentIndex() else 1)  # anything else first
        gallery.select_rows([row])
        assert gallery.class_box.currentText() == evaluation.classes[int(evaluation.predicted[item.index])]


def test_long_captions_are_elided_in_the_middle_with_the_full_text_as_tooltip(page):
    from PySide6.QtCore import Qt

    page.matrix.choose_cell(0, int(page.evaluation.predicted[page.evaluation.true == 0][0]))
    gallery = page.cell_gallery
    assert gallery.view.textElideMode() == Qt.ElideMiddle
    index = gallery.thumbnails.index(0)
    caption = gallery.thumbnails.data(index, Qt.DisplayRole)
    assert gallery.thumbnails.data(index, Qt.ToolTipRole).startswith(caption + "\n")


def test_usual_captions_show_whole_whatever_the_first_caption(qtbot, tmp_path):
    """Every item is as wide as the grid allows, not as wide as the first one ("a"): the usual captions
    are not cut (they were: "ants →…s 100%", "cardbo… train")."""
    from tl_studio.gui.thumbnails import ThumbnailModel, thumbnail_view

    model = ThumbnailModel()
    view = thumbnail_view(model)
    qtbot.addWidget(view)
    view.resize(700, 400)
    view.show()
    qtbot.waitExposed(view)
    usual = ["ants → bees 100%", "cardboard · train", "bees? → ants"]
    model.set_paths([str(tmp_path / f"{i}.jpg") for i in range(4)], ["a"] + usual)
    margin = 2 * (view.style().pixelMetric(view.style().PixelMetric.PM_FocusFrameHMargin) + 1)
    for row, caption in enumerate(usual, start=1):
        width = view.visualRect(model.index(row)).width()
        assert view.fontMetrics().horizontalAdvance(caption) + margin <= width, caption
    model.shutdown()


def test_the_model_is_named_by_its_run_and_the_metrics_sit_under_the_matrix(page, model, qtbot):
    assert f"of run <b>{model.run_dir.name}</b>" in page.model_label.text()
    page.resize(1200, 760)
    page.show()
    qtbot.waitExposed(page)
    page.tabs.setCurrentWidget(page.calibration_tab)
    # three classes need a third of the height: the per-class table fills the rest, whatever tab is open
    assert page.matrix.isVisible() and page.metrics.isVisible() and page.tabs.indexOf(page.metrics) == -1
    assert page.metrics.geometry().top() > page.matrix.geometry().bottom()


def test_the_summary_over_the_matrix_takes_the_height_of_its_text_once_shown(qtbot, model):
    """The summary's box kept the height of its empty text (0) when the first evaluation filled it on a
    shown step: the accuracy, the images evaluated and every warning were there, unseen."""
    from PySide6.QtWidgets import QApplication

    session = Session()
    session.set_dataset(scan_dataset(model.data_dir))
    evaluate_page = EvaluatePage(session)
    qtbot.addWidget(evaluate_page)
    evaluate_page.resize(1200, 760)
    evaluate_page.show()
    qtbot.waitExposed(evaluate_page)
    with qtbot.waitSignal(evaluate_page.evaluated, timeout=TIMEOUT_MS):
        session.set_run(model.run_dir, model.model_file)  # evaluated at once: the step is shown
    for _ in range(3):  # the label's posted layout request; nothing resizes the step meanwhile
        QApplication.processEvents()
    line = evaluate_page.summary.fontMetrics().lineSpacing()
    assert "Accuracy" in evaluate_page.summary.text()
    assert evaluate_page.summary.parentWidget().parentWidget().height() >= line  # the CappedText around it
    evaluate_page.shutdown()


@pytest.mark.parametrize("folder", ["the training folder", "a copy of it"])
def test_arriving_at_the_step_evaluates_the_images_tl_studio_evaluate_takes(qtbot, model, tmp_path, folder):
    """A folder opened on the Data step that the model was not trained on was scored on the 17 % split the
    Data step made of it, under "Validation split" (26 of 153 images; the command: all 153, other
    figures). Until the user picks, the step takes the command's images and names them in the box."""
    from tl_studio.core.evaluation import default_choice, evaluation_set, scan_for_model

    data = model.data_dir if folder == "the training folder" else copy_dataset(model.data_dir, tmp_path / "copy")
    session = Session()
    session.set_dataset(scan_dataset(data))
    evaluate_page = EvaluatePage(session)
    qtbot.addWidget(evaluate_page)
    evaluate_page.show()
    qtbot.waitExposed(evaluate_page)
    with qtbot.waitSignal(evaluate_page.evaluated, timeout=TIMEOUT_MS):
        session.set_run(model.run_dir, model.model_file)
    metadata = evaluate_page.metadata
    scan = scan_for_model(data, metadata)
    split = default_choice(scan, metadata)[0]
    assert split == ("val" if folder == "the training folder" else "all")
    assert evaluate_page.evaluation.split == split and evaluate_page.source_box.currentData() == split
    assert evaluate_page.evaluation.paths == tuple(map(str, evaluation_set(scan, split, model_classes=metadata[
        "classes"]).paths))
    # a pick is kept: Evaluate under "Validation split" evaluates that split of the copy
    evaluate_page.source_box.setCurrentIndex(evaluate_page.source_box.findData("val"))
    with qtbot.waitSignal(evaluate_page.evaluated, timeout=TIMEOUT_MS):
        evaluate_page.evaluate_button.click()
    assert evaluate_page.evaluation.split == "val" and evaluate_page.source_box.currentData() == "val"
    evaluate_page.shutdown()


def test_the_summary_names_the_files_the_scan_left_out_as_text(qtbot, model, tmp_path):
    data = copy_dataset(model.data_dir, tmp_path / "data")
    (data / "red" / "<b>notes&.jpg").write_text("not an image")  # a name that would be markup
    session = Session()
    session.set_dataset(scan_dataset(data))
    session.set_run(model.run_dir, model.model_file)
    evaluate_page = EvaluatePage(session)
    qtbot.addWidget(evaluate_page)
    with qtbot.waitSignal(evaluate_page.evaluated, timeout=TIMEOUT_MS):
        evaluate_page.evaluate_button.click()
    summary = evaluate_page.summary.text()
    evaluate_page.shutdown()
    assert ("The dataset scan found 1 problem: 1 file left out of the evaluation "
            "(red/&lt;b&gt;notes&amp;.jpg).") in summary
    # the window's own list, not a command to type in a terminal
    assert "(red/&lt;b&gt;notes&amp;.jpg). The Data step&#x27;s Problems tab gives the reason for each." in summary


def test_class_names_from_the_model_file_are_shown_as_written(page, qtbot):
    """The class names come from the model file (perhaps someone else's) and are folder names: `<u>ants`
    was shown underlined as "ants" in the cell's title, the matrix's tooltips and the image view, and
    `bees<br>x` on two lines."""
    import dataclasses

    from PySide6.QtCore import Qt

    from tests.gui.shown_text import label_shows, shown

    names = ("<u>ants", "bees<br>x", "a&b")
    evaluation = dataclasses.replace(page.evaluation, classes=names)  # the same figures under these names
    page._show_evaluation(evaluation)
    predicted = int(evaluation.predicted[evaluation.true == 0][0])
    page.matrix.choose_cell(0, predicted)
    assert label_shows(page.cell_gallery.title).startswith(f"True <u>ants, predicted {names[predicted]}: ")
    thumbnails = page.cell_gallery.thumbnails
    tooltip = shown(thumbnails.data(thumbnails.index(0), Qt.ToolTipRole))
    assert f"\nlabel: <u>ants\npredicted: {names[predicted]} (" in tooltip
    matrix = page.matrix.model()
    assert shown(matrix.headerData(1, Qt.Horizontal, Qt.ToolTipRole)) == "predicted class: bees<br>x"
    assert shown(matrix.headerData(2, Qt.Vertical, Qt.ToolTipRole)) == "true class: a&b"
    assert re.search(r"\d+ images? of <u>ants \(", shown(matrix.data(matrix.index(0, 1), Qt.ToolTipRole)))
    detail = page.images.open_image(page.cell_gallery.items[0].index)
    qtbot.waitUntil(lambda: "image" in detail.arrays, timeout=TIMEOUT_MS)
    caption = label_shows(detail.caption)
    assert "labelled <u>ants (" in caption and caption.endswith(f"\n{page.cell_gallery.items[0].path}")
    detail.close()


def test_training_images_among_the_evaluated_ones_are_pointed_out(page, qtbot, model):
    """The fixture evaluates every image of a copy of the training folder: its training images are found
    by content and the summary says the figures overstate the model; its validation split says nothing."""
    from tl_studio.core.evaluation import scan_for_model

    trained = len(list(scan_for_model(model.data_dir, page.metadata).split("train")))
    assert page.evaluation.seen_in_training == trained
    assert (f"<b>{trained} of the 30 images evaluated here are copies of images this model was trained on"
            in page.summary.text())
    page.source_box.setCurrentIndex(page.source_box.findData("val"))
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        page.evaluate_button.click()
    assert page.evaluation.seen_in_training == 0 and "trained on" not in page.summary.text()


def test_another_folder_of_class_folders_is_evaluated_whole(page, qtbot, tmp_path, monkeypatch):
    """New labelled images in a folder of class folders: every one of them is scored, not the fifth that
    a split with the model's training seed would call validation."""
    from PySide6.QtWidgets import QFileDialog

    from tests.helpers import make_image_folder

    other = make_image_folder(tmp_path / "new photos", classes=("blue", "green", "red"), per_class=5, size=64,
                              seed=9)
    (other / "red" / "notes.jpg").write_text("not an image")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(other))
    choice = page.source_box.findData("folder")
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        page.source_box.setCurrentIndex(choice)
        page.source_box.activated.emit(choice)  # as a user's pick does
    assert len(page.evaluation.paths) == 15 and page.evaluation.split == "all"
    # the folder keeps its own item, and "Another folder…" stays offered below it for the next one
    texts = [page.source_box.itemText(i) for i in range(page.source_box.count())]
    assert texts[-2:] == ["Folder: new photos", "Another folder…"] and page.source_box.currentText() == texts[-2]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: "")  # the dialog cancelled
    page.source_box.setCurrentIndex(len(texts) - 1)
    page.source_box.activated.emit(len(texts) - 1)
    assert page.source_box.currentText() == "Folder: new photos" and not page.running
    # the Data step shows another data set: the reasons are where this folder's scan is
    summary = page.summary.text()
    assert "red/notes.jpg: Not an image file" in summary  # its reason here, not a command to type elsewhere
    assert "tl-studio scan" not in summary and "Data step" not in summary

    # the folder is deleted, then a model is opened (the Runs step's Open): not "... does not exist"
    import shutil

    shutil.rmtree(other)
    page.session.modelFileChanged.emit(page.session.model_file)
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        page.evaluate_button.click()  # as arriving at the step does (this page is not shown)
    assert page.evaluation.split == "val" and page.source_box.currentData() == "val"
    assert "Folder: new photos" not in [page.source_box.itemText(i) for i in range(page.source_box.count())]


def test_a_split_without_images_is_greyed_out_and_the_wheel_chooses_nothing(page, qtbot):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    box = page.source_box
    assert [box.itemText(i) for i in range(4)] == ["Validation split", "Test split", "Training split",
                                                   "All images of the dataset"]
    test_item = box.model().item(box.findData("test"))
    assert not test_item.isEnabled() and test_item.toolTip() == "This data set has no test images."
    assert box.model().item(box.findData("train")).isEnabled()
    chosen = []
    box.activated.connect(chosen.append)
    before = box.currentIndex()
    for delta in (-120, 120, -120):  # scrolling the page past the box: no evaluation, no folder dialog
        QApplication.sendEvent(box, QWheelEvent(QPointF(5, 5), QPointF(5, 5), QPoint(), QPoint(0, delta),
                                                Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False))
    assert chosen == [] and box.currentIndex() == before and not page.running


def test_a_split_without_images_clears_the_last_results_instead_of_leaving_them_under_its_name(page, qtbot):
    assert page.evaluation is not None and not list(page.session.scan.split("test"))
    assert page.images.galleries[-1].title.text()  # e.g. "2 images whose label the model doubts"
    choice = page.source_box.findData("test")  # the dataset has no test split (a model opened without it)
    page.source_box.setCurrentIndex(choice)
    with qtbot.waitSignal(page.session.statusMessage, timeout=TIMEOUT_MS,
                          check_params_cb=lambda message: "has no images" in message):
        page.source_box.activated.emit(choice)
    assert page.evaluation is None and page.metrics.model.rowCount() == 0
    assert all(gallery.title.text() == "" for gallery in page.images.galleries)  # no caption over an empty list
    assert "The test split of" in page.summary.text() and "choose the validation split or every image" in \
        page.summary.text()


def test_a_model_opened_while_the_step_is_shown_is_evaluated_at_once(page, qtbot, model):
    page.show()
    qtbot.waitExposed(page)
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        page.session.set_run(model.run_dir, model.model_file)  # File > Open Model File, or a run opened
    assert page.evaluation is not None


def test_the_splits_are_the_models_own_whatever_the_data_step_asks(qtbot, model, tmp_path):
    """The Data step set to another split (30 %, seed 3) must not make the Evaluate step count the model's
    training images as validation: it evaluates the model's own split, as `tl-studio evaluate` does."""
    from tl_studio.core.evaluation import scan_for_model
    from tl_studio.core.model_file import load_model_file

    session = Session()
    other_split = scan_dataset(model.data_dir, val_fraction=0.3, seed=3)
    session.set_dataset(other_split)
    session.set_run(model.run_dir, model.model_file)
    page = EvaluatePage(session)
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        page.evaluate_button.click()
    own = scan_for_model(model.data_dir, load_model_file(model.model_file).metadata)
    assert sorted(page.evaluation.paths) == sorted(str(r.path) for r in own.split("val"))
    assert sorted(page.evaluation.paths) != sorted(str(r.path) for r in other_split.split("val"))
    page.shutdown()


def test_a_gallery_caption_shows_the_label_and_the_prediction_whole_on_two_lines(qtbot, tmp_path):
    """On one line, "ants → bienen ä 63%" lost its middle ("ants → …n ä 63%"): the class names."""
    from tl_studio.gui.gallery import Gallery, GalleryItem

    gallery = Gallery("")
    qtbot.addWidget(gallery)
    gallery.resize(700, 400)
    gallery.show()
    qtbot.waitExposed(gallery)
    captions = ["ants\n→ bienen ä 63%", "bienen ä?\n→ ants"]
    gallery.set_items([GalleryItem(i, str(tmp_path / f"{i}.jpg"), caption, "") for i, caption in enumerate(captions)],
                      "")
    view, metrics = gallery.view, gallery.view.fontMetrics()
    for row, caption in enumerate(captions):
        rect = view.visualRect(gallery.thumbnails.index(row))
        assert all(metrics.horizontalAdvance(line) + 6 <= rect.width() for line in caption.split("\n")), caption
        assert rect.height() >= 96 + 2 * metrics.lineSpacing()
    gallery.thumbnails.shutdown()


def test_a_long_summary_scrolls_in_a_few_lines_and_a_short_one_takes_its_own_height(qtbot):
    """At 1024 x 700 a summary of a dozen lines (warnings, problem files) left the confusion matrix a
    strip of one and a half rows."""
    from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

    from tl_studio.gui.capped_text import CappedText

    window = QWidget()
    qtbot.addWidget(window)
    label = QLabel()
    area = CappedText(label, max_lines=7)
    layout = QVBoxLayout(window)
    layout.addWidget(area)
    layout.addStretch(1)
    window.resize(600, 700)
    window.show()
    qtbot.waitExposed(window)
    line = label.fontMetrics().lineSpacing()
    assert area.height() == 0  # nothing to say: no room taken
    label.setText("Accuracy 96.7% · 31 images")
    qtbot.waitUntil(lambda: 0 < area.height() < 2 * line + 4)
    label.setText("<br>".join(f"train/ants/file{i}.jpg: not an image file" for i in range(20)))
    qtbot.waitUntil(lambda: area.height() >= 6 * line)
    assert area.height() <= 7 * line and area.verticalScrollBar().maximum() > 0


def test_cancel_appears_beside_the_progress_not_where_evaluate_was(page, qtbot):
    """Cancel showed up in Evaluate's place: a click meant for Evaluate, after a pick in Images had started
    an evaluation, cancelled it."""
    page.resize(1200, 760)
    page.show()
    qtbot.waitExposed(page)
    before = page.evaluate_button.geometry()
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        page.evaluate()
        page.layout().activate()  # laid out as the window shows it while the evaluation runs
        assert page.cancel_button.isVisible() and page.evaluate_button.geometry() == before
        cancel = page.cancel_button.geometry().translated(page.cancel_button.parentWidget().mapTo(page, QPoint()))
        assert not cancel.intersects(before.translated(page.evaluate_button.parentWidget().mapTo(page, QPoint())))
