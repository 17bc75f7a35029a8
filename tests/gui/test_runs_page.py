"""The Runs step as a user sees it: the table filled in the background (a live run and a failed one
among them), filter, "only columns that differ", comparison, the best-run hint, star/note/rename,
delete with undo, and a run handed on to the other steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from tests.run_folders import append_batch, append_epoch, write_run
from tl_studio.core.run_folder import RunFolder
from tl_studio.core.run_history import summarize_run
from tl_studio.gui import run_edits
from tl_studio.gui.runs_table import COLUMNS
from tl_studio.gui.session import Session

FAILED_REASON = "GPU out of memory at batch size 8; lower the batch size or the image size."


@pytest.fixture
def runs_dir():
    root = os.environ["TL_STUDIO_RUNS_DIR"]  # a private folder per test (tests/gui/conftest.py)
    return Path(root)


@pytest.fixture
def runs(runs_dir):
    write_run(runs_dir / "lite0", final_acc=0.90, started=1_000_000)
    write_run(runs_dir / "resnet", model="resnet18", freeze="none", lr=3e-4, final_acc=0.96, started=2_000_000)
    write_run(runs_dir / "oom", state="failed", reason=FAILED_REASON, epochs=5, done=1, started=3_000_000)
    live = write_run(runs_dir / "live", state="running", epochs=6, done=2, started=4_000_000)
    lock = RunFolder(live).lock()  # "another process" training it
    yield runs_dir
    lock.release()


@pytest.fixture
def page(qtbot, runs):
    from tl_studio.gui.pages.runs_page import RunsPage

    session = Session()
    widget = RunsPage(session)
    widget.live.timer.setInterval(50)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.loader.finished, timeout=10_000):
        widget.show()  # the first show reads the runs folder, in the background
    yield widget
    widget.shutdown()


def cell(page, name: str, title: str) -> str:
    column = [c.title for c in COLUMNS].index(title)
    for row in range(page.proxy.rowCount()):
        if page.proxy.index(row, 1).data() == name:
            return page.proxy.index(row, column).data()
    raise AssertionError(f"no row {name}")


def test_every_run_is_listed_with_its_status(page, runs):
    assert page.proxy.rowCount() == 4
    assert [page.proxy.index(row, 1).data() for row in range(4)] == ["live", "oom", "resnet", "lite0"]  # newest first
    assert cell(page, "live", "Status") == "running (2/6 · epoch 2 done)"
    assert cell(page, "oom", "Status") == f"failed: {FAILED_REASON}"
    assert cell(page, "resnet", "Model") == "resnet18" and cell(page, "resnet", "Epochs") == "5/5"
    assert cell(page, "resnet", "Schedule") == "One-cycle"  # the Train step's word, not "onecycle"
    assert cell(page, "resnet", "Val acc") == f"{summarize_run(runs / 'resnet').best_val_acc:.1%}"
    assert cell(page, "resnet", "Val acc").startswith("96.")
    assert "4 runs, 1 training now" in page.count_label.text()
    page.filter_edit.setText("resnet")  # "4 runs" stood over the one row the filter left
    assert page.count_label.text() == "1 of 4 runs shown, 1 training now"
    page.filter_edit.clear()
    assert page.count_label.text() == "4 runs, 1 training now"


def test_the_table_is_filled_off_the_gui_thread(qtbot, runs):
    from tl_studio.gui.pages.runs_page import RunsPage

    widget = RunsPage(Session())
    qtbot.addWidget(widget)
    widget.show()
    assert widget.model.rowCount() == 0  # show() returned before any folder was read
    qtbot.waitUntil(lambda: widget.model.rowCount() == 4, timeout=10_000)
    widget.shutdown()


def test_a_live_run_updates_when_its_files_change(page, qtbot, runs):
    append_batch(runs / "live", 3, 5, 10)  # mid-epoch: only events.jsonl moves on
    qtbot.waitUntil(lambda: cell(page, "live", "Status") == "running (2/6 · epoch 3, batch 5/10)", timeout=5000)
    append_epoch(runs / "live", 3, 0.2, 0.97)
    qtbot.waitUntil(lambda: cell(page, "live", "Status") == "running (3/6 · epoch 3 done)", timeout=5000)


def test_sort_by_accuracy_and_filter_by_text(page):
    page.table.sortByColumn([c.title for c in COLUMNS].index("Val acc"), Qt.DescendingOrder)
    assert page.proxy.index(0, 1).data() == "resnet"
    page.filter_edit.setText("RESNET")
    assert page.proxy.rowCount() == 1
    page.filter_edit.setText("out of memory")
    assert [page.proxy.index(r, 1).data() for r in range(page.proxy.rowCount())] == ["oom"]


def test_only_columns_that_differ(page):
    titles = [c.title for c in COLUMNS]
    page.filter_edit.setText("5/5")  # the two finished runs: lite0 and resnet
    page.differ_box.setChecked(True)
    shown = [t for i, t in enumerate(titles) if not page.table.isColumnHidden(i)]
    assert {"Name", "Model", "Freeze", "LR", "Val acc"} <= set(shown)
    assert "Schedule" not in shown and "Data set" not in shown and "Status" not in shown
    page.differ_box.setChecked(False)
    assert not any(page.table.isColumnHidden(i) for i in range(len(titles)))


def test_selecting_two_runs_overlays_their_curves_and_diffs_their_settings(page, runs):
    page.select_paths([str(runs / "lite0"), str(runs / "resnet")])
    assert sorted(page.curves.shown) == ["lite0", "resnet"]
    legend = page.curves.accuracy_plot.getPlotItem().legend
    assert sorted(label.text for _, label in legend.items) == ["lite0", "resnet"]
    assert set(page.diff_table.differences) == {"model", "freeze", "lr"}
    lr_row = list(page.diff_table.differences).index("lr")
    texts = {page.diff_table.horizontalHeaderItem(c).text(): page.diff_table.item(lr_row, c).text() for c in range(2)}
    assert texts == {"lite0": "0.001 (default)", "resnet": "0.0003"}  # the rate each run actually used
    freeze_row = list(page.diff_table.differences).index("freeze")
    texts = {page.diff_table.horizontalHeaderItem(c).text(): page.diff_table.item(freeze_row, c).text()
             for c in range(2)}
    assert texts == {"lite0": "backbone", "resnet": "nothing"}  # not "all" and "none" of what
    assert page.validation.compare_button.isEnabled()


def test_a_freeze_depth_is_named_in_the_table_as_the_stages_it_freezes():
    from tl_studio.gui.runs_table import freeze_words

    assert [freeze_words(value) for value in ("all", "none", "3", "1")] == \
        ["backbone", "nothing", "first 3 stages", "first 1 stage"]


def test_two_runs_of_the_same_settings_say_so_in_one_cell_under_no_runs_name(page, runs):
    """The sentence sat in the first run's column, an empty column of the second beside it."""
    page.diff_table.show_runs([summarize_run(runs / "lite0")] * 2)
    assert page.diff_table.columnCount() == 1 and page.diff_table.horizontalHeaderItem(0).text() == ""
    assert page.diff_table.item(0, 0).text() == "These runs used the same settings."


