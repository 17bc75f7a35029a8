"""The app as a user drives it, offscreen: open a folder, train two epochs with live curves and
sample predictions, stop a run midway, export the model."""

from __future__ import annotations

import pytest
from shiboken6 import isValid
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QProgressBar, QPushButton, QSpinBox

from tests.gui.windows import find, open_main_window

RUN_TIMEOUT_MS = 240_000


@pytest.fixture
def window(qtbot, tiny_dataset, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    # a test that fails mid-run closes the window while training: answer "stop and quit" (a modal
    # question offscreen would wait forever)
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    monkeypatch.setattr(QMessageBox, "exec", lambda box: QMessageBox.Yes)  # "Stop training and quit?"
    main_window = open_main_window(qtbot, tiny_dataset)
    # small and fast: 64 px images, no loader processes
    main_window.session.update_config(img_size=64, workers=0, batch_size=8)
    yield main_window
    main_window.close()  # the window deletes itself on close
    qtbot.waitUntil(lambda: not isValid(main_window), timeout=60_000)


def test_two_epochs_fill_the_curves_and_the_sample_grid(window, qtbot):
    page = window.pages["Train"]
    find(window, QSpinBox, "epochsSpin").setValue(2)
    start, stop = find(window, QPushButton, "startButton"), find(window, QPushButton, "stopButton")
    progress = find(window, QProgressBar, "trainProgress")
    assert not stop.isEnabled()
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        start.click()
        qtbot.waitUntil(stop.isEnabled, timeout=5000)
    assert finished.args[0].status == "completed", finished.args[0].message
    assert progress.value() == progress.maximum() > 0
    counts = page.curves.point_counts()
    assert counts["batch"] > 0 and counts["val_loss"] == 2 and counts["val_acc"] == 2
    assert page.samples.shown_count() > 0
    assert not stop.isEnabled() and start.isEnabled()
    assert window.session.model_file is not None and window.session.model_file.is_file()


def test_a_run_that_fails_before_it_starts_says_why_and_leaves_no_folder(window, qtbot, tmp_path, monkeypatch):
    import os
    from pathlib import Path

    import torch
    from PySide6.QtWidgets import QMessageBox

    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *rest: warned.append(text))
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pth")  # refused as the model is built
    window.session.update_config(weights=str(tmp_path / "other.pth"))
    page = window.pages["Train"]
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        find(window, QPushButton, "startButton").click()
    assert finished.args[0].status == "failed" and "other.pth does not fit" in warned[0]
    runs = Path(os.environ["TL_STUDIO_RUNS_DIR"])
    assert not page.current_run_dir.exists() and (not runs.exists() or list(runs.iterdir()) == [])
    assert page.summary.text().startswith("The run did not start: ") and "Run folder" not in page.summary.text()
    # the bar of "Starting…" stops moving and says so (it kept its busy animation beside "Failed")
    progress = find(window, QProgressBar, "trainProgress")
    assert progress.maximum() > 0 and progress.format() == "Failed"


def test_stop_midway_returns_the_ui_to_idle(window, qtbot):
    page = window.pages["Train"]
    window.session.update_config(epochs=30, feature_cache=False, augment="none")
    start, stop = find(window, QPushButton, "startButton"), find(window, QPushButton, "stopButton")
    with qtbot.waitSignal(page.controller.batches, timeout=RUN_TIMEOUT_MS):
        start.click()
    assert stop.isEnabled() and not start.isEnabled()
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        stop.click()
    assert finished.args[0].status == "stopped"
    assert start.isEnabled() and not stop.isEnabled()
    assert not page.running
    qtbot.waitUntil(lambda: not page.controller.active, timeout=10_000)  # the thread itself has ended


def _stop_after_first_epoch(page, qtbot):
    """Stop is clicked when the first epoch ends. The stop request itself is made in the training
    thread as the epoch ends (the control is thread-safe): epochs after the first run in milliseconds
    on cached features, and a click that waited for the window's event loop could come after the
    second one had ended too."""
    from PySide6.QtCore import Qt

    def stop(_epoch):
        page.stop()

    page.controller.epochEnded.connect(stop)
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        page.start()  # the first epoch (the feature pass) takes seconds: the connection below is in time
        control = page.controller.control
        page.controller.worker.epochEnded.connect(lambda *_: control.request_stop(), Qt.DirectConnection)
    page.controller.epochEnded.disconnect(stop)
    return finished.args[0]


