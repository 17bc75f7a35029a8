"""The Train step without a real run: what it shows for the engine's events (feature extraction
progress, the device it trains on), fed straight into its controller's signals."""

from __future__ import annotations

import os
import re

import pytest
from PySide6.QtCore import Qt

from tl_studio.core import events
from tl_studio.gui.cpu_share import explain_cpu, lowers_background_priority, work_threads
from tl_studio.gui.pages.train_page import TrainPage
from tl_studio.gui.session import Session


@pytest.fixture
def page(qtbot):
    session = Session()
    train_page = TrainPage(session)
    qtbot.addWidget(train_page)
    yield train_page
    train_page.shutdown()


def fit_start(device: str) -> events.FitStart:
    return events.FitStart(run_dir="/tmp/run", classes=("a", "b"), num_train=10, num_val=4, epochs=3, start_epoch=1,
                           batches_per_epoch=2, device=device, trainable_params=10, total_params=100,
                           feature_cache=True, class_weights=None)


def test_feature_extraction_shows_progress_and_time_left_per_batch(page, qtbot):
    said = []
    page.session.statusMessage.connect(said.append)
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))
    for done in (32, 64, 96):
        qtbot.wait(20)  # time passes between batches: the rate and the time left are known
        page.controller.featureProgress.emit(events.FeatureProgress(done, 400))
        assert page.progress.maximum() == 400 and page.progress.value() == done
        text = page.progress.format()
        assert re.search(rf"{done}/400 images · \d+ img/s · \d+:\d\d left", text), text
        assert said[-1] == text  # the status line says it too
    page.controller.featureProgress.emit(events.FeatureProgress(16, 80))  # the next pass (validation)
    assert page.progress.maximum() == 80 and "16/80 images" in page.progress.format()


def test_the_device_box_and_the_run_say_the_same_threads_and_why(page, qtbot):
    page.after_window_shown()  # lists the devices in the background
    device_box = page.settings.device
    qtbot.waitUntil(lambda: device_box.findData("cpu") >= 0, timeout=60_000)
    cpu_text = device_box.itemText(device_box.findData("cpu"))
    threads, cores = work_threads(), os.cpu_count() or 2
    # what the engine measures in the worker thread, after the window took its core
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)" if threads == 1 else f"CPU ({threads} threads)"))
    summary = page.summary.text()
    if lowers_background_priority():  # every core, below the window's priority (gui/cpu_share.py)
        assert threads == cores and cpu_text == f"CPU ({threads} thread{'s' if threads > 1 else ''})"
        assert "; the window keeps priority)." in summary
    elif threads < cores:
        assert cpu_text == f"CPU ({threads} of {cores} cores)"
        assert f"on CPU ({threads} of {cores} cores; one is left to keep the window responsive)." in summary
        assert "left to keep the window responsive" in device_box.itemData(device_box.findData("cpu"),
                                                                         Qt.ToolTipRole)
    assert explain_cpu("NVIDIA H200 (139.8 GB)") == "NVIDIA H200 (139.8 GB)"


def test_a_run_that_cannot_resume_says_why_in_the_status_line_not_in_a_dialog(page, tmp_path):
    from tl_studio.core.config import TrainConfig

    said = []
    page.session.statusMessage.connect(said.append)
    run_dir = tmp_path / "first-epoch-stopped"
    run_dir.mkdir()
    TrainConfig(epochs=3).save(run_dir / "config.json")  # stopped before its first checkpoint
    page.resume_run(run_dir)  # a modal box here would fail the test (tests/gui/conftest.py)
    assert said and said[-1].startswith("Cannot resume first-epoch-stopped: it has no checkpoint")
    assert "start a new run instead" in page.summary.text()
    assert not page.running


def test_the_device_box_shows_a_long_device_name_whole(qtbot):
    """The device names arrive after the page was laid out (and while another step is on screen): the
    settings column widens so the box is not cut ("Automatic: CPU (1 of 2 cor")."""
    from PySide6.QtWidgets import QLabel, QStackedWidget

    steps = QStackedWidget()
    qtbot.addWidget(steps)
    steps.addWidget(QLabel("another step"))
    train_page = TrainPage(Session())
    steps.addWidget(train_page)
    steps.resize(1280, 820)
    steps.show()
    qtbot.waitExposed(steps)
    name = "Automatic: NVIDIA GeForce RTX 4070 Laptop GPU (8 GB)"
    train_page._devices_found(([("auto", name), ("cpu", "CPU (1 of 2 cores)")], 1))
    steps.setCurrentWidget(train_page)
    box = train_page.settings.device
    qtbot.waitUntil(lambda: box.isVisible())
    assert box.currentText() == name and box.width() >= box.sizeHint().width()
    train_page.shutdown()