def test_best_run_hint_and_its_link(page, runs):
    assert page.best_label.isVisible() and "resnet" in page.best_label.text()
    page.best_label.linkActivated.emit(str(runs / "resnet"))
    assert [run.name for run in page.selected_runs()] == ["resnet"]


def test_star_note_and_rename_are_kept_with_the_run(page, runs, monkeypatch):
    page.select_paths([str(runs / "lite0")])
    page.edits.toggle_star()
    assert cell(page, "lite0", "★") == "★"
    monkeypatch.setattr(run_edits, "ask_name", lambda *a, **k: ("Baseline", True))
    page.edits.rename_selected()
    assert cell(page, "Baseline", "Model") == "efficientnet_lite0"
    monkeypatch.setattr(QInputDialog, "getMultiLineText", lambda *a, **k: ("try a bigger model", True))
    page.edits.edit_note()

    saved = summarize_run(runs / "lite0")
    assert (saved.name, saved.starred, saved.note) == ("Baseline", True, "try a bigger model")
    # another run may not take that name: two "Baseline" rows could not be told apart
    said = []
    page.session.statusMessage.connect(said.append)
    page.select_paths([str(runs / "resnet")])
    page.edits.rename_selected()
    assert summarize_run(runs / "resnet").name == "resnet"
    assert said[-1] == f"Another run is named Baseline ({runs / 'lite0'}); choose another name."
    page.select_paths([str(runs / "lite0")])
    page.edits.rename_selected()  # its own name again: fine, and the refusal no longer stands
    assert summarize_run(runs / "lite0").name == "Baseline" and said[-1] == "Renamed to Baseline."


def private_trash(tmp_path, monkeypatch) -> Path:
    """A trash of the test's own, never the user's; returns its data folder."""
    import send2trash.plat_other as freedesktop

    data_home = tmp_path / "xdg"
    monkeypatch.setattr(freedesktop, "XDG_DATA_HOME", os.fsencode(data_home))
    monkeypatch.setattr(freedesktop, "HOMETRASH_B", os.fsencode(data_home / "Trash"))
    monkeypatch.setattr(freedesktop, "HOMETRASH", str(data_home / "Trash"))
    monkeypatch.setattr("send2trash.send2trash", freedesktop.send2trash)
    return data_home


def test_delete_moves_to_the_trash_and_undo_brings_it_back(page, runs, tmp_path, monkeypatch, qtbot):
    data_home = private_trash(tmp_path, monkeypatch)
    page.select_paths([str(runs / "oom")])
    page.filter_edit.setFocus()
    qtbot.keyClick(page.filter_edit, Qt.Key_Delete)  # in the filter box, Delete edits the text
    assert (runs / "oom").exists()
    page.table.setFocus()
    qtbot.keyClick(page.table, Qt.Key_Delete)
    assert not (runs / "oom").exists() and page.proxy.rowCount() == 3
    assert (data_home / "Trash" / "files" / "oom").is_dir()
    said = []
    page.session.statusMessage.connect(said.append)
    page.edits.undo_delete()
    assert (runs / "oom" / "status.json").is_file() and page.proxy.rowCount() == 4
    assert said[-1] == "Put oom back."  # "Moved oom to the trash. Undo delete puts it back." stood
    page.select_paths([str(runs / "oom")])
    page.edits.toggle_star()
    assert said[-1] == "Starred oom."  # the last action's line stood
    monkeypatch.setattr(run_edits, "ask_name", lambda *a, **k: ("Out of memory", True))
    page.edits.rename_selected()
    page.edits.delete_selected()  # named as the table shows it, not by its folder
    assert said[-1] == "Moved Out of memory to the trash. Undo delete puts it back."
    page.edits.undo_delete()
    assert said[-1] == "Put Out of memory back."


