"""The Data step's Problems tab: a file the scan cannot use shows a preview (or why there is none),
its folder can be opened, and it can be excluded from the data set (moved into _excluded, never
deleted), after which it leaves the list."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox

from tl_studio.core.dataset_edit import EXCLUDED
from tl_studio.gui.pages.data_page import DataPage
from tl_studio.gui.session import Session

TIMEOUT_MS = 60_000


def opened_page(qtbot, folder) -> DataPage:
    """The Data step with ``folder`` scanned."""
    data_page = DataPage(Session())
    qtbot.addWidget(data_page)
    with qtbot.waitSignal(data_page.session.datasetChanged, timeout=TIMEOUT_MS):
        data_page.open_folder(str(folder))
    return data_page


@pytest.fixture
def page(qtbot, tiny_dataset, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    (tiny_dataset / "red" / "broken.jpg").write_bytes(b"not an image at all")
    data_page = opened_page(qtbot, tiny_dataset)
    yield data_page
    data_page.shutdown()


def test_a_problem_file_has_a_preview_a_folder_and_can_be_excluded(page, qtbot, tiny_dataset, monkeypatch):
    problems = page.problems
    assert problems.model.rowCount() == 1 and page.tabs.tabText(1) == "Problems (1)"
    assert page.summary.text().endswith(" 1 problem.")
    assert not problems.exclude_button.isEnabled()  # nothing selected yet
    problems.table.selectRow(0)
    assert problems.preview.text().startswith("No preview: ")  # not decodable: the reason instead
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    problems.open_folder_button.click()
    assert opened == [str(tiny_dataset / "red")]
    said = []
    page.session.statusMessage.connect(said.append)
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: False)  # no file manager on this desktop
    problems.open_folder_button.click()
    assert said and str(tiny_dataset / "red") in said[-1] and "broken.jpg" in said[-1]
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS) as changed:
        problems.exclude_button.click()
    assert [p.name for p in (tiny_dataset / EXCLUDED).rglob("*") if p.is_file()] == ["broken.jpg"]
    assert not (tiny_dataset / "red" / "broken.jpg").exists()
    assert len(changed.args[0].problems) == 0 and problems.model.rowCount() == 0
    assert page.summary.text().endswith(" 0 problems.")


def test_a_decodable_problem_file_is_previewed(qtbot, tmp_path):
    from PIL import Image

    from tl_studio.gui.problems_view import ProblemsView

    view = ProblemsView()
    qtbot.addWidget(view)
    picture = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(picture)

    class Problem:
        path, reason = str(picture), "too small to train on"

    view.set_problems([Problem()])
    view.table.selectRow(0)
    assert view.preview.pixmap() is not None and not view.preview.pixmap().isNull()


def test_a_long_file_name_does_not_push_the_problem_out_of_sight(qtbot):
    """hymenoptera has a 100-character file name: as a problem it made the File column 650 px wide, and
    the reason (and the column's own header) ended up beyond the right edge."""
    from PySide6.QtCore import QCoreApplication

    from tl_studio.gui.problems_view import ProblemsView

    view = ProblemsView()
    qtbot.addWidget(view)
    view.resize(700, 400)
    view.show()
    qtbot.waitExposed(view)

    class Problem:
        def __init__(self, path, reason):
            self.path, self.reason = path, reason

    long_name = "bees/ants-devouring-remains-of-large-dead-insect-on-red-tile-in-Stellenbosch-South-Africa-closeup.jpg"
    view.set_problems([Problem(long_name, "Identical to ants/x.jpg"), Problem("ants/x.jpg", "Too small")])
    table = view.table
    reason_left = table.columnViewportPosition(1)
    assert 0 < reason_left and reason_left + 80 <= table.viewport().width()  # the reason is in sight
    assert long_name in table.model().item(0, 0).toolTip()  # and the whole name in the tooltip
    # a long reason is read whole, on as many lines as it takes, not cut in its middle on two
    long_reason = ("Truncated image: the file ends before the image data does (an incomplete download or "
                   "copy?); " * 3)
    view.set_problems([Problem("ants/x.jpg", long_reason), Problem("ants/y.jpg", "Too small")])

    def height_of_row(row: int) -> int:
        QCoreApplication.processEvents()  # the rows follow the columns' widths when the table is laid out
        return table.rowHeight(row)

    assert height_of_row(0) >= 3 * height_of_row(1)
    table.setColumnWidth(0, 300)  # the File column dragged wide: the reason takes more lines
    tall = height_of_row(0)
    table.setColumnWidth(0, 100)  # and narrow: fewer
    assert height_of_row(0) < tall
    # listed while the tab was hidden and narrow, then shown wide: the rows are not left at the narrow height
    view.hide()
    view.resize(300, 400)
    view.set_problems([Problem("ants/x.jpg", long_reason[:100]), Problem("ants/y.jpg", "Too small")])
    view.resize(1400, 400)
    view.show()
    qtbot.waitExposed(view)
    assert height_of_row(0) == height_of_row(1)  # one line each at this width


def test_names_from_the_disk_are_shown_as_written(qtbot, tmp_path):
    """Folder, class and file names may hold <, > and &: Qt took `<i>ants&bees` for markup (an italic
    "ants&bees" in the summary), `bees<br>x` for a line break and `<b>broken.jpg` for a bold "broken.jpg"."""
    from PySide6.QtCore import Qt

    from tests.gui.shown_text import label_shows, shown
    from tests.helpers import make_image_folder

    root = make_image_folder(tmp_path / "<i>ants&bees", classes=("<u>ants", "bees<br>x"), per_class=6)
    broken = root / "<u>ants" / "<b>broken.jpg"
    broken.write_bytes(b"not an image at all")
    page = DataPage(Session())
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        page.open_folder(str(root))
    assert label_shows(page.summary).split("\n")[0] == str(root)
    assert "12 images in 2 classes" in label_shows(page.summary)  # the label's own line break stays

    page.browser.class_box.setCurrentIndex(0)  # all classes: each thumbnail's caption names its class
    thumbnails = page.browser.thumbnails
    tooltips = [shown(thumbnails.data(thumbnails.index(row), Qt.ToolTipRole)) for row in range(thumbnails.rowCount())]
    assert any(tip.startswith("<u>ants · ") and tip.endswith(".jpg") for tip in tooltips)
    assert any(tip.startswith("bees<br>x · ") for tip in tooltips)

    problems = page.problems
    assert problems.model.rowCount() == 1
    assert shown(problems.model.item(0, 0).toolTip()) == str(broken)
    problems.table.selectRow(0)
    assert shown(problems.preview.toolTip()).startswith(f"{broken}\n")

    page.open_folder(str(tmp_path / "<b>gone"))  # cannot be used: the summary names both folders
    qtbot.waitUntil(lambda: "Could not open" in page.summary.text(), timeout=TIMEOUT_MS)
    summary = label_shows(page.summary)
    assert summary.startswith(f"Could not open {tmp_path / '<b>gone'}: ")
    assert f"Still loaded: {root} (12 images in 2 classes)" in summary
    page.shutdown()


def test_the_full_checks_last_word_does_not_read_as_no_problems_beside_the_problems_tab(page):
    # "Every image decodes. 30 images in 3 classes." stood in the status bar beside "Problems (1)"
    said = []
    page.session.statusMessage.connect(said.append)
    page._verified(page.session.scan, [])
    images = len(page.session.scan.records)
    assert said[-1] == (f"Full check: the {images} images in 3 classes decode; the Problems tab lists 1 problem "
                        "(1 file left out).")
    # a class of one image is a problem, not a file left out: it said "the 2 files the scan left out"
    import dataclasses

    from tl_studio.core.data import Problem

    scan = page.session.scan
    page.session.set_dataset(dataclasses.replace(scan, problems=scan.problems + (
        Problem("grey", "Only one image: a class needs several to be learnt", "small_class"),)))
    page._verified(page.session.scan, [])
    assert said[-1].endswith("the Problems tab lists 2 problems (1 file left out).")


def test_the_summary_gives_the_shares_each_split_got_beside_the_ones_asked(page):
    counts = page.session.scan.counts()
    totals = {split: sum(counts[split].values()) for split in ("train", "val", "test")}
    total = sum(totals.values())
    text = page.summary.text()
    assert f"train {totals['train']} ({totals['train'] / total:.0%}), val {totals['val']} ({totals['val'] / total:.0%})" \
        in text
    assert "(asked 80% / 20% / 0%, seed 0)" in text


def test_the_split_boxes_take_percentages_and_say_their_ranges(page, qtbot):
    """A spin box refuses a keystroke that would leave its range (60 typed into the validation box
    stops at "6"): each row's label says the range, and the boxes speak percent, as the summary does."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFormLayout

    form = page.split_box.layout()
    assert isinstance(form, QFormLayout)
    labels = [form.itemAt(row, QFormLayout.LabelRole).widget().text() for row in range(2)]
    assert labels == ["Validation (5-50 %)", "Test (0-40 %)"]
    assert page.val_percent.text() == "20 %"
    page.val_percent.lineEdit().selectAll()
    qtbot.keyClicks(page.val_percent, "30")
    page.test_percent.lineEdit().selectAll()
    qtbot.keyClicks(page.test_percent, "10")
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        qtbot.keyClick(page.test_percent, Qt.Key_Return)
        page.rescan()
    scan = page.session.scan
    assert (scan.val_fraction, scan.test_fraction) == (0.3, 0.1)
    config = page.session.config  # the run trains on this split and records it (config.json)
    assert (config.val_fraction, config.test_fraction, config.seed) == (0.3, 0.1, 0)
    assert "(asked 60% / 30% / 10%, seed 0)" in page.summary.text()


def test_a_split_typed_and_not_applied_is_said_and_start_asks_about_it(qtbot, tiny_dataset, monkeypatch):
    """15 % typed, Apply split not pressed: the boxes said 15 % over a summary of 30 %, and Start trained on
    the 30 % split without a word."""
    from tl_studio.gui.pages.train_page import TrainPage

    page = opened_page(qtbot, tiny_dataset)
    session = page.session
    assert not page.split_pending_label.isVisibleTo(page) and session.split_pending == ""
    page.val_percent.setValue(15)
    assert page.split_pending_label.isVisibleTo(page)
    assert page.split_pending_label.text() == ("Not applied: the steps use validation 20 %, test 0 %, seed 0 until "
                                               "you press Apply split.")
    train = TrainPage(session)
    qtbot.addWidget(train)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *args: asked.append(text) or
                        QMessageBox.No)
    monkeypatch.setattr(train.controller, "start", lambda *args, **kwargs: pytest.fail("trained"))
    train.start()
    assert asked and asked[0].startswith("The split boxes say validation 15 %, test 0 %, seed 0; the steps use "
                                         "validation 20 %")
    page.val_percent.setValue(20)  # back as applied
    assert not page.split_pending_label.isVisibleTo(page) and session.split_pending == ""
    page.val_percent.setValue(25)
    with qtbot.waitSignal(session.datasetChanged, timeout=TIMEOUT_MS):
        page.rescan()  # Apply split
    assert session.scan.val_fraction == 0.25 and session.split_pending == ""
    assert not page.split_pending_label.isVisibleTo(page)
    train.shutdown()
    page.shutdown()


def test_a_lopsided_split_is_said_under_the_summary(qtbot, tmp_path):
    from tests.helpers import make_image_folder
    from tl_studio.core.data import scan_dataset

    data = make_image_folder(tmp_path / "small", classes=("ants", "bees"), per_class=20, size=16)
    seed = next(s for s in range(60) if scan_dataset(data, val_fraction=0.3, seed=s).uneven_split())
    page = DataPage(Session())
    qtbot.addWidget(page)
    page.val_percent.setValue(30)
    page.seed.setValue(seed)
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        page.open_folder(str(data))
    assert "Another seed gives another split." in page.summary.text()
    page.shutdown()


def test_the_imbalance_line_says_what_the_run_will_do_with_its_class_weighting(qtbot, tmp_path):
    """It said "Training will weight the loss by class" whatever the setting, and for a class of two
    photos, which weighted 107x had made a model answer that class for everything."""
    from tests.helpers import make_image_folder

    data = make_image_folder(tmp_path / "data", classes=("red",), per_class=40)
    make_image_folder(data, classes=("blue",), per_class=8, seed=3)
    make_image_folder(data, classes=("grey",), per_class=2, seed=5)
    data_page = opened_page(qtbot, data)
    text = data_page.warning.text()
    assert text.startswith("Class-weighted loss is on (the largest class has ")
    assert "grey: fewer than 5 training images, too few to weight up" in text
    data_page.session.update_config(class_weighting="off")  # the Train step's setting
    assert data_page.warning.text().startswith("Classes are imbalanced (")
    assert "too few" not in data_page.warning.text()  # "off" weighs nothing up: nothing to explain
    data_page.shutdown()


# ---- fixing labels in the thumbnail browser ---------------------------------------------------------

@pytest.fixture
def browser(qtbot, tiny_dataset, monkeypatch):
    """The Data step on red/green/blue (12 images each), the user having agreed to file moves."""
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    data_page = opened_page(qtbot, tiny_dataset)
    yield data_page
    data_page.shutdown()
    data_page.session.shutdown()


def _show_class(page, name: str) -> None:
    page.browser.class_box.setCurrentIndex(page.browser.class_box.findData(list(page.session.scan.classes).index(name)))


def _menu_action(menu, *texts):
    """The action reached through ``texts`` (a submenu's title, then an item)."""
    for text in texts[:-1]:
        menu = next(a.menu() for a in menu.actions() if a.menu() is not None and a.text() == text)
    return next(a for a in menu.actions() if a.text() == texts[-1])


def _splits(scan) -> dict:
    return {r.path.name: r.split for r in scan.records}


def test_a_thumbnail_moved_to_another_class_is_counted_there_and_undo_brings_it_back(browser, qtbot, tiny_dataset):
    """A wasp among the ants: right-click, Move to class > the right one. The file moves, the counts and
    the class list follow, no other image changes split, and Edit > Undo (the fixer's undo) moves it back."""
    page = browser
    before = page.session.scan
    _show_class(page, "red")
    assert page.browser.class_box.currentText() == "red (12)"
    index = page.browser.thumbnails.index(0)
    name = Path(page.browser.thumbnails.paths[0]).name
    menu = page.browser.thumbnail_menu(index)
    move_menu = _menu_action(menu, "Move to class").menu()
    assert [a.text() for a in move_menu.actions()] == ["blue", "green"]  # not where it already is
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS) as changed:
        _menu_action(menu, "Move to class", "blue").trigger()
    assert (tiny_dataset / "blue" / name).is_file() and not (tiny_dataset / "red" / name).exists()
    after = changed.args[0]
    assert after.class_counts() == {"blue": 13, "green": 12, "red": 11}
    assert page.browser.class_box.currentText() == "red (11)" and page.browser.thumbnails.rowCount() == 11
    assert name not in [Path(p).name for p in page.browser.thumbnails.paths]
    assert {k: v for k, v in _splits(after).items() if k != name} == \
        {k: v for k, v in _splits(before).items() if k != name}  # fixing one label moves no other image
    assert page.session.fixer.can_undo and "back to red/" in page.session.fixer.undo_text()
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        page.session.fixer.undo()
    assert (tiny_dataset / "red" / name).is_file() and not (tiny_dataset / "blue" / name).exists()
    assert page.browser.class_box.currentText() == "red (12)"
    assert _splits(page.session.scan) == _splits(before)


def test_excluding_selected_thumbnails_from_the_menu_is_undoable(browser, qtbot, tiny_dataset):
    page = browser
    _show_class(page, "green")
    selection = page.browser.thumbnail_view.selectionModel()
    for row in (1, 3):
        selection.select(page.browser.thumbnails.index(row), QItemSelectionModel.Select)
    names = sorted(Path(page.browser.thumbnails.paths[row]).name for row in (1, 3))
    menu = page.browser.thumbnail_menu(page.browser.thumbnails.index(3))  # right-click inside the selection: both
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS) as changed:
        _menu_action(menu, "Exclude 2 images from the data set").trigger()
    assert sorted(p.name for p in (tiny_dataset / EXCLUDED).rglob("*") if p.is_file()) == names
    assert changed.args[0].class_counts()["green"] == 10 and page.browser.class_box.currentText() == "green (10)"
    fixer = page.session.fixer
    assert fixer.undo_text() == "Undo: exclude 2 images (back to their folders)"  # one change, one Undo
    said = []
    page.session.statusMessage.connect(said.append)
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        fixer.undo()
    assert all((tiny_dataset / "green" / name).is_file() for name in names)
    assert page.browser.class_box.currentText() == "green (12)" and not fixer.can_undo
    assert said[0] == "Moved 2 images back to their folders."


