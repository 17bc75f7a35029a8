"""The training engine on tiny generated data: a real run end to end, stop, pause, resume, skipped
images, class weighting, repeatability and the feature cache."""

from __future__ import annotations

import csv
import json
import math
import threading
import time

import pytest
import torch

from tl_studio.core import events
from tl_studio.core.callbacks import Callback, Recorder
from tl_studio.core.config import TrainConfig
from tl_studio.core.control import RunControl
from tl_studio.core.engine import Trainer
from tl_studio.core.run_folder import RunFolder
from tests.helpers import make_image_folder

FAST = dict(epochs=2, batch_size=8, workers=0, img_size=64, seed=0)


def lite0_config(data_dir, **changes) -> TrainConfig:
    return TrainConfig(**{"data_dir": str(data_dir), "model": "efficientnet_lite0", "freeze": "all", **FAST,
                          **changes})


def fit(config, run_dir, *callbacks, control=None, resume=False):
    recorder = Recorder()
    trainer = Trainer(config, run_dir, [recorder, *callbacks], control,
                      strict_callbacks=True)
    finished = trainer.fit(resume=resume)
    if trainer.error is not None:
        raise trainer.error
    return finished, recorder


def test_a_frozen_lite0_run_writes_everything_a_user_expects(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    finished, recorder = fit(lite0_config(tiny_dataset), run)

    assert finished.status == "completed", finished.message
    assert finished.epochs_done == 2 and finished.best_epoch in (1, 2)
    assert json.loads((run / "config.json").read_text())["model"] == "efficientnet_lite0"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                             "train_images_per_s", "feature_images_per_s", "gpu_memory_peak_mb"]
    assert (run / "last.ckpt").is_file() and (run / "best.ckpt").is_file()
    # the model file works with plain torch, at any image size, and knows its classes
    extra = {"tl_studio.json": ""}
    model = torch.export.load(str(run / "model.pt2"), extra_files=extra).module()
    assert json.loads(extra["tl_studio.json"])["classes"] == ["blue", "green", "red"]
    probabilities = model(torch.rand(3, 3, 97, 131))
    assert probabilities.shape == (3, 3)
    assert torch.allclose(probabilities.sum(1), torch.ones(3), atol=1e-5)
    # the features were cached, and every epoch sent its events
    assert recorder.of_type(events.FitStart)[0].feature_cache
    assert recorder.of_type(events.FeatureProgress)[-1].done == 36
    assert len(recorder.of_type(events.EpochEnd)) == 2
    assert recorder.of_type(events.BatchEnd)
    samples = recorder.of_type(events.SamplePredictions)[-1].samples
    assert 0 < len(samples) <= 16 and {s.true_label for s in samples} == {0, 1, 2}
    assert samples[0].thumbnail.dtype.name == "uint8" and samples[0].thumbnail.ndim == 3
    # the run folder tells any process how the run went, event by event
    folder = RunFolder(run)
    logged = folder.events()
    assert logged[0]["event"] == "FitStart" and logged[-1]["event"] == "RunFinished"
    assert [e["epoch"] for e in logged if e["event"] == "EpochEnd"] == [1, 2]
    assert len([e for e in logged if e["event"] == "BatchEnd"]) == len(recorder.of_type(events.BatchEnd))
    status = folder.status()
    assert status.state == "done" and status.epochs_done == 2 and status.best_epoch == finished.best_epoch
    assert status.torch_version == torch.__version__ and status.ended >= status.started
    assert not folder.is_locked()
    # a frozen-backbone epoch counts each training image once, and reports the feature rate apart
    first = recorder.of_type(events.EpochEnd)[0]
    assert first.feature_images_per_s > 0 and recorder.of_type(events.EpochEnd)[1].feature_images_per_s is None
    assert first.train_images_per_s <= 27 / (first.seconds * 0.5)


