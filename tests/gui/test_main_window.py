"""The main window's menus and orientation, offscreen: Edit > Undo names the move it undoes and Ctrl+Z
works wherever the focus is, for the Evaluate step's moves and the Problems tab's excludes alike, in one
history (last first); Help > Getting started lists the shortcuts; the Data
step welcomes a new user and says which data set is loaded when a folder cannot be used; Start waits
for a scanned data set."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from shiboken6 import isValid

from tests.evaluation_helpers import copy_dataset, one_torch_thread, tiny_model
from tl_studio.core.data import scan_dataset
from tl_studio.core.dataset_edit import EXCLUDED
from tl_studio.gui.main_window import MainWindow

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture
def window(qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    monkeypatch.setattr(QMessageBox, "exec", lambda box: QMessageBox.Yes)  # "Stop training and quit?"
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


def _exclude_problem(window, qtbot, name: str) -> None:
    """Selects the problem file ``name`` on the Problems tab and clicks Exclude; waits for the rescan."""
    data = window.pages["Data"]
    problems = data.problems
    row = next(r for r in range(problems.model.rowCount()) if problems.model.item(r, 0).text().endswith(name))
    problems.table.selectRow(row)
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS,
                          check_params_cb=lambda scan: all(not p.path.endswith(name) for p in scan.problems)):
        problems.exclude_button.click()


def _undo_with_ctrl_z(window, qtbot, widget) -> None:
    window.activateWindow()
    widget.setFocus()
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        qtbot.keyClick(widget, Qt.Key_Z, Qt.ControlModifier)


def test_an_exclude_on_the_problems_tab_is_undone_by_ctrl_z_and_named_in_edit_undo(window, qtbot, tiny_dataset):
    (tiny_dataset / "red" / "broken.jpg").write_bytes(b"not an image at all")
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(tiny_dataset))
    data = window.pages["Data"]
    data.tabs.setCurrentWidget(data.problems)
    _exclude_problem(window, qtbot, "broken.jpg")
    assert (tiny_dataset / EXCLUDED / "broken.jpg").is_file()
    assert window.undo_action.isEnabled() and "broken.jpg" in window.undo_action.text()
    assert "red/" in window.undo_action.text()
    _undo_with_ctrl_z(window, qtbot, data.problems.table)  # the focus on the Data step, not the Evaluate step
    assert (tiny_dataset / "red" / "broken.jpg").is_file() and not (tiny_dataset / EXCLUDED / "broken.jpg").exists()
    assert data.tabs.tabText(1) == "Problems (1)"  # listed again
    assert not window.undo_action.isEnabled() and window.undo_action.text() == "Undo"


def test_data_step_excludes_and_evaluate_step_moves_undo_in_one_history_last_first(window, qtbot, tmp_path,
                                                                                   tmp_path_factory):
    model = tiny_model(tmp_path_factory)
    data = copy_dataset(model.data_dir, tmp_path / "data")
    for name in ("first.jpg", "third.jpg"):
        (data / "red" / name).write_bytes(b"not an image at all")
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(data))
    _exclude_problem(window, qtbot, "first.jpg")  # 1: on the Data step
    window.open_model_file(str(model.model_file))
    page = window.pages["Evaluate"]
    qtbot.waitUntil(lambda: page.evaluation is not None, timeout=TIMEOUT_MS)  # arriving at the step evaluates
    page.matrix.choose_cell(0, int(page.evaluation.predicted[page.evaluation.true == 0][0]))
    gallery = page.cell_gallery
    second = gallery.items[0].path
    source_class = page.evaluation.classes[0]
    target = next(name for name in page.evaluation.classes if name != source_class)
    gallery.select_rows([0])
    gallery.class_box.setCurrentText(target)
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        gallery.move_button.click()  # 2: on the Evaluate step
    second_name = second.rsplit("/", 1)[-1]
    window.steps.go_to("Data")
    _exclude_problem(window, qtbot, "third.jpg")  # 3: on the Data step again
    expected = [("third.jpg", "red"), (second_name, source_class), ("first.jpg", "red")]
    for step, (name, folder) in zip(("Evaluate", "Data", "Evaluate"), expected):
        assert window.undo_action.isEnabled()
        assert name in window.undo_action.text() and f"{folder}/" in window.undo_action.text()
        window.steps.go_to(step)
        _undo_with_ctrl_z(window, qtbot, window.pages[step])
        assert (data / folder / name).is_file(), f"{name} is not back in {folder}/"
    assert not window.undo_action.isEnabled()
    assert not (data / EXCLUDED).exists() and not (data / target / second_name).exists()
    assert page.images.current_paths[list(page.evaluation.paths).index(second)] == second  # the gallery follows


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


def test_start_waits_for_the_scan_of_a_newly_chosen_folder(window, qtbot, tiny_dataset, tmp_path):
    """With a data set loaded, choosing another folder must not leave Start on the old one meanwhile."""
    import shutil

    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(tiny_dataset))
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    train = window.pages["Train"]
    said = []
    window.session.statusMessage.connect(said.append)
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(other))
        # the scan runs in the background: until it reports, the old data set is still the session's
        assert not train.start_button.isEnabled() and str(other) in train.start_button.toolTip()
        window._start_training()  # Train > Start Training (Ctrl+R) does not start on the old data set
        assert not train.running and "once" in said[-1] and str(other) in said[-1]
    assert window.session.scan.root == other
    assert train.start_button.isEnabled() and "Ctrl+R" in train.start_button.toolTip()


def test_the_runs_fork_server_starts_with_the_window_not_with_the_first_run(qtbot, monkeypatch):
    """The fork server takes seconds to import torch; started when the window is shown, the first
    run's loader workers and model-file child do not wait for it (gui/processes.py)."""
    from tl_studio.gui import processes
    from tl_studio.gui.launch import start_up_finished

    started = []
    monkeypatch.setattr(processes, "start_child_process_server", lambda: started.append(True))
    main_window = MainWindow()
    qtbot.addWidget(main_window)
    main_window.show()
    qtbot.waitUntil(lambda: start_up_finished(main_window), timeout=120_000)
    assert started == [True]
    main_window.close()