def test_deleting_the_run_the_steps_use_lets_go_of_its_model_until_undo(page, runs, tmp_path, monkeypatch, qtbot):
    """Export kept "Exporting the best epoch of …/lite0" and Predict its model after the run was deleted,
    and their buttons then said "No model file at …/model.pt2"; an undo gives the model back."""
    from tl_studio.gui.pages.export_page import NO_RUN, ExportPage

    private_trash(tmp_path, monkeypatch)
    session = page.session
    export = ExportPage(session)
    qtbot.addWidget(export)
    models = []
    session.modelFileChanged.connect(models.append)
    session.set_run(runs / "lite0", runs / "lite0" / "model.pt2")
    assert export.export_button.isEnabled() and "lite0" in export.run_label.text()
    said = []
    session.statusMessage.connect(said.append)

    page.select_paths([str(runs / "resnet")])  # another run: the steps keep theirs
    page.edits.delete_selected()
    assert session.model_file == runs / "lite0" / "model.pt2"
    assert said[-1] == "Moved resnet to the trash. Undo delete puts it back."
    page.edits.undo_delete()

    page.select_paths([str(runs / "lite0")])
    page.edits.delete_selected()
    assert session.run_dir is None and session.model_file is None and models[-1] is None
    assert not export.export_button.isEnabled() and export.run_label.text() == NO_RUN
    assert said[-1] == ("Moved lite0 to the trash; Evaluate, Export and Predict no longer use its model. Undo delete "
                        "puts it back.")
    page.edits.undo_delete()
    assert session.run_dir == runs / "lite0" and session.model_file == runs / "lite0" / "model.pt2"
    assert export.export_button.isEnabled() and "lite0" in export.run_label.text()


def test_edit_undo_on_the_runs_step_puts_the_deleted_run_back(qtbot, runs, tmp_path, monkeypatch):
    """Ctrl+Z (Edit > Undo) undid only the data set's moves: on the Runs step it undoes the last delete
    of runs, as the step's Undo delete button does, and names it; elsewhere it is the data set's again."""
    from shiboken6 import isValid

    from tl_studio.gui.main_window import MainWindow

    private_trash(tmp_path, monkeypatch)
    window = MainWindow()
    window.show()
    qtbot.waitUntil(lambda: hasattr(window, "warm_up"), timeout=10_000)
    page = window.pages["Runs"]
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        window.steps.go_to("Runs")
    page.select_paths([str(runs / "oom")])
    page.edits.delete_selected()
    assert not (runs / "oom").exists()
    assert window.undo_action.isEnabled() and window.undo_action.text() == "Undo: put oom back from the trash"
    window.steps.go_to("Data")  # the data set's history, which has nothing to undo
    assert not window.undo_action.isEnabled() and window.undo_action.text() == "Undo"
    window.steps.go_to("Runs")
    window.undo_action.trigger()
    assert (runs / "oom" / "status.json").is_file() and page.proxy.rowCount() == 4
    assert not window.undo_action.isEnabled() and not page.edits.undo_button.isEnabled()
    runners = [window.warm_up, *(p.tasks for p in window.pages.values() if hasattr(p, "tasks"))]
    qtbot.waitUntil(lambda: not any(runner.tasks for runner in runners), timeout=60_000)
    window.close()
    qtbot.waitUntil(lambda: not isValid(window), timeout=60_000)


def test_a_running_run_cannot_be_deleted_or_opened(page, runs):
    page.select_paths([str(runs / "live")])
    assert not page.edits.delete_button.isEnabled() and not page.open_button.isEnabled()


def test_open_hands_the_folder_on_and_a_failed_run_offers_resume(page, runs, qtbot):
    page.select_paths([str(runs / "live")])
    assert not page.resume_button.isEnabled()  # another process trains it
    page.select_paths([str(runs / "resnet")])
    with qtbot.waitSignal(page.runOpened) as opened:
        page.open_button.click()
    assert opened.args == [runs / "resnet"]
    # a finished run trains further: the Train step asks for the new number of epochs (0: ask)
    assert page.resume_button.isEnabled() and page.resume_button.text() == "Train further…"
    with qtbot.waitSignal(page.resumeRequested) as further:
        page.resume_button.click()
    assert further.args == [runs / "resnet", 0]
    page.select_paths([str(runs / "oom")])
    assert page.resume_button.isEnabled() and page.resume_button.text() == "Resume"
    with qtbot.waitSignal(page.resumeRequested) as resumed:
        page.resume_button.click()
    assert resumed.args == [runs / "oom", 5]  # continue up to the 5 epochs it planned