def test_a_stopped_run_resumes_to_its_planned_epochs_with_its_curves(window, qtbot, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    page = window.pages["Train"]
    window.session.update_config(epochs=3)
    stopped = _stop_after_first_epoch(page, qtbot)
    assert stopped.status == "stopped" and stopped.epochs_done == 1
    run_dir = page.current_run_dir
    window.session.update_config(epochs=7, lr=0.005)  # the user's settings for a next run: a resume keeps them
    asked = {}

    def answer(parent, title, label, value, minimum, maximum):
        asked.update(label=label, value=value, minimum=minimum)
        return value, True

    monkeypatch.setattr(QInputDialog, "getInt", answer)
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        page.resume_run(run_dir)
    assert "can continue: 1 of 3 epochs done" in asked["label"] and "finished" not in asked["label"]
    assert asked["value"] == 3 and asked["minimum"] == 2  # its planned epochs; the user may raise them
    assert finished.args[0].status == "completed" and finished.args[0].epochs_done == 3
    assert page.curves.point_counts()["val_acc"] == 3  # epoch 1's point came back with the resumed run
    # and its batch losses (read back from events.jsonl): the loss curve starts at epoch 1, not 2
    batch_xs = page.curves.series["batch"].x
    assert len(batch_xs) == len(set(batch_xs)) and 0 < batch_xs[0] <= 1 and list(batch_xs) == sorted(batch_xs)
    assert page.curves.point_counts()["batch"] == 3 * round(1 / batch_xs[0])

    # a finished run is extended: the question says so and offers more epochs than it had
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS):
        monkeypatch.setattr(QInputDialog, "getInt", lambda *a: (answer(*a), (4, True))[1])
        page.resume_run(run_dir)
    assert "has finished (3 of 3 epochs done)" in asked["label"] and asked["minimum"] == 4
    assert (window.session.config.epochs, window.session.config.lr) == (7, 0.005)
    # the greyed settings on the left are the user's: the summary says what the resumed run trains with
    assert "Resumed with its own settings: efficientnet_lite0, freeze all, learning rate 0.001, 4 epochs." in \
        page.summary.text()


def test_pause_holds_the_run_and_resume_continues_it(window, qtbot):
    page = window.pages["Train"]
    status = window._status  # the status line
    window.session.update_config(epochs=20, feature_cache=False, augment="none")
    pause = find(window, QPushButton, "pauseButton")
    with qtbot.waitSignal(page.controller.batches, timeout=RUN_TIMEOUT_MS):
        page.start()
    with qtbot.waitSignal(page.controller.pausedChanged):
        pause.click()
    assert pause.text() == "Continue" and "Paused" in status.text()
    # the batch in flight when Pause was pressed may still arrive (on a busy machine, seconds later);
    # after that nothing does
    for _ in range(20):
        with qtbot.waitSignal(page.controller.batches, timeout=3000, raising=False) as late:
            pass
        if not late.signal_triggered:
            break
    with qtbot.assertNotEmitted(page.controller.batches, wait=2000):
        pass
    assert page.running and pause.text() == "Continue"
    pause.click()
    assert pause.text() == "Pause" and "Paused" not in status.text()
    with qtbot.waitSignal(page.controller.batches, timeout=RUN_TIMEOUT_MS):
        pass  # batches flow again
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        page.stop()
    assert finished.args[0].status == "stopped"


def test_export_writes_a_file_that_loads(window, qtbot, tmp_path):
    from tl_studio.core.export import load_model_file

    train, export = window.pages["Train"], window.pages["Export"]
    window.session.update_config(epochs=1)
    with qtbot.waitSignal(train.runFinished, timeout=RUN_TIMEOUT_MS):
        find(window, QPushButton, "startButton").click()
    export.format_buttons.button(1).setChecked(True)  # ONNX
    export.path_edit.setText(str(tmp_path / "exported.onnx"))
    import re
    import time

    clicked = time.monotonic()
    with qtbot.waitSignal(export.exported, timeout=RUN_TIMEOUT_MS):
        find(window, QPushButton, "exportButton").click()
    waited = time.monotonic() - clicked
    model = load_model_file(tmp_path / "exported.onnx")
    assert model.classes == ["blue", "green", "red"]
    assert "passed" in export.result.text()
    reported = float(re.search(r"\) in ([\d.]+) s\.", export.result.text()).group(1))
    assert waited - 0.5 <= reported <= waited + 0.1  # the whole wait: the child process and the check too
    assert "onnxruntime" in export.snippet.toPlainText()