def test_the_recent_folders_and_edit_undo_show_names_with_an_ampersand_as_written(window, qtbot, tmp_path):
    """A menu entry takes "&" for its keyboard shortcut: the folder ants&bees was listed as "antsbees"
    (the b underlined) under File > Open Recent, and Edit > Undo named the file x&y.jpg "xy.jpg"."""
    from tests.helpers import make_image_folder

    data_dir = make_image_folder(tmp_path / "ants&bees", per_class=6)
    (data_dir / "red" / "x&y.jpg").write_bytes(b"not an image at all")
    with qtbot.waitSignal(window.session.datasetChanged, timeout=TIMEOUT_MS):
        window.open_folder(str(data_dir))
    window.recent_menu.aboutToShow.emit()
    # iconText: the entry's text as the menu shows it, without its shortcut marks
    assert [action.iconText() for action in window.recent_menu.actions()] == [str(data_dir.resolve())]
    window.pages["Data"].tabs.setCurrentWidget(window.pages["Data"].problems)
    _exclude_problem(window, qtbot, "x&y.jpg")
    assert window.undo_action.iconText() == "Undo: exclude x&y.jpg (back to red/)"


def test_the_window_fits_a_small_laptop_screen_on_every_step_with_a_model_evaluated(window, qtbot, tmp_path,
                                                                                   tmp_path_factory):
    # 1000 x 620 is what a 1366 x 768 laptop leaves a window; the window is as large as the largest
    # minimum of its steps (a QStackedWidget's), so one tall or wide step grew it whichever step showed:
    # the Export step (choices, snippet and comparison, about 650 px tall) and the Evaluate step's
    # metrics row once a model was evaluated
    from PySide6.QtCore import QSize

    from tl_studio.gui.steps import STEPS

    model = tiny_model(tmp_path_factory)
    window.session.set_dataset(scan_dataset(copy_dataset(model.data_dir, tmp_path / "data")))
    window.resize(1400, 900)
    window.open_model_file(str(model.model_file))
    page = window.pages["Evaluate"]
    with qtbot.waitSignal(page.evaluated, timeout=TIMEOUT_MS):
        window._go_to("Evaluate")
    table = page.metrics.table  # every figure fits its column: F1 showed "0.9…" here, sized to its header
    assert all(table.columnWidth(column) >= table.sizeHintForColumn(column) for column in range(1, 5))
    window.resize(1000, 620)
    area = window.page_area  # a window smaller than a step needs scrolls it: at 1000 x 620 none may
    for step in STEPS:
        window._go_to(step)
        QApplication.processEvents()
        hint = window.stack.minimumSizeHint()
        assert hint.boundedTo(area.viewport().size()) == hint, (step, hint, area.viewport().size())
        assert not area.verticalScrollBar().isVisible() and not area.horizontalScrollBar().isVisible(), step
    assert window.size() == QSize(1000, 620)