def test_a_right_click_outside_the_selection_acts_on_that_image_alone(browser):
    page = browser
    _show_class(page, "green")
    page.browser.thumbnail_view.selectionModel().select(page.browser.thumbnails.index(0), QItemSelectionModel.Select)
    menu = page.browser.thumbnail_menu(page.browser.thumbnails.index(2))
    assert page.browser.selected_image_paths() == [page.browser.thumbnails.paths[2]]
    assert _menu_action(menu, "Exclude from the data set") is not None


def test_a_move_onto_a_taken_name_keeps_both_files(browser, qtbot, tiny_dataset):
    """blue/ already has a red_000.jpg (another photo): the moved one gets a free name, nothing is replaced."""
    from tests.helpers import make_image

    page = browser
    make_image(tiny_dataset / "blue" / "red_000.jpg", (40, 60, 200), seed=999)
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        page.rescan()
    resident = (tiny_dataset / "blue" / "red_000.jpg").read_bytes()
    moved = (tiny_dataset / "red" / "red_000.jpg").read_bytes()
    _show_class(page, "red")
    row = [Path(p).name for p in page.browser.thumbnails.paths].index("red_000.jpg")
    menu = page.browser.thumbnail_menu(page.browser.thumbnails.index(row))
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        _menu_action(menu, "Move to class", "blue").trigger()
    assert (tiny_dataset / "blue" / "red_000.jpg").read_bytes() == resident
    assert (tiny_dataset / "blue" / "red_000 (1).jpg").read_bytes() == moved
    assert page.session.scan.class_counts()["blue"] == 14
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        page.session.fixer.undo()
    assert (tiny_dataset / "red" / "red_000.jpg").read_bytes() == moved
    assert (tiny_dataset / "blue" / "red_000.jpg").read_bytes() == resident
    assert not (tiny_dataset / "blue" / "red_000 (1).jpg").exists()