def test_the_main_window_has_the_runs_step_and_hands_runs_to_evaluate_and_train(qtbot, runs, monkeypatch):
    from shiboken6 import isValid

    from tl_studio.gui.main_window import MainWindow
    from tl_studio.gui.pages.train_page import TrainPage
    from tl_studio.gui.steps import STEPS

    resumed = []
    def resume_run(page, folder, epochs=None):  # as the run starts (the session says a run is active)
        resumed.append((folder, epochs))
        page.session.set_training(True)

    monkeypatch.setattr(TrainPage, "resume_run", resume_run)
    # the generated runs hold placeholder model files: this test is about the hand-over, not the file check
    # (tests/gui/test_model_trust.py covers that), and a refusal would open a modal box offscreen
    monkeypatch.setattr("tl_studio.core.model_file.check_model_file", lambda path, fmt=None: "pt2")
    window = MainWindow()
    window.show()
    qtbot.waitUntil(lambda: hasattr(window, "warm_up"), timeout=10_000)
    assert "Runs" in STEPS
    assert window.steps.item(STEPS.index("Runs")).flags() & Qt.ItemIsEnabled  # before any data set is chosen
    window.pages["Runs"].runOpened.emit(runs / "resnet")
    assert window.session.model_file == runs / "resnet" / "model.pt2"
    assert window.session.run_dir == runs / "resnet"
    assert window.steps.currentRow() == STEPS.index("Evaluate")
    window.pages["Runs"].resumeRequested.emit(runs / "oom", 5)
    assert resumed == [(runs / "oom", 5)] and window.steps.currentRow() == STEPS.index("Train")
    # no data folder is open, but the run trains: its step is not greyed out
    assert window.session.scan is None and window.steps.item(STEPS.index("Train")).flags() & Qt.ItemIsEnabled
    window.pages["Runs"].resumeRequested.emit(runs / "resnet", 0)  # a finished run: the Train step asks
    assert resumed[-1] == (runs / "resnet", None)
    window.session.set_training(False)
    assert not window.steps.item(STEPS.index("Train")).flags() & Qt.ItemIsEnabled
    # let the other steps finish what opening a model started (their own background tasks) first
    runners = [window.warm_up, *(p.tasks for p in window.pages.values() if hasattr(p, "tasks"))]
    qtbot.waitUntil(lambda: not any(runner.tasks for runner in runners), timeout=60_000)
    window.close()  # the window deletes itself on close, after stopping its pages' work
    qtbot.waitUntil(lambda: not isValid(window), timeout=60_000)


def test_two_runs_on_the_same_validation_images_show_where_they_disagree(qtbot, tiny_dataset, runs_dir, monkeypatch):
    from tests.core.test_run_compare import FakeModelFile
    from tl_studio.gui.pages.runs_page import RunsPage

    write_run(runs_dir / "good", data_dir=str(tiny_dataset), started=1_000_000)
    write_run(runs_dir / "always-red", data_dir=str(tiny_dataset), started=2_000_000)
    monkeypatch.setattr("tl_studio.core.model_file.load_model_file", lambda path, fmt=None: FakeModelFile(
        ["blue", "green", "red"], "colour" if path.parent.name == "good" else "red"))
    page = RunsPage(Session())
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.show()
    page.select_paths([str(runs_dir / "good"), str(runs_dir / "always-red")])
    pair = [run.name for run in page.validation.pair]
    compare = page.validation
    assert compare.compare_button.isEnabled()
    compare.compare_button.click()
    qtbot.waitUntil(lambda: compare.result is not None, timeout=120_000)
    accuracy = {pair[0]: compare.result.accuracy_a, pair[1]: compare.result.accuracy_b}
    from tl_studio.core.data import scan_dataset

    scan = scan_dataset(tiny_dataset)
    names = [scan.classes[r.label] for r in scan.split("val")]
    assert accuracy == {"good": 1.0, "always-red": pytest.approx(names.count("red") / len(names))}
    assert compare.thumbnails.rowCount() == len(names) - names.count("red")  # the blue and green images "always-red" gets wrong
    true_class, answer_a, answer_b = compare.thumbnails.captions[0].split("\n")
    assert true_class in ("true: blue", "true: green")  # the images "always-red" gets wrong
    right, wrong = (answer_a, answer_b) if pair[0] == "good" else (answer_b, answer_a)
    assert right.startswith(f"{'AB'[pair.index('good')]}: {true_class[6:]} ") and wrong.endswith(": red 100%")
    assert f"disagree on {len(names) - names.count('red')} images" in compare.summary.text()
    page.shutdown()


def test_an_added_folder_is_listed_remembered_and_removed(page, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from tl_studio.gui.pages.runs_page import RunsPage

    elsewhere = tmp_path / "old-experiments"
    write_run(elsewhere / "project-x" / "run-1", model="vgg11", started=500_000)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(elsewhere))
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.add_folder_button.click()
    assert cell(page, "run-1", "Model") == "vgg11" and page.proxy.rowCount() == 5
    again = RunsPage(Session())  # a later session: the folder is still there
    qtbot.addWidget(again)
    with qtbot.waitSignal(again.loader.finished, timeout=10_000):
        again.show()
    assert again.model.run_for(str(elsewhere / "project-x" / "run-1")) is not None
    again.shutdown()
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (str(elsewhere), True))
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.remove_folder_button.click()
    assert page.proxy.rowCount() == 4 and (elsewhere / "project-x" / "run-1" / "status.json").is_file()
    assert not page.remove_folder_button.isEnabled()