def test_stop_says_the_best_epoch_is_being_saved_until_the_run_ends(page, monkeypatch):
    """A stopped run still writes its model file, which took 40 s on a busy CPU while the bar kept the
    last batch's "2:26 left": the bar and the status line say what is happening until the run ends."""
    said = []
    page.session.statusMessage.connect(said.append)
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))
    page.controller.epochEnded.emit(events.EpochEnd(epoch=1, train_loss=0.5, train_acc=0.8, val_loss=0.5,
                                                    val_acc=0.8, lr=1e-3, seconds=1.0, train_images_per_s=5.0))
    page.controller.batches.emit([events.BatchEnd(epoch=2, batch=3, num_batches=11, step=14, loss=0.5, lr=1e-3,
                                                  images_per_s=16.0)])
    monkeypatch.setattr(TrainPage, "running", property(lambda self: True))
    monkeypatch.setattr(page.controller, "stop", lambda *args, **kwargs: None)
    page.stop()
    assert page.progress.format() == "Stopping: saving the best epoch so far…"
    assert said[-1] == ("Stopping after the current batch, then saving the best epoch so far (this can take a "
                        "minute)…")
    # one line: at the smallest window the bar showed the long sentence wrapped and clipped
    from PySide6.QtGui import QFontMetrics

    page.resize(1000 - 150, 620)
    assert QFontMetrics(page.progress.font()).horizontalAdvance(page.progress.format()) < 330
    page.controller.batches.emit([events.BatchEnd(epoch=2, batch=4, num_batches=11, step=15, loss=0.5, lr=1e-3,
                                                  images_per_s=16.0)])  # the batch in flight still ends
    assert "saving the best epoch" in page.progress.format() and page.progress.value() == 15


def test_time_left_leaves_out_the_time_spent_paused(page, monkeypatch):
    """10 s a batch, 6 batches: after a 1000 s pause the second batch still leaves 4 x 10 s, not the
    33 minutes a rate that counted the pause would promise."""
    from tl_studio.gui import train_progress

    now = [0.0]
    monkeypatch.setattr(train_progress.time, "monotonic", lambda: now[0])
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))  # 3 epochs of 2 batches

    def batch(step: int, at: float) -> str:
        now[0] = at
        page.controller.batches.emit([events.BatchEnd(epoch=1 + (step - 1) // 2, batch=1 + (step - 1) % 2,
                                                      num_batches=2, step=step, loss=0.5, lr=1e-3, images_per_s=5.0)])
        return page.progress.format()

    assert batch(1, 10.0).endswith("00:50 left")
    page.controller.pausedChanged.emit(True)
    assert page.progress.format() == "Paused · press Continue to go on"  # not the last batch's time left
    now[0] = 1010.0
    page.controller.pausedChanged.emit(False)
    assert page.progress.format().endswith("00:50 left")
    assert batch(2, 1020.0).endswith("00:40 left")


def test_time_left_follows_the_batches_after_the_feature_pass_not_the_pass(page, monkeypatch):
    """A cached-feature run: 37 s of features, then batches of 0.1 s. Epoch 2 said 00:57 left from the
    rate since the start; the 4 batches to go took 0.4 s. And a pass with 0.8 s to go said 00:00 left."""
    from tl_studio.gui import train_progress

    now = [0.0]
    monkeypatch.setattr(train_progress.time, "monotonic", lambda: now[0])
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))  # 3 epochs of 2 batches
    now[0] = 36.2
    page.controller.featureProgress.emit(events.FeatureProgress(390, 398))
    assert page.progress.format().endswith("00:01 left")  # 8 images at 10.8 img/s: 0.7 s, rounded up

    def batch(step: int, at: float) -> str:
        now[0] = at
        page.controller.batches.emit([events.BatchEnd(epoch=1 + (step - 1) // 2, batch=1 + (step - 1) % 2,
                                                      num_batches=2, step=step, loss=0.5, lr=1e-3, images_per_s=5.0)])
        return page.progress.format()

    now[0] = 37.0
    page.controller.featureProgress.emit(events.FeatureProgress(398, 398))
    assert batch(1, 37.1).endswith("--:-- left")  # one batch since the pass: no rate yet
    assert batch(2, 37.2).endswith("00:01 left")  # 4 batches of 0.1 s: 0.4 s
    page.controller.phaseStarted.emit(events.PhaseStart(name="fine-tune", first_epoch=2, trainable_params=90,
                                                        description="Fine-tuning the whole network"))
    assert batch(3, 47.2).endswith("--:-- left")  # a new phase: its own rate
    assert batch(4, 57.2).endswith("00:20 left")  # 10 s a batch now, 2 to go