def test_a_move_that_cannot_be_done_is_one_sentence_in_the_status_line(browser, qtbot, tiny_dataset, monkeypatch):
    """A file gone since the scan, a folder that cannot be written: no dialog, no traceback; the gone file
    leaves the browser with the rescan."""
    import tl_studio.core.dataset_edit as dataset_edit

    page = browser
    said = []
    page.session.statusMessage.connect(said.append)
    _show_class(page, "red")
    gone = page.browser.thumbnails.paths[0]
    Path(gone).unlink()
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        _menu_action(page.browser.thumbnail_menu(page.browser.thumbnails.index(0)), "Move to class", "green").trigger()
    assert said[-1] == f"{Path(gone).name} is no longer at {Path(gone).parent}; rescan the dataset."
    assert gone not in page.browser.thumbnails.paths and page.browser.class_box.currentText() == "red (11)"

    def read_only(source, destination):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dataset_edit, "_move_without_overwrite", read_only)
    name = Path(page.browser.thumbnails.paths[0]).name
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        menu = page.browser.thumbnail_menu(page.browser.thumbnails.index(0))
        _menu_action(menu, "Exclude from the data set").trigger()
    assert said[-1].startswith(f"{name} could not be moved to ") and said[-1].endswith(
        "(Permission denied); check that the folder can be written.")
    assert (tiny_dataset / "red" / name).is_file() and not page.session.fixer.can_undo