def test_run_names_and_folders_are_shown_as_written(page, runs, qtbot, monkeypatch):
    """A run's folder and the name the user gives it may hold <, > and &: in the best-run hint (rich text,
    with its link), the table's tooltips, the curves' legend and the compare button's tooltip they were
    taken for markup (`<b>baseline</b>` in bold, `<i>` gone)."""
    from PySide6.QtGui import QTextDocument

    from tests.gui.shown_text import label_shows, shown

    best = write_run(runs / 'top "<i>&', final_acc=0.99, started=5_000_000)
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    assert label_shows(page.best_label).startswith('Best run: top "<i>&: best val accuracy 99')
    assert label_shows(page.best_label).endswith(" Select it.")
    (best / "model.pt2").unlink()  # stopped before its model file was written
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    assert label_shows(page.best_label).endswith(" Select it and press Open to write its model file from its best "
                                                 "epoch.")
    (best / "model.pt2").write_bytes(b"placeholder")
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    document = QTextDocument()
    document.setHtml(page.best_label.text())
    links = {fragment.fragment().charFormat().anchorHref() for block in _blocks(document) for fragment in block}
    assert str(best) in links  # the link still leads to the run
    page.best_label.linkActivated.emit(str(best))
    assert [run.path for run in page.selected_runs()] == [str(best)]

    monkeypatch.setattr(run_edits, "ask_name", lambda *a, **k: ("<b>baseline</b>", True))
    page.edits.rename_selected()
    assert label_shows(page.best_label).startswith("Best run: <b>baseline</b>: ")
    row = next(r for r in range(page.proxy.rowCount()) if page.proxy.index(r, 1).data() == "<b>baseline</b>")
    assert shown(page.proxy.index(row, 1).data(Qt.ToolTipRole)).startswith(f"{best}\nStatus: ")
    page.select_paths([str(best), str(runs / "lite0")])
    legend = page.curves.accuracy_plot.getPlotItem().legend
    assert sorted(label.item.toPlainText() for _, label in legend.items) == ["<b>baseline</b>", "lite0"]
    assert "<b>baseline</b> (" in shown(page.validation.compare_button.toolTip())


def _blocks(document):
    block = document.begin()
    while block.isValid():
        yield block
        block = block.next()


def test_long_run_names_keep_their_distinct_ends_when_shortened(page, runs_dir, qtbot):
    from PySide6.QtWidgets import QStyleOptionViewItem

    for time_of_day in ("160310", "160345"):
        write_run(runs_dir / f"hymenoptera-efficientnet_lite0-20261203-{time_of_day}", started=5_000_000)
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    name_column = [c.field for c in COLUMNS].index("name")
    shown = []
    for row in range(page.proxy.rowCount()):
        index = page.proxy.index(row, name_column)
        if index.data().startswith("hymenoptera"):
            option = QStyleOptionViewItem()
            option.textElideMode = page.table.textElideMode()  # as the view sets it before its delegate
            page.table.itemDelegateForColumn(name_column).initStyleOption(option, index)
            shown.append(option.fontMetrics.elidedText(option.text, option.textElideMode, 150))
    assert len(shown) == 2 and all("…" in text for text in shown)  # too long for the column's width
    assert sorted(text[-6:] for text in shown) == ["160310", "160345"]


def test_the_name_column_widens_to_whole_app_made_names_until_the_user_sizes_it(page, runs_dir, qtbot):
    """At 250 px an app-made name (data set, model, date and time) was cut in the middle on a wide screen."""
    from tl_studio.gui.runs_table import NAME_COLUMN, WIDTHS

    name = "hymenoptera-efficientnet_lite0-20261203-160310"
    write_run(runs_dir / name, started=5_000_000)
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    needed = page.table.fontMetrics().horizontalAdvance(name)
    assert needed > WIDTHS["name"] and page.table.columnWidth(NAME_COLUMN) > needed
    page.table.setColumnWidth(NAME_COLUMN, 200)  # as a drag of the header does
    write_run(runs_dir / (name + "-and-a-longer-copy"), started=6_000_000)
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    assert page.table.columnWidth(NAME_COLUMN) == 200  # the user's width stays


def test_the_figures_runs_are_compared_by_show_in_a_small_window(page, qtbot):
    # in a 1000 x 620 window the step is about 850 px wide: Val acc and Val loss sat past its right edge
    page.resize(850, 500)
    page.show()
    qtbot.waitExposed(page)
    for title in ("Name", "Val acc", "Val loss", "Status"):
        column = [c.title for c in COLUMNS].index(title)
        right = page.table.columnViewportPosition(column) + page.table.columnWidth(column)
        assert 0 <= page.table.columnViewportPosition(column) and right <= page.table.viewport().width(), title


