"""The session's one DataFixer: which data set Undo acts on. A folder the user opens becomes it; the same
folder scanned again (a rescan after a move, the full check) keeps a move made in another folder (the
Evaluate step's "Another folder…") undoable."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.helpers import make_image_folder
from tl_studio.core.data import scan_dataset
from tl_studio.gui.session import Session

TIMEOUT_MS = 60_000


@pytest.fixture
def session(qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    session = Session()
    yield session
    session.shutdown()


def test_undo_follows_the_folder_the_user_opens_not_a_rescan_of_it(session, qtbot, tmp_path):
    opened = scan_dataset(make_image_folder(tmp_path / "opened", per_class=4, size=32))
    other = scan_dataset(make_image_folder(tmp_path / "other", per_class=4, size=32, seed=1))
    session.set_dataset(opened)
    fixer = session.fixer
    image = next(Path(r.path) for r in other.records if Path(r.path).parent.name == "red")
    with qtbot.waitSignal(fixer.rescanned, timeout=TIMEOUT_MS):
        fixer.move([str(image)], "blue", other)  # as the Evaluate step does on another folder
    assert fixer.can_undo and "back to red/" in fixer.undo_text()
    session.set_dataset(scan_dataset(opened.root))  # the opened folder scanned again: still the same history
    assert fixer.can_undo and fixer.undo() is not None
    assert (tmp_path / "other" / "red" / image.name).is_file()
    with qtbot.waitSignal(fixer.rescanned, timeout=TIMEOUT_MS):
        fixer.move([str(image)], "green", other)
    third = scan_dataset(make_image_folder(tmp_path / "third", per_class=4, size=32, seed=2))
    session.set_dataset(third)  # another folder opened: Undo belongs to it now (nothing to undo there)
    assert not fixer.can_undo and fixer.undo_text() == "Undo"
    assert (tmp_path / "other" / "green" / image.name).is_file()


def test_one_undo_takes_back_every_image_one_change_moved(session, qtbot, tmp_path, monkeypatch):
    """Five images moved with one menu choice come back with one Undo; a moved image deleted since is
    said once, and the rest of that change stays one Undo."""
    scan = scan_dataset(make_image_folder(tmp_path / "data", per_class=6, size=32))
    session.set_dataset(scan)
    fixer = session.fixer
    reds = sorted(Path(r.path) for r in scan.records if Path(r.path).parent.name == "red")[:3]
    with qtbot.waitSignal(fixer.rescanned, timeout=TIMEOUT_MS):
        fixer.move([str(p) for p in reds], "blue")
    with qtbot.waitSignal(fixer.rescanned, timeout=TIMEOUT_MS):
        fixer.move([str(next(Path(r.path) for r in scan.records if Path(r.path).parent.name == "green"))], "blue")
    assert fixer.undo_text().startswith("Undo: move green_")
    with qtbot.waitSignal(fixer.rescanned, timeout=TIMEOUT_MS):
        fixer.undo()
    assert fixer.undo_text() == "Undo: move 3 images back to their folders"
    (tmp_path / "data" / "blue" / reds[-1].name).unlink()  # deleted by hand since
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: warned.append(args[2]))
    assert fixer.undo() is None and len(warned) == 1 and reds[-1].name in warned[0]
    assert fixer.undo_text() == "Undo: move 2 images back to their folders"
    with qtbot.waitSignal(fixer.rescanned, timeout=TIMEOUT_MS):
        fixer.undo()
    assert all(p.is_file() for p in reds[:2]) and not fixer.can_undo
