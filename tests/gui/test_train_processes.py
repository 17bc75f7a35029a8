"""A run in several processes from the window (TL_STUDIO_CPU_PROCESSES allows CPU processes here, as
several CUDA GPUs do on a real machine): the run goes to torchrun as a child process tree, and the
window follows it through the run folder with the same live curves, samples, progress, pause and stop."""

from __future__ import annotations

import pytest
from shiboken6 import isValid
from PySide6.QtWidgets import QPushButton, QSpinBox

from tl_studio.core.run_folder import RunFolder
from tests.gui.windows import find, open_main_window

RUN_TIMEOUT_MS = 300_000


@pytest.fixture
def window(qtbot, tiny_dataset, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    monkeypatch.setattr(QMessageBox, "exec", lambda box: QMessageBox.Yes)  # "Stop training and quit?"
    monkeypatch.setenv("TL_STUDIO_CPU_PROCESSES", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    main_window = open_main_window(qtbot, tiny_dataset)
    main_window.session.update_config(img_size=64, workers=0, batch_size=8, device="cpu")
    processes = find(main_window, QSpinBox, "processesSpin")
    qtbot.waitUntil(processes.isEnabled, timeout=120_000)  # the devices are found in the background
    processes.setValue(2)
    yield main_window
    main_window.close()
    qtbot.waitUntil(lambda: not isValid(main_window), timeout=120_000)


def test_a_two_process_run_fills_the_curves_and_samples_like_one(window, qtbot):
    page = window.pages["Train"]
    find(window, QSpinBox, "epochsSpin").setValue(2)
    start = find(window, QPushButton, "startButton")
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        start.click()
    assert finished.args[0].status == "completed", finished.args[0].message
    counts = page.curves.point_counts()
    assert counts["batch"] > 0 and counts["val_loss"] == 2 and counts["val_acc"] == 2
    assert page.samples.shown_count() > 0
    folder = RunFolder(page.current_run_dir)
    assert folder.status().state == "done" and len(folder.metrics()) == 2
    assert window.session.model_file is not None and window.session.model_file.is_file()


def test_pause_holds_every_process_and_stop_ends_the_run(window, qtbot):
    page = window.pages["Train"]
    # long enough to be running whatever the machine's speed (a tiny epoch here takes a fraction of a second)
    window.session.update_config(epochs=1000, feature_cache=False, augment="none")
    start, stop = find(window, QPushButton, "startButton"), find(window, QPushButton, "stopButton")
    pause = find(window, QPushButton, "pauseButton")
    with qtbot.waitSignal(page.controller.batches, timeout=RUN_TIMEOUT_MS):
        start.click()
    with qtbot.waitSignal(page.controller.pausedChanged, timeout=5000):
        pause.click()
    assert page.controller.control.paused and pause.text() == "Continue"
    qtbot.wait(3000)  # a nested event loop (not qWait): batches already on their way land
    with qtbot.assertNotEmitted(page.controller.batches, wait=3000):
        pass
    with qtbot.waitSignal(page.controller.batches, timeout=60_000):
        pause.click()  # continue
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        stop.click()
    assert finished.args[0].status == "stopped", finished.args[0].message
    assert start.isEnabled() and not page.running
    assert RunFolder(page.current_run_dir).status().state == "stopped"


def test_the_windows_model_file_writer_keeps_the_share_the_runs_file_keeps(tmp_path, monkeypatch):
    """A run resumed in the window wrote its model.pt2 keeping 95 % again over one exported keeping 80 %."""
    import json
    import zipfile

    from tl_studio.gui import processes

    with zipfile.ZipFile(tmp_path / "model.pt2", "w") as archive:
        archive.writestr("archive/extra/tl_studio.json", json.dumps({"unknown": {"keep": 0.8}}))
    asked = []
    monkeypatch.setattr(processes, "export_in_child_process", lambda *args, **kwargs: asked.append(kwargs) or
                        type("Report", (), {"path": tmp_path / "model.pt2"})())
    processes.write_model_file_in_child_process(tmp_path, tmp_path / "model.pt2")
    assert asked[0]["keep"] == 0.8