def test_resume_a_run_lists_the_runs_and_selects_the_newest_that_stopped(qtbot, runs, runs_dir):
    """Train > Resume a Run… and the Train step's button opened a folder dialog: folder names only, any
    folder, run or not. They now go to the Runs step, where each run shows its state and epochs."""
    from tl_studio.gui.main_window import MainWindow
    from tl_studio.gui.steps import STEPS

    write_run(runs_dir / "stopped-old", state="stopped", epochs=8, done=3, started=500_000)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    runs_page = window.pages["Runs"]
    said = []
    window.session.statusMessage.connect(said.append)
    action = next(a for a in window.menuBar().actions() if a.text() == "&Train").menu().actions()
    resume = next(a for a in action if a.text() == "&Resume a Run…")
    runs_page.filter_edit.setText("lite0")  # a filter left from before must not hide the run chosen
    with qtbot.waitSignal(runs_page.loader.finished, timeout=10_000):
        resume.trigger()
    assert window.steps.currentRow() == STEPS.index("Runs")
    assert [run.path for run in runs_page.selected_runs()] == [str(runs / "oom")]  # newer than stopped-old
    assert runs_page.resume_button.isEnabled()
    # (the window's own start-up messages may come between: look for this one)
    assert ("oom failed after epoch 1 of 5: press Resume to continue it, or choose another run "
            "(2 can continue, 2 finished can train further).") in said
    # the Train step's own button goes the same way
    window.steps.go_to("Train")
    with qtbot.waitSignal(runs_page.loader.finished, timeout=10_000):
        window.pages["Train"].resume_button.click()
    assert window.steps.currentRow() == STEPS.index("Runs")
    runs_page.shutdown()
    window.close()


def test_with_no_run_to_continue_resume_a_run_says_so(qtbot, runs_dir):
    from tl_studio.gui.main_window import MainWindow

    write_run(runs_dir / "live", state="running", epochs=6, done=0, started=4_000_000)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    said = []
    window.session.statusMessage.connect(said.append)
    with qtbot.waitSignal(window.pages["Runs"].loader.finished, timeout=10_000):
        window._choose_run_to_resume()
    assert not window.pages["Runs"].selected_runs()
    assert any(text.startswith("No run listed here can continue") for text in said)
    window.pages["Runs"].shutdown()
    window.close()


# --- the comparison follows the selected runs -------------------------------------------------------------------


def legend_names(page) -> list[str]:
    return [label.item.toPlainText() for _, label in page.curves.accuracy_plot.getPlotItem().legend.items]


def points(page) -> list[int]:
    return [len(curve.xData) for curve in page.curves.accuracy_plot.getPlotItem().listDataItems()]


def test_the_curves_follow_a_rename_of_the_selected_run(page, runs, monkeypatch):
    """Renamed with Rename…, the row changed but the legend kept the old name until another row was
    selected."""
    page.select_paths([str(runs / "lite0")])
    assert legend_names(page) == ["lite0"]
    monkeypatch.setattr(run_edits, "ask_name", lambda *a, **k: ("Baseline", True))
    page.edits.rename_selected()
    assert legend_names(page) == ["Baseline"] and page.curves.shown == ["Baseline"]


def test_the_comparison_follows_a_rename_made_elsewhere(page, runs, qtbot):
    """Another window or `tl-studio runs` renames a selected run: the legend and the settings that
    differ name it as the table does."""
    from tl_studio.core.run_history import annotate_run

    page.select_paths([str(runs / "lite0"), str(runs / "resnet")])
    annotate_run(runs / "resnet", name="fine-tuned")
    qtbot.waitUntil(lambda: sorted(legend_names(page)) == ["fine-tuned", "lite0"], timeout=5000)
    headers = [page.diff_table.horizontalHeaderItem(c).text() for c in range(page.diff_table.columnCount())]
    assert sorted(headers) == ["fine-tuned", "lite0"]


def test_a_finished_run_trained_further_shows_its_new_epochs(page, runs, qtbot):
    """A finished run, selected, trained further (Train further… or the CLI): LiveRuns followed only
    the runs that were training when the folder was listed, so its curves stopped at the old last epoch
    until another row was selected and this one again."""
    import json

    page.select_paths([str(runs / "resnet")])
    assert points(page) == [5, 5]
    status_file = runs / "resnet" / "status.json"
    status = json.loads(status_file.read_text())
    status.update(state="running", planned_epochs=7, ended=None)
    status_file.write_text(json.dumps(status))
    lock = RunFolder(runs / "resnet").lock()
    try:
        append_epoch(runs / "resnet", 6, 0.2, 0.97)
        qtbot.waitUntil(lambda: points(page) == [6, 6], timeout=5000)
        assert cell(page, "resnet", "Status").startswith("running (6/7")
        append_epoch(runs / "resnet", 7, 0.19, 0.975)
        qtbot.waitUntil(lambda: points(page) == [7, 7], timeout=5000)
    finally:
        lock.release()
    status.update(state="done", epochs_done=7, ended=status["started"] + 100)
    status_file.write_text(json.dumps(status))
    qtbot.waitUntil(lambda: cell(page, "resnet", "Status") == "done", timeout=5000)
    assert points(page) == [7, 7] and [run.name for run in page.selected_runs()] == ["resnet"]