def test_a_random_init_torchvision_model_fine_tunes_on_images(tiny_dataset, tmp_path):
    config = TrainConfig(data_dir=str(tiny_dataset), model="resnet18", weights="none", freeze="none",
                         augment="light", **FAST)
    finished, recorder = fit(config, tmp_path / "run")
    assert finished.status == "completed", finished.message
    start = recorder.of_type(events.FitStart)[0]
    assert not start.feature_cache and start.trainable_params == start.total_params
    assert all(e.train_images_per_s > 0 for e in recorder.of_type(events.EpochEnd))


class StopAt(Callback):
    def __init__(self, control, epoch, batch):
        self.control, self.epoch, self.batch = control, epoch, batch

    def on_batch_end(self, event):
        if (event.epoch, event.batch) == (self.epoch, self.batch):
            self.control.request_stop()


def test_stop_takes_effect_within_one_batch_and_keeps_the_last_epoch(tiny_dataset, tmp_path):
    control = RunControl()
    config = lite0_config(tiny_dataset, epochs=3, feature_cache=False, augment="none")
    finished, recorder = fit(config, tmp_path / "run", StopAt(control, 2, 1), control=control)
    assert finished.status == "stopped"
    batches = recorder.of_type(events.BatchEnd)
    assert (batches[-1].epoch, batches[-1].batch) == (2, 1)  # nothing ran after the stop
    assert finished.epochs_done == 1 and (tmp_path / "run" / "model.pt2").is_file()
    assert isinstance(recorder.events[-1], events.RunFinished)
    # the reason says how it ended, not only its best epoch (status.json, the Runs step's Status)
    assert finished.message.startswith("Stopped after epoch 1 of 3. Best val accuracy ")
    assert RunFolder(tmp_path / "run").status().reason == finished.message


PAUSED_S = 1.5


def test_pause_holds_between_batches_until_resumed(tiny_dataset, tmp_path):
    control = RunControl()
    paused_at = threading.Event()

    times = {}

    class PauseOnce(Callback):
        def on_phase_start(self, event):
            times["phase"] = time.perf_counter()

        def on_batch_end(self, event):
            if event.step == 1:
                control.pause()
                paused_at.set()

        def on_epoch_end(self, event):
            times["epoch"] = time.perf_counter()

    config = lite0_config(tiny_dataset, epochs=1, feature_cache=False, augment="none")
    result = {}
    thread = threading.Thread(target=lambda: result.update(zip(("finished", "recorder"),
                                                                fit(config, tmp_path / "run", PauseOnce(),
                                                                    control=control))))
    thread.start()
    assert paused_at.wait(60)
    thread.join(timeout=PAUSED_S)  # the loop must be holding, not finishing
    assert thread.is_alive() and control.paused
    control.resume()
    thread.join(timeout=120)
    assert result["finished"].status == "completed"
    recorder = result["recorder"]
    assert len(recorder.of_type(events.BatchEnd)) == 4  # 27 images / batch 8
    # the epoch's time and images/s are the run's, not the pause's: the epoch lasted the pause and more
    epoch, = recorder.of_type(events.EpochEnd)
    lasted = times["epoch"] - times["phase"]
    assert lasted > PAUSED_S and epoch.seconds < lasted - 0.8 * PAUSED_S
    assert epoch.train_images_per_s > 27 / (lasted - 0.8 * PAUSED_S)


def test_the_runs_clock_stands_still_while_a_pause_holds_the_loop():
    control = RunControl()
    control.pause()
    threading.Timer(0.6, control.resume).start()
    before, wall = control.clock(), time.perf_counter()
    control.checkpoint()  # held until the timer resumes
    held = time.perf_counter() - wall
    assert held >= 0.5 and control.clock() - before < held - 0.45
    control.held_by_pause(10.0)  # a distributed run's processes wait for the first one's word elsewhere
    assert control.clock() - before < held - 10