def test_a_thumbnail_names_its_file_opens_larger_and_shows_its_folder(browser, qtbot, tiny_dataset, monkeypatch):
    from PySide6.QtCore import Qt

    from tl_studio.gui.image_view import ImagePreview

    page = browser
    _show_class(page, "blue")
    page.resize(900, 600)
    page.show()
    qtbot.waitExposed(page)
    index = page.browser.thumbnails.index(0)
    path = page.browser.thumbnails.paths[0]
    tooltip = page.browser.thumbnails.data(index, Qt.ToolTipRole)
    assert Path(path).name in tooltip and str(tiny_dataset / "blue") in tooltip
    view = page.browser.thumbnail_view
    centre = view.visualRect(index).center()
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=centre)  # a double-click begins with a click
    qtbot.mouseDClick(view.viewport(), Qt.LeftButton, pos=centre)
    qtbot.mouseRelease(view.viewport(), Qt.LeftButton, pos=centre)
    previews = page.findChildren(ImagePreview)
    assert len(previews) == 1  # one window per double-click
    preview = previews[0]
    qtbot.waitUntil(lambda: preview.picture.pixmap() is not None and not preview.picture.pixmap().isNull(),
                    timeout=TIMEOUT_MS)
    assert preview.windowTitle() == Path(path).name
    # larger than the thumbnail
    assert preview.picture.pixmap().width() > page.browser.thumbnail_view.iconSize().width()
    assert "blue · " in preview.caption.text() and Path(path).name in preview.caption.text()
    preview.close()
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    _menu_action(page.browser.thumbnail_menu(index), "Show in folder").trigger()
    assert opened == [str(tiny_dataset / "blue")]