def test_one_selected_run_says_which_line_is_validation(page, runs):
    page.select_paths([str(runs / "lite0")])
    assert page.curves.hint.text().startswith("Solid: validation; dashed: training.")
    page.select_paths([str(runs / "lite0"), str(runs / "resnet")])
    assert page.curves.hint.text() == "Solid: validation; dashed: training."
    page.select_paths([])
    assert "validation" not in page.curves.hint.text() and page.curves.legend_view.isHidden()


@pytest.mark.parametrize("size", [(850, 500), (1250, 780)])  # the step in a 1000 x 620 and a 1400 x 900 window
def test_the_legend_hides_no_curve_and_shows_every_name_whole(page, runs, qtbot, size):
    """The legend sat inside both plots, over the curves (at 1000 x 620 over half of each plot)."""
    from PySide6.QtCore import QPoint, QRect

    names = ["flowers-efficientnet_lite0-20261203-160310", "flowers-resnet18-20261203-154501", "lite0"]
    for name in names[:2]:
        write_run(runs / name, epochs=12, started=5_000_000)
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    page.resize(*size)
    page.show()
    qtbot.waitExposed(page)
    page.select_paths([str(runs / name) for name in names])
    curves = page.curves
    legend = curves.accuracy_plot.getPlotItem().legend
    legend_view = legend.scene().views()[0]

    def on_page(widget, scene_rect) -> QRect:
        rect = widget.mapFromScene(scene_rect).boundingRect()
        return QRect(widget.mapTo(page, rect.topLeft()), rect.size())

    def placed():
        legend_rect = on_page(legend_view, legend.sceneBoundingRect())
        for plot in (curves.loss_plot, curves.accuracy_plot):
            view_box = plot.getPlotItem().getViewBox()
            assert not legend_rect.intersects(on_page(plot, view_box.sceneBoundingRect()))
        shown = QRect(legend_view.mapTo(page, QPoint(0, 0)), legend_view.viewport().size())
        for _, label in legend.items:
            assert shown.contains(on_page(legend_view, label.sceneBoundingRect())), label.text

    qtbot.waitUntil(placed, timeout=5000)
    assert sorted(legend_names(page)) == names


def test_a_renamed_pair_keeps_its_comparison_on_the_validation_images(qtbot):
    import dataclasses
    from types import SimpleNamespace

    from tl_studio.core.run_history import RunSummary
    from tl_studio.gui.run_compare import ValidationCompare

    compare = ValidationCompare()
    qtbot.addWidget(compare)
    a = RunSummary(path="/runs/a", name="a", status="done", epochs_done=5, has_model_file=True)
    b = RunSummary(path="/runs/b", name="b", status="done", epochs_done=5, has_model_file=True)
    compare.set_runs([a, b])
    result = SimpleNamespace(images=10, accuracy_a=0.9, accuracy_b=0.8, disagreements=[], note="")
    compare.show_result(result)
    compare.set_runs([dataclasses.replace(a, name="baseline", starred=True), b])
    assert compare.result is result and "baseline" in compare.summary.text()
    compare.set_runs([a, dataclasses.replace(b, epochs_done=7)])  # b trained further: another model
    assert compare.result is None and "On 10 validation images" not in compare.summary.text()
    compare.show_result(result)
    compare.set_runs([a])  # one run left selected (the other deleted): its figures stood
    assert compare.summary.text().startswith("Select exactly two runs")
    compare.shutdown()


def test_a_stop_reason_that_says_its_state_is_not_prefixed_with_it_again():
    from tl_studio.core.run_history import RunSummary
    from tl_studio.gui.runs_table import _status

    stopped = RunSummary(path="/r", name="r", status="stopped",
                         reason="Stopped after epoch 9 of 20. Best val accuracy 0.902 at epoch 9.")
    assert _status(stopped) == "Stopped after epoch 9 of 20. Best val accuracy 0.902 at epoch 9."
    failed = RunSummary(path="/r", name="r", status="failed", reason=FAILED_REASON)
    assert _status(failed) == f"failed: {FAILED_REASON}"


def test_a_run_stopped_before_its_model_file_points_to_open_not_to_the_command_line():
    """Its reason (status.json, written by the engine) ends with the export command; the step's Open does it."""
    from tl_studio.core.run_folder import export_later_clause
    from tl_studio.core.run_history import RunSummary
    from tl_studio.gui.runs_table import _status

    path = "/runs/my run"
    reason = f"Stopped after epoch 2 of 9. Best val accuracy 0.902 at epoch 2{export_later_clause(path)}"
    assert "tl-studio export '/runs/my run'" in reason
    shown = _status(RunSummary(path=path, name="my run", status="stopped", reason=reason))
    assert shown == ("Stopped after epoch 2 of 9. Best val accuracy 0.902 at epoch 2; no model file yet: Open writes "
                     "it from the best epoch.")