def test_resume_continues_after_the_last_finished_epoch(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    control = RunControl()
    config = lite0_config(tiny_dataset, epochs=3)
    first, _ = fit(config, run, StopAt(control, 2, 1), control=control)
    assert first.status == "stopped" and first.epochs_done == 1
    began = RunFolder(run).status().started

    finished, recorder = fit(config, run, resume=True)
    assert finished.status == "completed"
    assert RunFolder(run).status().started == began  # the run's date: when it began, not its last resume
    start = recorder.of_type(events.FitStart)[0]
    assert start.start_epoch == 2 and [e.epoch for e in start.history] == [1]
    assert [e.epoch for e in recorder.of_type(events.EpochEnd)] == [2, 3]
    assert [r["epoch"] for r in csv.DictReader(open(run / "metrics.csv"))] == ["1", "2", "3"]
    assert not [note for note in start.notes if "data set changed" in note]  # the same images


def test_a_resume_after_images_were_deleted_says_the_data_set_changed(tiny_dataset, tmp_path):
    """It went on silently on fewer images, its best epoch judged on the larger validation set of before."""
    from tl_studio.core.data import scan_dataset

    run = tmp_path / "run"
    control = RunControl()
    config = lite0_config(tiny_dataset, epochs=3)
    fit(config, run, StopAt(control, 2, 1), control=control)
    scan = scan_dataset(tiny_dataset, seed=config.seed)
    before = (len(scan.split("train")), len(scan.split("val")))
    for record in [*scan.split("train")[:3], *scan.split("val")[:1]]:
        record.path.unlink()
    finished, recorder = fit(config, run, resume=True)
    assert finished.status == "completed"
    notes = [note for note in recorder.of_type(events.FitStart)[0].notes if "data set changed" in note]
    assert notes == [f"The data set changed since this run last trained: {before[0]} -> {before[0] - 3} training "
                     f"and {before[1]} -> {before[1] - 1} validation images; its earlier epochs were measured on "
                     f"the {before[1]} validation images of then, so their accuracies and its best epoch compare "
                     "loosely with the next ones."]


def test_the_data_change_note_names_only_the_counts_that_changed():
    from tl_studio.core.engine import data_change_note

    assert data_change_note((245, 153), (245, 153)) == ""
    assert data_change_note((245, 150), (245, 153)) == (
        "The data set changed since this run last trained: 150 -> 153 validation images; its earlier epochs were "
        "measured on the 150 validation images of then, so their accuracies and its best epoch compare loosely "
        "with the next ones.")
    assert data_change_note((245, 153), (240, 153)) == (
        "The data set changed since this run last trained: 245 -> 240 training images; its earlier epochs "
        "trained on the 245 training images of then.")


def test_a_new_run_never_overwrites_an_existing_one(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    fit(lite0_config(tiny_dataset, epochs=1), run)
    finished, _ = fit(lite0_config(tiny_dataset, epochs=1), run)
    assert finished.status == "failed" and "--resume" in finished.message


def test_an_image_that_breaks_mid_run_is_skipped_and_reported(tiny_dataset, tmp_path):
    from tl_studio.core.data import scan_dataset

    scan = scan_dataset(tiny_dataset)
    broken = scan.split("train")[0].path
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is no longer a JPEG")  # corrupted after the scan
    recorder = Recorder()
    config = lite0_config(tiny_dataset, feature_cache=False, augment="none")
    trainer = Trainer(config, tmp_path / "run", [recorder], scan=scan, strict_callbacks=True)
    finished = trainer.fit()
    assert finished.status == "completed", finished.message
    assert [s.path for s in finished.skipped_images] == [str(broken)]
    assert recorder.of_type(events.EpochEnd)[0].skipped_images == 1


def test_the_feature_cache_fills_both_splits_in_one_pass_and_reports_each_split_s_broken_image(
        tiny_dataset, tmp_path, monkeypatch):
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.run_data import RunData

    scan = scan_dataset(tiny_dataset)
    broken = [scan.split("train")[2].path, scan.split("val")[1].path]
    for path in broken:
        path.write_bytes(b"\xff\xd8\xff\xe0 this is no longer a JPEG")  # corrupted after the scan
    loaders = []
    make_loader = RunData.feature_loader
    monkeypatch.setattr(RunData, "feature_loader",
                        lambda self, records, batch_size: loaders.append(len(records)) or make_loader(
                            self, records, batch_size))
    recorder = Recorder()
    trainer = Trainer(lite0_config(tiny_dataset, epochs=1), tmp_path / "run", [recorder], scan=scan,
                      strict_callbacks=True)
    finished = trainer.fit()
    assert finished.status == "completed", finished.message
    total = len(scan.split("train")) + len(scan.split("val"))
    assert loaders == [total]  # one loader, one start of its workers, for both splits
    assert sorted(s.path for s in finished.skipped_images) == sorted(str(p) for p in broken)
    features = trainer.state.features
    assert len(features["train"]) == len(scan.split("train")) - 1
    assert len(features["val"]) == len(scan.split("val")) - 1
    assert 2 not in features["train"].indices.tolist() and 1 not in features["val"].indices.tolist()
    progress = recorder.of_type(events.FeatureProgress)
    assert progress[-1].done == progress[-1].total == total


def test_imbalanced_classes_switch_on_class_weighting_but_not_for_a_class_of_a_few_images(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=9)
    make_image_folder(tmp_path / "data", classes=("green",), per_class=60, seed=7)
    make_image_folder(tmp_path / "data", classes=("grey",), per_class=2, seed=9)
    _, recorder = fit(lite0_config(data, epochs=1), tmp_path / "run")
    start = recorder.of_type(events.FitStart)[0]
    assert start.class_weights is not None
    weights = dict(zip(start.classes, start.class_weights))
    assert weights["red"] > weights["green"]
    assert weights["grey"] == pytest.approx(weights["green"])  # two photos: not weighted up
    assert max(weights.values()) <= 10 * min(weights.values()) + 1e-6
    assert any(note.startswith("Class-weighted loss is on") for note in start.notes)
    assert any(note.startswith("grey: fewer than 5 training images, too few to weight up") for note in start.notes)


def test_the_same_seed_gives_the_same_run_on_the_cpu(tiny_dataset, tmp_path):
    config = lite0_config(tiny_dataset, epochs=1, feature_cache=False, freeze="none", augment="standard")
    a, _ = fit(config, tmp_path / "a")
    b, _ = fit(config, tmp_path / "b")
    rows_a = list(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))
    rows_b = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]
    assert [r["val_loss"] for r in rows_a] == [r["val_loss"] for r in rows_b]