def _opened_with_the_full_check_held(qtbot, folder, monkeypatch):
    """The Data step on ``folder`` with its full decode check held (as during a training run) and the rescan
    after a move held until the returned event is set: (page, the check, the event)."""
    import threading

    import tl_studio.gui.data_fixer as data_fixer

    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    rescan_may_go = threading.Event()
    real_rescan = data_fixer.rescan
    monkeypatch.setattr(data_fixer, "rescan", lambda scan, **kw: rescan_may_go.wait(30) and real_rescan(scan, **kw))
    page = DataPage(Session())
    qtbot.addWidget(page)
    page.verify_hold.set()
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        page.open_folder(str(folder))
    check = page.verify_task
    assert check.running
    return page, check, rescan_may_go


def test_a_move_during_the_full_check_is_not_reported_as_a_missing_file(qtbot, tiny_dataset, monkeypatch):
    """The full decode check, still running when an image moved, ended before the rescan and called the
    moved file missing ("Cannot be read: the file no longer exists"), with a class one image short."""
    page, check, rescan_may_go = _opened_with_the_full_check_held(qtbot, tiny_dataset, monkeypatch)
    _show_class(page, "red")
    page.browser.move_images([page.browser.thumbnails.paths[0]], "blue")
    changes = []
    page.session.datasetChanged.connect(changes.append)
    page.verify_hold.clear()
    qtbot.waitUntil(lambda: not check.running, timeout=TIMEOUT_MS)
    assert changes == []  # the old check's verdict on files that moved is not shown
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        rescan_may_go.set()
    assert page.session.scan.class_counts() == {"blue": 13, "green": 12, "red": 11}
    qtbot.waitUntil(lambda: not page.verify_task.running, timeout=TIMEOUT_MS)  # the check after the move
    assert page.session.scan.problems == () and page.tabs.tabText(1) == "Problems (0)"
    page.shutdown()
    page.session.shutdown()