def test_a_note_naming_the_users_files_is_shown_as_written(page):
    from dataclasses import replace

    from tl_studio.core.data import Problem
    from tl_studio.core.problem_summary import problems_sentence

    note = problems_sentence([Problem("red/<b>notes&.jpg", "Not an image file", "not_image")])
    page.controller.fitStarted.emit(replace(fit_start("CPU (1 thread)"), notes=(note,)))
    assert page.summary.textFormat() == Qt.PlainText
    assert "1 file left out of the run (red/<b>notes&.jpg)" in page.summary.text()


def test_the_sample_predictions_show_class_and_file_names_as_written(page):
    """The class names are the user's folders: `<u>ants` was an underlined "ants" under a sample, and
    `bees<br>x` two lines; the tooltip lost the `<b>` of `<b>a&b.jpg`."""
    import numpy as np

    from tests.gui.shown_text import label_shows, shown

    sample = events.SamplePrediction(thumbnail=np.zeros((8, 8, 3), np.uint8), path="/data/<u>ants/<b>a&b.jpg",
                                     true_label=0, top_labels=(1, 0), top_probs=(0.7, 0.3))
    page.controller.samplesReady.emit(events.SamplePredictions(1, ("<u>ants", "bees<br>x"), (sample,)))
    tile = page.samples.tiles[0]
    assert label_shows(tile.caption) == "bees<br>x 70%\ntrue: <u>ants"
    assert shown(tile.toolTip()) == "/data/<u>ants/<b>a&b.jpg\ntrue: <u>ants\nbees<br>x: 70.0%\n<u>ants: 30.0%"


def test_images_skipped_during_a_run_are_one_line_that_counts_them(page, monkeypatch):
    """Images deleted while a run trains: a line each pushed Start, Pause and Stop off the screen (150
    lines); one line counts them, and the end of the run says how many."""
    said = []
    page.session.statusMessage.connect(said.append)
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))
    lines_before = page.summary.text().count("\n")
    page.controller.imageSkipped.emit(events.ImageSkipped("/data/ants/first.jpg", "the file no longer exists"))
    assert page.summary.text().endswith("Skipped first.jpg: the file no longer exists")
    for index in range(149):
        page.controller.imageSkipped.emit(events.ImageSkipped(f"/data/ants/{index}.jpg", "the file no longer exists"))
    assert page.summary.text().count("\n") == lines_before + 1
    assert ("Skipped 150 images that could not be read, the first first.jpg: the file no longer exists"
            in page.summary.text())
    monkeypatch.setattr(page.run_progress, "finish", lambda *args: None)
    page.controller.finished.emit(events.RunFinished(status="completed", message="Done.", best_val_acc=0.9,
                                                     epochs_done=3, best_epoch=3, model_file=None, seconds=1.0))
    assert said[-1] == "Done. 150 images could not be read and were skipped."


def test_a_failed_run_is_said_in_the_status_line_before_its_message_box_holds_the_window(page, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    said, status_when_boxed = [], []
    page.session.statusMessage.connect(said.append)
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: status_when_boxed.append(said[-1] if said else None))
    page.session.say("Training alexnet…")
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))
    page.controller.finished.emit(events.RunFinished(status="failed", message="Cannot download alexnet's weights.",
                                                     best_val_acc=None, epochs_done=0, best_epoch=None,
                                                     model_file=None, seconds=1.0))
    assert status_when_boxed == ["Cannot download alexnet's weights."]


