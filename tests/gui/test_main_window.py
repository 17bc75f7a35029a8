"""The main window's menus and orientation, offscreen: Edit > Undo names the move it undoes and Ctrl+Z
works wherever the focus is on the Evaluate step; Help > Getting started lists the shortcuts; the Data
step welcomes a new user and says which data set is loaded when a folder cannot be used; Start waits
for a scanned data set."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from shiboken6 import isValid

from tests.evaluation_helpers import copy_dataset, one_torch_thread, tiny_model
from tl_studio.core.data import scan_dataset
from tl_studio.gui.main_window import MainWindow

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture
def window(qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    main_window = MainWindow()
    qtbot.addWidget(main_window)
    main_window.show()
    qtbot.waitExposed(main_window)
    yield main_window
    if isValid(main_window):
        main_window.close()


def test_ctrl_z_anywhere_on_the_evaluate_step_undoes_the_move_edit_undo_names(window, qtbot, tmp_path,
                                                                             tmp_path_factory):
    model = tiny_model(tmp_path_factory)
    data = copy_dataset(model.data_dir, tmp_path / "data")
    window.session.set_dataset(scan_dataset(data))
    window.open_model_file(str(model.model_file))
    page = window.pages["Evaluate"]
    page.source_box.setCurrentIndex(page.source_box.findData("all"))
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        page.evaluate_button.click()
    assert not window.undo_action.isEnabled() and window.undo_action.text() == "Undo"
    page.matrix.choose_cell(0, int(page.evaluation.predicted[page.evaluation.true == 0][0]))
    gallery = page.cell_gallery
    original = gallery.items[0].path
    target = next(name for name in page.evaluation.classes if name != page.evaluation.classes[0])
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        page.fixer.move([original], target)
    name = original.rsplit("/", 1)[-1]
    assert window.undo_action.isEnabled()
    assert window.undo_action.text() == f"Undo: move {name} back to {page.evaluation.classes[0]}/"
    window.activateWindow()
    page.matrix.setFocus()  # not a gallery: Ctrl+Z must work anyway
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        qtbot.keyClick(page.matrix, Qt.Key_Z, Qt.ControlModifier)
    assert (data / page.evaluation.classes[0] / name).is_file()
    assert not window.undo_action.isEnabled()


def test_getting_started_explains_and_lists_the_menu_shortcuts(window):
    dialog = window.show_getting_started()
    text = dialog.browser.toPlainText()
    for words in ("One sub-folder per class", "Frozen", "When accuracy stalls", "Keyboard shortcuts",
                  "Open Folder", "Start Training", "Undo"):
        assert words in text, words
    dialog.close()
    menus = [action.text() for action in window.menuBar().actions()]
    assert menus == ["&File", "&Edit", "&Go", "&Train", "&Help"]


def test_the_start_page_welcomes_with_recent_folders_and_an_example(window, qtbot, tiny_dataset):
    data = window.pages["Data"]
    assert data.body.currentWidget() is data.welcome and "ants/" in data.welcome.findChild(
        type(data.summary), "welcomeExample").text()
    assert not data.welcome.recent_list.isVisible()  # nothing opened yet
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(tiny_dataset))
    assert data.body.currentWidget() is not data.welcome
    data.welcome.refresh()
    assert data.welcome.recent_list.count() == 1 and data.welcome.recent_list.item(0).text() == str(
        tiny_dataset.resolve())


def test_a_folder_that_cannot_be_used_names_the_data_set_still_loaded(window, qtbot, tiny_dataset, tmp_path):
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(tiny_dataset))
    one_class = tmp_path / "one"
    (one_class / "only").mkdir(parents=True)
    (tiny_dataset / "red").rename(one_class / "only" / "red")  # any folder with one class
    data = window.pages["Data"]
    with qtbot.waitSignal(window.session.statusMessage, timeout=TIMEOUT_MS,
                          check_params_cb=lambda message: "Could not open" in message):
        window.open_folder(str(one_class))
    summary = data.summary.text()
    assert f"Could not open {one_class}" in summary and f"Still loaded: <b>{tiny_dataset}" in summary
    assert window.session.scan is not None and window.session.scan.root == tiny_dataset
    assert data.folder == str(tiny_dataset)  # "Apply split" acts on the data set shown


def test_start_waits_for_a_scanned_data_set(window, qtbot, tiny_dataset):
    start = window.pages["Train"].start_button
    assert not start.isEnabled() and "scanned" in start.toolTip()
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(tiny_dataset))
    assert start.isEnabled() and "Ctrl+R" in start.toolTip()