def test_bad_settings_fail_with_one_sentence(tiny_dataset, tmp_path):
    finished, _ = fit(lite0_config(tmp_path / "missing"), tmp_path / "run")
    assert finished.status == "failed" and "\n" not in finished.message
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_each_epoch_reports_its_own_gpu_memory_peak_in_the_csv_the_cli_and_the_window(tiny_dataset, tmp_path,
                                                                                   monkeypatch):
    """No GPU here: the device's two memory calls are stood in for, to follow the figure from the engine
    to metrics.csv, --json and the CLI's epoch line (the window's line is tests/gui/test_train_page.py)."""
    import io

    from tl_studio.cli.reporters import JsonLines, ProgressBar
    from tl_studio.core import device

    peaks = iter([3250.0, 1800.0])  # the second epoch after an out-of-memory retry at a smaller batch
    calls = []
    monkeypatch.setattr(device, "reset_peak_memory", lambda info: calls.append("reset"))
    monkeypatch.setattr(device, "peak_memory_mb", lambda info: calls.append("peak") or next(peaks))
    lines, json_lines = io.StringIO(), io.StringIO()
    bar = ProgressBar(lines)
    bar.epochs = 2
    finished, recorder = fit(lite0_config(tiny_dataset), tmp_path / "run", bar, JsonLines(json_lines))

    assert finished.status == "completed"
    assert calls == ["reset", "peak", "reset", "peak"]  # each epoch's own high-water mark
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["gpu_memory_peak_mb"] for r in rows] == ["3250", "1800"]
    assert [json.loads(line)["gpu_memory_peak_mb"] for line in json_lines.getvalue().splitlines()[:2]] == [3250, 1800]
    assert ", GPU memory peak 3.2 GB)" in lines.getvalue() and ", GPU memory peak 1.8 GB)" in lines.getvalue()