def test_a_window_smaller_than_a_step_scrolls_the_step_instead_of_outgrowing_the_screen(window, qtbot,
                                                                                      tiny_dataset):
    """At 2x scaling on a 1600 x 1000 screen (800 x 500 to lay out) the window's minimum, its largest
    step's (809 x 537), overhung the screen: Start training and the status line were beyond its edge."""
    from PySide6.QtCore import QSize

    from PySide6.QtWidgets import QPushButton

    hint = window.minimumSizeHint()
    assert hint.boundedTo(QSize(640, 400)) == hint, hint
    window.session.set_dataset(scan_dataset(tiny_dataset))
    window.resize(700, 450)
    QApplication.processEvents()
    assert window.size() == QSize(700, 450)
    area, page = window.page_area, window.stack.currentWidget()  # the Data step: the tallest
    assert area.focusPolicy() == Qt.NoFocus  # Tab goes from control to control, never to the area itself
    assert area.verticalScrollBar().isVisible() and area.verticalScrollBar().maximum() > 0
    buttons = [button for button in page.findChildren(QPushButton) if button.isVisibleTo(page)]
    lowest = max(buttons, key=lambda button: button.mapTo(page, button.rect().bottomLeft()).y())
    assert lowest.mapTo(page, lowest.rect().bottomLeft()).y() > area.viewport().height()  # below the edge
    area.ensureWidgetVisible(lowest)  # what scrolling does: it comes within reach
    QApplication.processEvents()
    assert area.viewport().rect().contains(lowest.mapTo(area.viewport(), lowest.rect().center()))


def test_the_menus_offer_what_the_step_bar_and_the_train_step_offer(window, tmp_path_factory):
    # Go > Export (Ctrl+5) was enabled beside a greyed-out step and said "finish the previous step";
    # Train > Pause and Stop were enabled with no run and did nothing
    from tl_studio.gui.steps import STEPS

    def offered():
        return {name for name in STEPS if window.go_actions[name].isEnabled()}

    assert offered() == {"Data", "Runs"}
    assert "(open a data folder first)" in window.steps.item(STEPS.index("Model")).toolTip()
    assert "(train a model first)" in window.steps.item(STEPS.index("Export")).toolTip()
    model = tiny_model(tmp_path_factory)
    window.session.set_dataset(scan_dataset(model.data_dir))
    assert offered() == {"Data", "Model", "Train", "Runs"}
    window.open_model_file(str(model.model_file))
    assert offered() == set(STEPS)
    assert not any(action.isEnabled() for action in window.run_actions)
    assert all(action.isEnabled() for action in window.start_actions)
    window.session.set_training(True)  # Pause and Stop offered; Start and Resume a Run greyed, as the buttons are
    assert all(action.isEnabled() for action in window.run_actions)
    assert not any(action.isEnabled() for action in window.start_actions)
    window.session.set_training(False)
    assert not any(action.isEnabled() for action in window.run_actions)
    assert all(action.isEnabled() for action in window.start_actions)


def test_each_step_shows_the_last_sentence_said_on_it_not_another_steps(window, monkeypatch):
    """"Choose a folder of labelled images to begin" stood on the Runs step; a sentence said by what
    changes the step (a run opened, the step its model opens in) still goes with it."""
    import tl_studio.gui.status_line as status_line

    clock = {"now": 1000.0}
    monkeypatch.setattr(status_line.time, "monotonic", lambda: clock["now"])
    status = window._status
    hint = status.text()
    assert hint.startswith("Choose a folder")
    window.steps.go_to("Runs")
    assert status.text() == ""  # the Runs step has said nothing
    window.session.say("Starred first.")
    clock["now"] += 30
    window.steps.go_to("Data")
    assert status.text() == hint
    window.steps.go_to("Runs")
    assert window.stack.currentWidget() is window.pages["Runs"] and status.text() == "Starred first."
    clock["now"] += 30
    window.session.say("Reading ants…")  # as opening a folder says, then shows the Data step
    clock["now"] += 0.1
    window.steps.go_to("Data")
    assert window.stack.currentWidget() is window.pages["Data"] and status.text() == "Reading ants…"
    clock["now"] += 30  # the Runs step keeps its own sentence: "Reading ants…" went to the Data step
    window.steps.go_to("Runs")
    assert status.text() == "Starred first."