def test_the_bar_says_validating_and_saving_instead_of_a_full_bar_at_no_time_left(page):
    """After the last batch the run validates, then writes and checks its model file (12.7 s measured
    in a user's run): the bar stood full at "0:00 left" all that time, Pause and Stop still offered."""
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))  # 3 epochs of 2 batches

    def batch(epoch: int, number: int) -> str:
        page.controller.batches.emit([events.BatchEnd(epoch=epoch, batch=number, num_batches=2, step=0, loss=0.5,
                                                      lr=1e-3, images_per_s=5.0)])
        return page.progress.format()

    def epoch_end(epoch: int) -> str:
        page.controller.epochEnded.emit(events.EpochEnd(epoch=epoch, train_loss=0.5, train_acc=0.8, val_loss=0.5,
                                                        val_acc=0.8, lr=1e-3, seconds=1.0, train_images_per_s=5.0))
        return page.progress.format()

    assert batch(2, 2).endswith(" left")  # epoch 2 of 3: more batches to come
    assert "Saving" not in epoch_end(2)
    assert batch(3, 1).endswith(" left")
    assert batch(3, 2) == "Epoch 3/3 · validating…"
    assert epoch_end(3) == "Saving the best epoch as the run's model file and checking it…"


def test_a_resumed_runs_earlier_batches_draw_its_curve_but_do_not_move_the_bar(page):
    """On resume the bridge replays the earlier epochs' batch losses (events.jsonl): the loss curve
    continues, while the bar, its rate and time left belong to this start."""
    import dataclasses

    page.controller.fitStarted.emit(dataclasses.replace(fit_start("CPU (1 thread)"), start_epoch=3))
    starting = page.progress.format()
    assert starting == "Starting epoch 3 of 3..." and page.progress.value() == 4
    earlier = [events.BatchEnd(epoch=e, batch=b, num_batches=2, step=0, loss=0.5, lr=1e-3, images_per_s=99.0)
               for e in (1, 2) for b in (1, 2)]
    page.controller.batches.emit(tuple(earlier))
    assert page.curves.point_counts()["batch"] == 4
    assert page.progress.format() == starting and page.progress.value() == 4
    page.controller.batches.emit((events.BatchEnd(epoch=3, batch=1, num_batches=2, step=5, loss=0.4, lr=1e-3,
                                                  images_per_s=5.0),))
    assert page.progress.value() == 5 and page.progress.format().startswith("Epoch 3/3 · batch 1/2 · 5 img/s")


def test_an_epoch_on_a_gpu_says_its_memory_peak_and_on_the_cpu_nothing_of_it(page):
    said = []
    page.session.statusMessage.connect(said.append)
    page.controller.fitStarted.emit(fit_start("NVIDIA GeForce RTX 4090 (24.0 GB)"))
    for epoch, peak in ((1, 3250.0), (2, None)):
        page.controller.epochEnded.emit(events.EpochEnd(epoch=epoch, train_loss=0.5, train_acc=0.8, val_loss=0.5,
                                                        val_acc=0.8, lr=1e-3, seconds=1.0, train_images_per_s=5.0,
                                                        peak_memory_mb=peak))
    assert said[-2] == "Epoch 1: val accuracy 0.800, val loss 0.5000 (1.0 s, GPU memory peak 3.2 GB)"
    assert said[-1] == "Epoch 2: val accuracy 0.800, val loss 0.5000 (1.0 s)"


def test_a_run_of_several_processes_resumes_in_as_many_as_the_window_can_start_and_says_so(page, tmp_path):
    import json

    run = tmp_path / "ddp"
    run.mkdir()
    (run / "events.jsonl").write_text(json.dumps({"event": "FitStart", "processes": 2}) + "\n"
                                      + json.dumps({"event": "EpochEnd", "epoch": 1}) + "\n")
    assert not page.settings.processes.isEnabled()  # one CPU, no GPUs: one process here
    processes, note = page._resume_processes(run, "/data/my photos")
    assert processes == 1
    assert note == ("ddp trained in 2 processes; this window can start 1 here, so it continues in 1. To keep 2: "
                    f"tl-studio train '/data/my photos' --out {run} --resume --nproc-per-node 2")
    (run / "events.jsonl").write_text(json.dumps({"event": "FitStart"}) + "\n")  # logs from before the field
    assert page._resume_processes(run, "/data") == (1, "")


def test_a_batch_arriving_after_pause_leaves_the_bar_saying_paused(page):
    """The batch in flight when Pause was pressed put "2 img/s · 04:05 left" back on the bar."""
    from tl_studio.gui.train_progress import PAUSED_TEXT

    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))

    def batch(number: int) -> None:
        page.controller.batches.emit([events.BatchEnd(epoch=1, batch=number, num_batches=2, step=number, loss=0.5,
                                                      lr=1e-3, images_per_s=5.0)])

    batch(1)
    page.run_progress.paused(True)
    batch(2)
    assert page.progress.format() == PAUSED_TEXT and page.progress.value() == 2
    page.run_progress.paused(False)
    assert page.progress.format() != PAUSED_TEXT


