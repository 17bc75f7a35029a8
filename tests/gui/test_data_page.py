"""The Data step's Problems tab: a file the scan cannot use shows a preview (or why there is none),
its folder can be opened, and it can be excluded from the data set (moved into _excluded, never
deleted), after which it leaves the list."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox

from tl_studio.core.dataset_edit import EXCLUDED
from tl_studio.gui.pages.data_page import DataPage
from tl_studio.gui.session import Session

TIMEOUT_MS = 60_000


@pytest.fixture
def page(qtbot, tiny_dataset, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    (tiny_dataset / "red" / "broken.jpg").write_bytes(b"not an image at all")
    data_page = DataPage(Session())
    qtbot.addWidget(data_page)
    with qtbot.waitSignal(data_page.session.datasetChanged, timeout=TIMEOUT_MS):
        data_page.open_folder(str(tiny_dataset))
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

    page.class_box.setCurrentIndex(0)  # all classes: each thumbnail's caption names its class
    thumbnails = page.thumbnails
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
    data_page = DataPage(Session())
    qtbot.addWidget(data_page)
    with qtbot.waitSignal(data_page.session.datasetChanged, timeout=TIMEOUT_MS):
        data_page.open_folder(str(data))
    text = data_page.warning.text()
    assert text.startswith("Class-weighted loss is on (the largest class has ")
    assert "grey: fewer than 5 training images, too few to weight up" in text
    data_page.session.update_config(class_weighting="off")  # the Train step's setting
    assert data_page.warning.text().startswith("Classes are imbalanced (")
    assert "too few" not in data_page.warning.text()  # "off" weighs nothing up: nothing to explain
    data_page.shutdown()