def test_a_cpu_run_says_nothing_of_gpu_memory(tmp_path):
    import io

    from tl_studio.cli.reporters import ProgressBar

    lines = io.StringIO()
    bar = ProgressBar(lines)
    bar.on_epoch_end(events.EpochEnd(1, 0.5, 0.8, 0.4, 0.9, 1e-3, 2.0, 50.0))
    assert "GPU" not in lines.getvalue() and lines.getvalue().rstrip().endswith("img/s)")


def test_a_distributed_runs_processes_leave_the_pause_out_of_their_clocks(monkeypatch):
    """Every process of a torchrun run waits at the same batch while the first one is paused; each one's
    clock leaves that wait out, as a single process's does (here a process other than the first, its
    word from the first one played back: pause, pause, pause, continue)."""
    from tl_studio.core import strategy as strategy_module

    words = iter([strategy_module.PAUSE] * 3 + [strategy_module.CONTINUE])
    process = strategy_module.DistributedProcesses.__new__(strategy_module.DistributedProcesses)
    process.is_writer = False
    monkeypatch.setattr(process, "_broadcast_int", lambda value: next(words), raising=False)
    monkeypatch.setattr(strategy_module, "PAUSE_POLL_SECONDS", 0.2)
    control = RunControl()
    before, wall = control.clock(), time.perf_counter()
    process.between_batches(control)
    held = time.perf_counter() - wall
    assert held >= 0.55 and control.clock() - before < held - 0.5


@pytest.mark.parametrize("weights, freeze, said", [("none", "all", True), ("none", "2", True), ("none", "none", False),
                                                   ("default", "all", False)])
def test_a_backbone_frozen_at_random_weights_is_said_when_the_run_starts(tiny_dataset, tmp_path, weights, freeze,
                                                                         said):
    """Its frozen stages give the head random features that no epoch improves: said at the start (the
    CLI's Note lines and the Train step show FitStart's notes), not found out from the accuracy."""
    from tl_studio.core.diagnostics import RANDOM_AND_FROZEN

    config = lite0_config(tiny_dataset, weights=weights, freeze=freeze, epochs=1)
    finished, recorder = fit(config, tmp_path / "run")
    assert finished.status == "completed"
    start, = recorder.of_type(events.FitStart)
    assert (RANDOM_AND_FROZEN in start.notes) is said


@pytest.mark.parametrize("feature_cache", [True, False])
def test_an_epoch_of_several_passes_over_cached_features_is_said(tiny_dataset, tmp_path, feature_cache):
    """--epochs reads "passes over the training images", but a small data set's epoch on cached features
    is several passes (and its train accuracy counts each): said at the start; one pass says nothing."""
    config = lite0_config(tiny_dataset, epochs=1, feature_cache=feature_cache)
    finished, recorder = fit(config, tmp_path / "run")
    start, = recorder.of_type(events.FitStart)
    said = [note for note in start.notes if note.startswith("Each epoch makes")]
    train_images = start.num_train
    assert len(said) == feature_cache
    if feature_cache:
        passes = math.ceil(100 * config.batch_size / train_images)
        assert f"makes {passes} passes over the cached features of the {train_images} training images" in said[0]