def _window_on_train_step(qtbot, width: int, height: int):
    """The main window on the Train step after four epochs (val loss rising: the over-fitting hint shows)
    and 16 sample predictions, its summary as long as a real run's."""
    from dataclasses import replace

    import numpy as np

    from tl_studio.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.steps.go_to("Train")
    window.resize(width, height)
    page = window.pages["Train"]
    controller = page.controller
    controller.fitStarted.emit(replace(fit_start("CPU (2 threads)"), epochs=4, run_dir="/home/someone/.local/share/"
                                       "tl-studio/runs/hymenoptera-efficientnet_lite0-2025-06-01-120000"))
    for epoch, val_loss in zip(range(1, 5), (0.5, 0.4, 0.45, 0.5)):
        controller.batches.emit([events.BatchEnd(epoch=epoch, batch=b, num_batches=4, step=(epoch - 1) * 4 + b,
                                                 loss=0.8 / (epoch + b), lr=1e-3, images_per_s=30.0)
                                 for b in range(1, 5)])
        controller.epochEnded.emit(events.EpochEnd(epoch=epoch, train_loss=0.6 / epoch, train_acc=0.6 + 0.1 * epoch,
                                                   val_loss=val_loss, val_acc=0.8, lr=1e-3, seconds=1.0,
                                                   train_images_per_s=30.0))
    samples = tuple(events.SamplePrediction(thumbnail=np.full((112, 112, 3), 40 * (i % 5), np.uint8),
                                            path=f"/data/ants/{i}.jpg", true_label=i % 2,
                                            top_labels=(i % 3 % 2, 1 - i % 3 % 2), top_probs=(0.9, 0.1))
                    for i in range(16))
    controller.samplesReady.emit(events.SamplePredictions(4, ("ants", "bees"), samples))
    qtbot.waitUntil(lambda: (window.width(), window.height()) == (width, height), timeout=5000)
    assert page.hint.isVisible()  # the hint takes its share of the height too
    return window, page


@pytest.mark.parametrize("size", [(1000, 620), (1400, 900)])
def test_the_samples_show_whole_thumbnails_with_their_labels_under_readable_curves(qtbot, size):
    """At 1000 x 620 the sample predictions were a sliver under the curves: the tops of three images,
    the predicted label under each hidden, a fourth column past the right edge. A whole row of tiles is
    in view, thumbnail and caption, none cut at the right, and the curves keep a readable height."""
    from PySide6.QtCore import QRect

    window, page = _window_on_train_step(qtbot, *size)
    viewport = page.samples.parentWidget()
    scroll = viewport.parentWidget()  # the samples' scroll area

    def in_view(widget) -> bool:
        return viewport.rect().contains(QRect(widget.mapTo(viewport, widget.rect().topLeft()), widget.size()))

    def a_whole_row_shown():
        tiles = [tile for tile in page.samples.tiles if tile.isVisible()]
        assert len(tiles) == 16
        first_row = [tile for tile in tiles if tile.y() == tiles[0].y()]
        assert len(first_row) >= 2
        for tile in first_row:
            assert in_view(tile.image) and in_view(tile.caption)
            assert tile.caption.height() >= tile.caption.heightForWidth(tile.caption.width())  # every line
            assert tile.image.width() >= 64  # a thumbnail, not a stamp
        assert scroll.horizontalScrollBar().maximum() == 0
        view_box = page.curves.loss_plot.getPlotItem().vb
        assert view_box.height() >= 80 and view_box.width() >= 300  # the curves stay readable

    qtbot.waitUntil(a_whole_row_shown, timeout=5000)
    pitch = scroll.verticalScrollBar().singleStep()  # one step scrolls one whole row
    assert pitch == page.samples.tiles[page.samples.columns].y() - page.samples.tiles[0].y()
    window.close()