def test_open_writes_the_model_file_of_a_run_stopped_before_it_then_opens_it(page, runs_dir, qtbot, monkeypatch):
    from types import SimpleNamespace

    from tl_studio.core import run_folder as names
    from tl_studio.core.errors import UserError
    from tl_studio.gui import processes

    stopped = write_run(runs_dir / "stopped at once", state="stopped", epochs=5, done=2, started=5_000_000)
    (stopped / names.MODEL_FILE).unlink()  # a second Ctrl-C: checkpoints, no model file
    asked = []

    def export(folder, fmt, out, **_):  # stands in for export_run from best.ckpt in a child process
        asked.append((folder, fmt, out))
        if len(asked) == 1:
            raise UserError(f"{folder} has no best.ckpt; resume the run to train it again.")
        out.write_bytes(b"model")
        return SimpleNamespace(path=out, check=SimpleNamespace(describe=lambda: "Export check passed."))

    monkeypatch.setattr(processes, "export_in_child_process", export)
    warnings, said = [], []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warnings.append(text))
    page.session.statusMessage.connect(said.append)
    with qtbot.waitSignal(page.loader.finished, timeout=10_000):
        page.refresh()
    page.select_paths([str(stopped)])
    assert page.open_button.isEnabled()
    assert page.open_button.toolTip() == ("This run has no model file yet (it stopped before writing one): Open writes "
                                          f"it from the run's best epoch first, as tl-studio export '{stopped}' does.")
    page.open_button.click()  # the export fails: one sentence, nothing opened, Open offered again
    qtbot.waitUntil(lambda: bool(warnings), timeout=10_000)
    assert "has no best.ckpt" in warnings[0] and page.open_button.isEnabled()
    with qtbot.waitSignal(page.runOpened, timeout=10_000) as opened:
        page.open_button.click()
    assert opened.args == [stopped] and asked[-1] == (stopped, "pt2", stopped / names.MODEL_FILE)
    assert said[-1] == f"Wrote model.pt2 for {stopped.name}: Export check passed."
    page.select_paths([str(stopped)])
    assert page.open_button.toolTip().startswith("Use this run's model")  # its row has the model file now


def test_two_deletes_are_undone_one_after_the_other(page, runs, tmp_path, monkeypatch):
    """A second delete dropped the first one's undo: that run stayed in the trash, Undo greyed out."""
    private_trash(tmp_path, monkeypatch)
    for name in ("oom", "resnet"):
        page.select_paths([str(runs / name)])
        page.edits.delete_selected()
    assert not (runs / "oom").exists() and not (runs / "resnet").exists()
    assert page.edits.undo_text() == "Undo: put resnet back from the trash"
    page.edits.undo_delete()
    assert (runs / "resnet").is_dir() and page.edits.undo_button.isEnabled()
    assert page.edits.undo_text() == "Undo: put oom back from the trash"
    page.edits.undo_delete()
    assert (runs / "oom").is_dir() and not page.edits.undo_button.isEnabled() and page.proxy.rowCount() == 4


def test_the_resume_button_keeps_its_width_whichever_text_it_shows(page, runs):
    """It widened to "Train further…" and moved the Star, Note… and Rename… buttons under the pointer."""
    from PySide6.QtWidgets import QPushButton

    assert page.resume_button.minimumWidth() >= QPushButton("Train further…").sizeHint().width()
    page.select_paths([str(runs / "resnet")])  # a finished run: Train further…
    assert page.resume_button.text() == "Train further…"
    assert page.resume_button.sizeHint().width() <= page.resume_button.minimumWidth()


def test_the_rename_question_shows_the_whole_name_and_its_title(qtbot, monkeypatch):
    """QInputDialog.getText's dialog showed "icientnet_lite0-20261205-070917" of the name, under a title cut
    to "Rename… L Studio"."""
    from PySide6.QtWidgets import QDialog, QLineEdit, QWidget

    parent = QWidget()
    qtbot.addWidget(parent)
    name = "hymenoptera-efficientnet_lite0-20261205-070917"
    seen = {}

    def answer(dialog):
        edit = dialog.findChild(QLineEdit)
        dialog.show()
        seen.update(fits=edit.width() > edit.fontMetrics().horizontalAdvance(name) + 8,
                    title=dialog.width() > dialog.fontMetrics().horizontalAdvance("Rename run — TL Studio") + 120)
        edit.setText("Baseline")
        return QDialog.Accepted

    monkeypatch.setattr(QDialog, "exec", answer)
    assert run_edits.ask_name(parent, name) == ("Baseline", True)
    assert seen == {"fits": True, "title": True}


def test_settings_that_differ_name_a_schedule_as_the_table_and_the_train_step_do(qtbot):
    from tl_studio.core.run_history import RunSummary
    from tl_studio.gui.run_compare import ConfigDiffTable

    table = ConfigDiffTable()
    qtbot.addWidget(table)
    runs = [RunSummary(path=f"/runs/{name}", name=name, status="done", config={"schedule": schedule, "lr": 0.001})
            for name, schedule in (("a", "onecycle"), ("b", "fine-tune"))]
    table.show_runs(runs)
    row = list(table.differences).index("schedule")
    assert [table.item(row, column).text() for column in range(2)] == ["One-cycle", "Two-phase"]  # not onecycle