def test_a_move_that_finds_its_file_gone_during_the_full_check_keeps_its_sentence(qtbot, tiny_dataset, monkeypatch):
    """The full decode check, still running when a move found its file gone, ended before the rescan and
    said "Every image decodes. 36 images in 3 classes." (one of them gone) or called the gone file unreadable,
    over why the move failed."""
    page, check, rescan_may_go = _opened_with_the_full_check_held(qtbot, tiny_dataset, monkeypatch)
    said = []
    page.session.statusMessage.connect(said.append)
    _show_class(page, "red")
    gone = page.browser.thumbnails.paths[0]
    Path(gone).unlink()
    _menu_action(page.browser.thumbnail_menu(page.browser.thumbnails.index(0)), "Move to class", "green").trigger()
    failure = f"{Path(gone).name} is no longer at {Path(gone).parent}; rescan the dataset."
    assert said[-1] == failure
    page.verify_hold.clear()
    qtbot.waitUntil(lambda: not check.running, timeout=TIMEOUT_MS)
    assert said[-1] == failure  # the old check's verdict, on a folder that changed, is not said
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        rescan_may_go.set()
    assert page.session.scan.class_counts() == {"blue": 12, "green": 12, "red": 11}
    qtbot.waitUntil(lambda: not page.verify_task.running, timeout=TIMEOUT_MS)  # the check after the rescan
    assert said[-1] == failure
    page.shutdown()
    page.session.shutdown()


def test_a_folder_that_cannot_be_opened_says_why_on_the_welcome_page(qtbot, tmp_path, tiny_dataset):
    """The reason was only in the status bar, cut at the window's edge; the welcome page stayed as it was."""
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "0.jpg").write_bytes((tiny_dataset / "red").glob("*.jpg").__next__().read_bytes())
    data_page = DataPage(Session())
    qtbot.addWidget(data_page)
    data_page.show()
    assert not data_page.welcome.problem.isVisible()
    with qtbot.waitSignal(data_page.session.statusMessage, timeout=TIMEOUT_MS,
                          check_params_cb=lambda message: "not in class folders" in message):
        data_page.open_folder(str(flat))
    said = data_page.welcome.problem.text()
    assert data_page.welcome.problem.isVisible()
    assert str(flat) in said and "its 1 image lies in it, not in class folders" in said
    assert data_page.body.currentWidget() is data_page.welcome
    with qtbot.waitSignal(data_page.session.datasetChanged, timeout=TIMEOUT_MS):
        data_page.open_folder(str(tiny_dataset))
    assert not data_page.welcome.problem.isVisible()
    data_page.shutdown()