@pytest.mark.parametrize("size", [(1000, 620), (1400, 900)])
def test_the_legends_hide_no_curve(qtbot, size):
    """The loss and accuracy legends sat on the curves (top right, where an accuracy ends): each is now
    under its plot's axis, outside the area the curves are drawn in, and on one row."""
    window, page = _window_on_train_step(qtbot, *size)
    tabs = page.curves.loss_plot.parentWidget().parentWidget()
    for plot in (page.curves.loss_plot, page.curves.accuracy_plot, page.curves.lr_plot):
        tabs.setCurrentWidget(plot)
        item = plot.getPlotItem()

        def legend_clear_of_the_curves(item=item, plot=plot):
            legend, view_box = item.legend, item.vb
            assert legend.isVisible() and legend.items
            assert not legend.sceneBoundingRect().intersects(view_box.sceneBoundingRect())
            assert plot.sceneRect().contains(legend.sceneBoundingRect())  # in view, not cut off
            assert legend.columnCount == len(legend.items)  # one row: little of the curves' height

        qtbot.waitUntil(legend_clear_of_the_curves, timeout=5000)
    window.close()


def test_the_summary_follows_the_two_phase_schedule_into_fine_tuning(page):
    """Through a two-phase run's second phase the summary kept saying the head's parameters trained on
    cached features, and how many passes over them an epoch makes; it names the phase and what trains."""
    from dataclasses import replace

    from tl_studio.core.diagnostics import cached_passes_note

    passes = cached_passes_note(10, 7, 100, two_phase=True)
    page.controller.fitStarted.emit(replace(fit_start("CPU (1 thread)"), notes=(passes, "Class weights on.")))
    assert passes in page.summary.text()
    page.controller.phaseStarted.emit(events.PhaseStart("head", 1, 10, "Phase 1", feature_cache=True))
    text = page.summary.text()
    assert "Phase 1 of 2, the new head: 10 of 100 parameters train. Features are computed once" in text
    page.controller.phaseStarted.emit(events.PhaseStart("fine-tune", 3, 60, "Phase 2", feature_cache=False))
    text = page.summary.text()
    assert "Phase 2 of 2, fine-tuning: 60 of 100 parameters train." in text and "Class weights on." in text
    assert "cached" not in text and "Run folder: /tmp/run" in text


def test_a_one_phase_run_keeps_the_summary_of_its_start(page):
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))
    before = page.summary.text()
    page.controller.phaseStarted.emit(events.PhaseStart("train", 1, 10, "Training", feature_cache=True))
    assert page.summary.text() == before and "Phase" not in before


def test_another_folder_after_a_run_empties_the_step_and_says_where_the_run_is(page, tmp_path):
    """Curves, sample images and "Done · best val accuracy 0.900" of a run on ants and bees stayed on the
    Train step after the user opened a folder of flowers, and read as that folder's. The same folder
    scanned again (an image fixed on the Data step) keeps them."""
    import numpy as np

    from tests.helpers import make_image_folder
    from tl_studio.core.data import scan_dataset

    insects = make_image_folder(tmp_path / "insects", classes=("ants", "bees"), per_class=4)
    flowers = make_image_folder(tmp_path / "flowers", classes=("rose", "tulip"), per_class=4)
    page.session.set_dataset(scan_dataset(insects))
    page.run_config = page.session.config
    page.current_run_dir = tmp_path / "runs" / "insects-run"
    page.controller.fitStarted.emit(fit_start("CPU (1 thread)"))
    page.controller.epochEnded.emit(events.EpochEnd(epoch=1, train_loss=0.5, train_acc=0.8, val_loss=0.5,
                                                    val_acc=0.9, lr=1e-3, seconds=1.0, train_images_per_s=5.0))
    sample = events.SamplePrediction(thumbnail=np.zeros((8, 8, 3), np.uint8), path=str(insects / "ants" / "0.jpg"),
                                     true_label=0, top_labels=(0, 1), top_probs=(0.7, 0.3))
    page.controller.samplesReady.emit(events.SamplePredictions(1, ("ants", "bees"), (sample,)))
    page.progress.setFormat("Done · best val accuracy 0.900")

    def shows_the_run() -> bool:
        return page.samples.shown_count() == 1 and len(page.curves.accuracy_plot.listDataItems()[0].getData()[0]) > 0

    assert shows_the_run()
    page.session.set_dataset(scan_dataset(insects))  # rescanned
    assert shows_the_run() and page.progress.format() == "Done · best val accuracy 0.900"

    page.session.set_dataset(scan_dataset(flowers))
    assert page.samples.shown_count() == 0
    assert all(len(item.getData()[0] if item.getData()[0] is not None else ()) == 0
               for item in page.curves.accuracy_plot.listDataItems())
    assert page.progress.format() == "Not started"
    assert page.summary.text() == ("Press Start to train on flowers. The last run, insects-run (on insects), is on "
                                   "the Runs step.")
