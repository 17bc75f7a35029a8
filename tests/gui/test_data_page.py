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