def test_quitting_during_training_keeps_the_epoch_and_does_not_wait_for_the_model_file(window, qtbot):
    """"Yes, stop and quit": the run stops after the current batch with its checkpoint; the model file
    (a whole export) is left for a resume or `export`, so closing takes seconds."""
    from tl_studio.core.run_folder import LAST_CHECKPOINT, MODEL_FILE, RunFolder
    from tl_studio.gui.main_window import stop_run_showing_progress

    page = window.pages["Train"]
    window.session.update_config(epochs=30)
    with qtbot.waitSignal(page.controller.epochEnded, timeout=RUN_TIMEOUT_MS):
        page.start()
    run_dir = page.current_run_dir
    stop_run_showing_progress(window, page)
    assert not page.running
    assert (run_dir / LAST_CHECKPOINT).is_file() and not (run_dir / MODEL_FILE).exists()
    assert RunFolder(run_dir).status().state == "stopped"


def test_quitting_once_training_has_finished_waits_for_the_model_file_and_says_so(window, qtbot):
    """Ctrl+Q while the bar said "Saving the best epoch as the run's model file" asked "Stop training and
    quit? The last finished epoch is kept; you can resume the run later" of a run that had finished,
    and Stop and Pause stayed pressable."""
    from PySide6.QtWidgets import QProgressDialog

    from tl_studio.core.run_folder import MODEL_FILE, RunFolder
    from tl_studio.gui.main_window import stop_run_showing_progress

    page = window.pages["Train"]
    window.session.update_config(epochs=1)
    with qtbot.waitSignal(page.controller.epochEnded, timeout=RUN_TIMEOUT_MS):
        page.start()
    assert page.writing_model_file
    assert not find(window, QPushButton, "stopButton").isEnabled() and not page.pause_button.isEnabled()
    labels = []
    QTimer.singleShot(600, lambda: labels.extend(d.labelText() for d in window.findChildren(QProgressDialog)))
    stop_run_showing_progress(window, page)
    assert not page.running
    assert labels and labels[0].startswith("Writing the run's model file… ") and "quits once it is written" in labels[0]
    run_dir = page.current_run_dir
    assert (run_dir / MODEL_FILE).is_file() and RunFolder(run_dir).status().state == "done"


def test_the_question_before_quitting_follows_the_run_while_it_waits(window, qtbot, monkeypatch):
    """Asked in the first epoch and left open, the question still said "nothing of this run is kept"
    after epoch 1 had finished and been saved."""
    from PySide6.QtWidgets import QMessageBox

    page = window.pages["Train"]
    window.session.update_config(epochs=3, feature_cache=False, augment="none")
    asked = []

    def left_open_while_an_epoch_ends(box):
        asked.append(box.text())
        with qtbot.waitSignal(page.controller.epochEnded, timeout=RUN_TIMEOUT_MS):
            pass
        asked.append(box.text())
        return QMessageBox.No

    monkeypatch.setattr(QMessageBox, "exec", left_open_while_an_epoch_ends)
    with qtbot.waitSignal(page.controller.batches, timeout=RUN_TIMEOUT_MS):
        page.start()
    window.close()
    assert asked == ["Stop training and quit? No epoch has finished yet, so nothing of this run is kept.",
                     "Stop training and quit? The last finished epoch is kept; you can resume the run later."]
    assert window.isVisible() and page.running  # answered No
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS):
        page.controller.control.request_stop()


def test_stop_during_the_first_epoch_says_nothing_is_kept_and_leaves_nothing_to_press(window, qtbot, monkeypatch):
    """Stop and Quit in the first epoch promised "the best epoch so far" and "the last finished epoch is
    kept"; Pause stayed pressable after Stop and turned into "Resume" (now "Continue") for a run that was ending."""
    from PySide6.QtWidgets import QMessageBox

    page = window.pages["Train"]
    window.session.update_config(epochs=20, feature_cache=False, augment="none")
    pause, stop = find(window, QPushButton, "pauseButton"), find(window, QPushButton, "stopButton")
    asked = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: asked.append(box.text()) or QMessageBox.No)
    with qtbot.waitSignal(page.controller.batches, timeout=RUN_TIMEOUT_MS):
        page.start()
    window.close()  # answered No: the run goes on
    assert asked == ["Stop training and quit? No epoch has finished yet, so nothing of this run is kept."]
    with qtbot.waitSignal(page.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        stop.click()
        progress = find(window, QProgressBar, "trainProgress").format()
        assert progress == "Stopping: nothing of this run is kept yet"
        assert window._status.text().endswith("no epoch has finished yet, so nothing of this run is kept.")
        assert not pause.isEnabled() and not stop.isEnabled()
        page.toggle_pause()  # Train > Pause / Continue (Ctrl+P) after Stop: nothing to pause
        assert pause.text() == "Pause" and not page.controller.control.paused
    assert finished.args[0].status == "stopped" and finished.args[0].epochs_done == 0