def test_a_class_name_without_spaces_does_not_widen_the_window(qtbot, tmp_path, tiny_dataset):
    """A 200-letter class name in the imbalance line made the Data step ask for 1954 px."""
    import shutil

    shutil.copytree(tiny_dataset, tmp_path / "data")
    long_name = tmp_path / "data" / ("x" * 200)
    long_name.mkdir()
    for image in list((tiny_dataset / "red").glob("*.jpg"))[:3]:  # fewer than 5: the line names it
        shutil.copy(image, long_name / image.name)
    data_page = opened_page(qtbot, tmp_path / "data")
    assert "x" * 200 in data_page.warning.text() and not data_page.warning.isHidden()
    assert data_page.minimumSizeHint().width() < 900
    data_page.shutdown()


def test_the_open_folder_shows_in_the_recent_box_and_one_opened_elsewhere_is_said(qtbot, tiny_dataset, tmp_path):
    """The box kept reading "Recent folders" with a folder open; a folder opened on another step (Evaluate's
    "Move to class") left this step's line asking for a folder."""
    import shutil

    from tl_studio.core.data import scan_dataset

    page = opened_page(qtbot, tiny_dataset)
    assert page.recent_box.currentText() == str(tiny_dataset)
    said = []
    page.session.said.connect(lambda message, step: said.append((message, step)))
    page.session.set_dataset(page.session.scan)  # the same folder again (a rescan, a move): nothing to say
    assert said == []
    other = shutil.copytree(tiny_dataset, tmp_path / "other")
    page.session.set_dataset(scan_dataset(other))
    assert said == [(f"Opened {other} on another step: {len(page.session.scan.records)} images in 3 classes.", "Data")]
    assert page.folder == str(other)
    page.shutdown()


def test_the_split_filter_counts_its_own_images_and_is_let_go_for_a_folder_without_that_split(qtbot, tmp_path):
    """A "test" filter carried to a folder without a test split showed an empty grid with no word, and
    "All classes (245)" stood over the 28 test images shown."""
    from tests.helpers import make_image_folder
    from tl_studio.core.data import scan_dataset
    from tl_studio.gui.data_browser import ALL

    session = Session()
    page = DataPage(session)
    qtbot.addWidget(page)
    browser = page.browser
    flat = scan_dataset(make_image_folder(tmp_path / "flat", per_class=10), val_fraction=0.2, test_fraction=0.2)
    session.set_dataset(flat)
    browser.split_filter.setCurrentIndex(browser.split_filter.findData("test"))
    tested = [record for record in flat.records if record.split == "test"]
    assert browser.class_box.itemText(0) == f"All classes ({len(tested)})" and len(tested) < len(flat.records)
    assert browser.thumbnails.rowCount() == len(tested)
    session.set_dataset(scan_dataset(make_image_folder(tmp_path / "two", per_class=6)))  # no test split
    assert browser.split_filter.currentData() == ALL and browser.thumbnails.rowCount() > 0
    test_item = browser.split_filter.model().item(browser.split_filter.findData("test"))
    assert not test_item.isEnabled() and test_item.toolTip() == "This data set has no test images."
    page.shutdown()


def test_another_folder_opens_on_all_its_classes_and_splits(qtbot, tiny_dataset, tmp_path):
    """The class picked in the folder before is a number: in the next folder it showed another class (or,
    with a split filter kept, an empty grid)."""
    from tests.helpers import make_image_folder

    page = opened_page(qtbot, tiny_dataset)
    browser = page.browser
    browser.class_box.setCurrentIndex(browser.class_box.findData(1))
    browser.split_filter.setCurrentIndex(browser.split_filter.findData("val"))
    other = make_image_folder(tmp_path / "pets", classes=("cats", "dogs"), per_class=6, size=16)
    with qtbot.waitSignal(page.session.datasetChanged, timeout=TIMEOUT_MS):
        page.open_folder(str(other))
    assert browser.class_box.currentText() == "All classes (12)" and browser.thumbnails.rowCount() == 12
    page.shutdown()