def test_a_runs_progress_waits_on_the_train_step_while_another_step_is_shown(window, monkeypatch):
    """The epochs that ended while the user looked at the Runs step were said there, and the Train step
    still read "Epoch 3" when its bar was at epoch 5."""
    import tl_studio.gui.status_line as status_line

    clock = {"now": 1000.0}
    monkeypatch.setattr(status_line.time, "monotonic", lambda: clock["now"])
    status = window._status
    window.steps.go_to("Runs")
    window.session.say("Starred first.")
    clock["now"] += 30
    window.session.say("Epoch 4: val accuracy 0.900", "Train")
    window.session.say("Epoch 5: val accuracy 0.910", "Train")
    assert status.text() == "Starred first."  # the step shown keeps its own sentence
    clock["now"] += 30
    window.steps.go_to("Train")
    assert status.text() == "Epoch 5: val accuracy 0.910"
    window.session.say("Epoch 6: val accuracy 0.920", "Train")  # on the step shown: shown at once
    assert status.text() == "Epoch 6: val accuracy 0.920"


def test_the_first_window_fits_the_screen(qtbot):
    """A first start made the window 1280 x 820 on any screen: on a 1024 x 700 one, or at 2x scaling, the
    Data step's split controls and the status line were off screen."""
    from tl_studio.gui.main_window import FIRST_SIZE

    window = MainWindow()
    qtbot.addWidget(window)
    room = window.screen().availableGeometry()
    assert window.width() == min(FIRST_SIZE[0], room.width()) and window.height() == min(FIRST_SIZE[1], room.height())
    assert room.width() < FIRST_SIZE[0]  # the test screen (offscreen: 800 x 800) is the small case
    window.close()


def test_the_quit_question_keeps_its_buttons_where_they_were_when_its_words_change(qtbot, monkeypatch):
    """Asked while the model file was written and left open until it was, the question became the shorter
    "The run has ended and its results are saved. Quit?" and Yes and No moved 100 px: a click meant for
    No landed beside it."""
    from PySide6.QtCore import QObject, Signal

    from tl_studio.gui.main_window import ask_to_quit_while_training

    class Controller(QObject):
        epochEnded, finished = Signal(object), Signal(object)

    class Run(QObject):  # the Train step as the question reads it: writing its model file, then done
        runFinished = Signal(object)
        controller = Controller()
        running, writing_model_file, epoch_finished = True, True, True

    run = Run()
    seen = []

    def left_open_until_the_file_is_written(box):
        box.show()
        qtbot.waitExposed(box)
        no = box.button(QMessageBox.No)
        seen.append((box.text(), no.mapTo(box, no.rect().topLeft()), box.size()))
        run.running = run.writing_model_file = False
        run.runFinished.emit(None)
        QApplication.sendPostedEvents()
        QApplication.processEvents()
        seen.append((box.text(), no.mapTo(box, no.rect().topLeft()), box.size()))
        return QMessageBox.No

    monkeypatch.setattr(QMessageBox, "exec", left_open_until_the_file_is_written)
    assert ask_to_quit_while_training(None, run) == QMessageBox.No
    (before, no_before, size_before), (after, no_after, size_after) = seen
    assert "Quit once it is written?" in before and after == "The run has ended and its results are saved. Quit?"
    assert no_after == no_before and size_after.width() >= size_before.width()


def test_a_sentence_of_work_that_names_its_step_stays_on_it_when_the_user_goes_elsewhere(window):
    """An evaluation that ended as the user went to the Runs step left "Evaluated 153 images: accuracy
    0.961" on the Runs step, about a run other than the one it showed; a sentence of the action that
    changes the step still goes with it."""
    window.steps.go_to("Evaluate")
    window.session.say("Evaluated 153 images: accuracy 0.961, macro-F1 0.961.", "Evaluate")
    window.steps.go_to("Runs")  # within the second
    assert window._status.text() != "Evaluated 153 images: accuracy 0.961, macro-F1 0.961."
    window.steps.go_to("Evaluate")
    assert window._status.text() == "Evaluated 153 images: accuracy 0.961, macro-F1 0.961."
    window.session.say("Opening run lite0…")  # the click that goes to another step
    window.steps.go_to("Runs")
    assert window._status.text() == "Opening run lite0…"


def test_start_training_with_no_data_set_stays_on_the_data_step_and_says_what_first(window, monkeypatch):
    """Train > Start Training at start-up showed a message box, then the greyed-out Train step with no step
    highlighted in the list."""
    monkeypatch.setattr(QMessageBox, "information", lambda *args: pytest.fail("a message box"))
    start = next(action for action in window.start_actions if action.shortcut().toString() == "Ctrl+R")
    start.trigger()
    assert window.steps.currentRow() == 0 and window.pages["Train"].isHidden()
    assert window._status.text() == ("Choose a folder of labelled images first; then Start Training (Ctrl+R) trains "
                                     "on it.")
