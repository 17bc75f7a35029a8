"""The engine at its edges: a loss that turns nan, a full disk, running out of memory, and seeded runs
that repeat whatever the model-catalogue cache held."""

from __future__ import annotations

import csv
import errno

import pytest
import torch

from tl_studio.core import checkpoint as ckpt
from tl_studio.core import events
from tl_studio.core import run_folder as names
from tl_studio.core.callbacks import Recorder
from tl_studio.core.config import TrainConfig
from tl_studio.core.engine import Trainer

FAST = dict(batch_size=8, workers=0, img_size=64, seed=0)


def config_for(data_dir, **changes) -> TrainConfig:
    return TrainConfig(**{"data_dir": str(data_dir), "model": "efficientnet_lite0", "freeze": "all", "epochs": 2,
                          **FAST, **changes})


def fit(config, run_dir):
    recorder = Recorder()
    trainer = Trainer(config, run_dir, [recorder], strict_callbacks=True)
    finished = trainer.fit()
    assert trainer.error is None, trainer.error
    return finished, recorder


def rows(run_dir) -> list[dict]:
    return list(csv.DictReader(open(run_dir / names.METRICS)))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_finite_epoch(tiny_dataset, tmp_path, monkeypatch):
    import tl_studio.core.optim as optim

    real = optim.make_criterion
    calls = {"n": 0}

    def criterion_that_turns_nan(weights, smoothing):
        loss = real(weights, smoothing)

        def compute(logits, labels):
            calls["n"] += 1
            value = loss(logits, labels)
            return value * float("nan") if calls["n"] > 8 else value  # from the first step of epoch 3
        return compute

    monkeypatch.setattr(optim, "make_criterion", criterion_that_turns_nan)
    run = tmp_path / "run"
    config = config_for(tiny_dataset, epochs=3, feature_cache=False, augment="none")  # 4 steps an epoch
    finished, recorder = fit(config, run)
    assert finished.status == "failed" and "learning rate" in finished.message and "\n" not in finished.message
    assert finished.epochs_done == 2 and [r["epoch"] for r in rows(run)] == ["1", "2"]
    assert ckpt.load_checkpoint(run / names.LAST_CHECKPOINT)["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in ckpt.load_checkpoint(run / names.BEST_CHECKPOINT)["model"].values()
               if t.is_floating_point())
    assert [b.epoch for b in recorder.of_type(events.BatchEnd)][-1] == 2  # no step was taken on the nan
    assert names.RunFolder(run).status().state == "failed"


def test_a_full_disk_ends_the_run_with_one_sentence_and_keeps_the_last_checkpoint(tiny_dataset, tmp_path,
                                                                                     monkeypatch):
    real = ckpt.write_file
    writes = {"n": 0}

    def write_until_the_disk_fills(path, data):
        writes["n"] += 1
        if writes["n"] > 2:  # epoch 1's best.ckpt and last.ckpt fit; nothing after
            with open(path, "wb") as handle:
                handle.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ckpt, "write_file", write_until_the_disk_fills)
    run = tmp_path / "run"
    finished, _ = fit(config_for(tiny_dataset, epochs=3), run)
    assert finished.status == "failed" and finished.message.startswith(f"The disk holding {run} is full")
    assert "MB free" in finished.message and "\n" not in finished.message
    assert finished.message.endswith("free some space, then continue with --resume.")  # epoch 1's checkpoint
    assert ckpt.load_checkpoint(run / names.LAST_CHECKPOINT)["epoch"] == 1
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.name != names.LOCK) == []
    assert (run / names.MODEL_FILE).is_file()  # from the best epoch that was saved
    # status.json says what the folder holds: epoch 1 (it said 3 epochs done, best epoch 2)
    from tl_studio.core.model_file import peek_metadata
    from tl_studio.core.run_folder import RunFolder

    status = RunFolder(run).status()
    assert (status.state, status.epochs_done, status.best_epoch) == ("failed", 1, 1)
    assert peek_metadata(run / names.MODEL_FILE)["best_epoch"] == 1 and [r["epoch"] for r in rows(run)] == ["1"]


def test_out_of_memory_in_training_retries_the_epoch_from_its_start(tiny_dataset, tmp_path, monkeypatch):
    import tl_studio.core.loops as loops

    config = config_for(tiny_dataset, epochs=1, feature_cache=False, augment="none", freeze="none",
                        batch_size=8)
    _, reference = fit(config.replace(batch_size=4), tmp_path / "reference")

    real = loops._optimise
    steps = {"n": 0}

    def optimise_then_run_out_of_memory(ctx, loss):
        steps["n"] += 1
        if steps["n"] == 2:  # after one real step changed the weights and the schedule
            raise torch.OutOfMemoryError("CUDA out of memory (faked)")
        return real(ctx, loss)

    monkeypatch.setattr(loops, "_optimise", optimise_then_run_out_of_memory)
    finished, recorder = fit(config, tmp_path / "run")
    assert finished.status == "completed", finished.message
    notices = [n.message for n in recorder.of_type(events.Notice)]
    assert any("training batch size 8; continuing with batch size 4" in n for n in notices), notices
    # the retried epoch is exactly the epoch a run at batch size 4 trains
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [{k: r[k] for k in keys} for r in rows(tmp_path / "run")] == \
           [{k: r[k] for k in keys} for r in rows(tmp_path / "reference")]
    # the step counter starts again too: the events count the steps the model took
    assert recorder.of_type(events.BatchEnd)[-1].step == reference.of_type(events.BatchEnd)[-1].step


def test_out_of_memory_while_computing_features_halves_that_batch(tiny_dataset, tmp_path, monkeypatch):
    import tl_studio.core.features as features

    real = features.extract_features
    calls = {"n": 0}

    def extract_or_run_out_of_memory(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (faked)")
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "extract_features", extract_or_run_out_of_memory)
    finished, recorder = fit(config_for(tiny_dataset, epochs=1), tmp_path / "run")
    assert finished.status == "completed", finished.message
    notices = [n.message for n in recorder.of_type(events.Notice)]
    assert any("feature and validation batch size 64; continuing with batch size 32" in n for n in notices)
    assert recorder.of_type(events.FeatureProgress)[-1].done == 36


def test_a_seeded_run_repeats_whether_the_model_catalogue_was_cached_or_not(tiny_dataset, tmp_path, monkeypatch):
    from tl_studio.core import catalog

    monkeypatch.setenv("TL_STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    config = config_for(tiny_dataset, epochs=1, feature_cache=False, augment="standard")
    catalog.clear_memo()
    fit(config, tmp_path / "cold")  # builds the catalogue cache on the way
    assert catalog.catalog_cache_path().is_file()
    catalog.clear_memo()
    fit(config, tmp_path / "warm")  # reads it
    catalog.clear_memo()
    keys = ("train_loss", "val_loss")
    assert [{k: r[k] for k in keys} for r in rows(tmp_path / "cold")] == \
           [{k: r[k] for k in keys} for r in rows(tmp_path / "warm")]


@pytest.mark.parametrize("feature_cache", [True, False])
def test_a_dataset_gone_after_the_scan_ends_the_run_with_one_sentence(tiny_dataset, tmp_path, feature_cache):
    """The folder is moved or unplugged between the scan and Start (the window scans long before):
    every image fails to load, and the run says so instead of failing on an empty batch of features."""
    import shutil

    from tl_studio.core.data import scan_dataset

    config = config_for(tiny_dataset, feature_cache=feature_cache)
    scan = scan_dataset(tiny_dataset, seed=config.seed)
    shutil.rmtree(tiny_dataset)
    trainer = Trainer(config, tmp_path / "run", scan=scan)
    finished = trainer.fit()
    train_images = len(scan.split("train"))
    assert finished.status == "failed" and trainer.error is None  # a user's situation, not a bug
    assert finished.message.startswith(f"None of the {train_images} training images could be loaded; has "
                                       f"{tiny_dataset} moved or changed since it was scanned?"), finished.message
    assert "The first failure, " in finished.message and "no longer exists" in finished.message


def test_a_run_on_a_given_scan_records_that_scans_split_so_it_can_be_made_again(tiny_dataset, tmp_path):
    """The window trains on the Data step's scan (its Validation, Test and Seed boxes): config.json must
    record those, or a resume, the model file's calibration and `evaluate` split the folder otherwise
    and count training images as validation."""
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.engine import Trainer
    from tl_studio.core.evaluation import scan_for_model
    from tl_studio.core.model_file import load_model_file

    scan = scan_dataset(tiny_dataset, val_fraction=0.3, test_fraction=0.2, seed=7)
    config = TrainConfig(data_dir=str(tiny_dataset), epochs=1, batch_size=8, workers=0, img_size=64)  # 0.2, 0, 0
    finished = Trainer(config, tmp_path / "run", scan=scan).fit()
    assert finished.status == "completed", finished.message
    recorded = TrainConfig.load(tmp_path / "run" / names.CONFIG)
    assert (recorded.val_fraction, recorded.test_fraction, recorded.seed) == (0.3, 0.2, 7)
    again = scan_for_model(tiny_dataset, load_model_file(finished.model_file).metadata)
    assert [r.path for r in again.split("val")] == [r.path for r in scan.split("val")]


def test_a_disk_full_before_the_first_checkpoint_says_to_start_again_not_to_resume(tmp_path):
    """`--resume` then answered "No checkpoint at .../last.ckpt"."""
    message = ckpt.disk_full_message(tmp_path, 36_000_000)
    assert message.endswith("free some space, then start the run again.")


def _refusal_at_start(data) -> str:
    """The sentence a run on ``data`` fails with before its first epoch."""
    from tl_studio.core.data import scan_dataset

    finished = Trainer(config_for(data), data.parent / "run", scan=scan_dataset(data)).fit()
    assert finished.status == "failed"
    return finished.message


def test_a_class_only_in_the_test_folder_is_named_with_its_folder(tmp_path):
    """Start refused with "No training images for class fish; add some or remove the folder": which one?"""
    from tests.helpers import make_image_folder

    for split, classes in (("train", ("red", "blue")), ("val", ("red", "blue")), ("test", ("red", "blue", "fish"))):
        make_image_folder(tmp_path / "data" / split, classes=classes, per_class=3, size=32)
    assert _refusal_at_start(tmp_path / "data") == ("No training images for class fish (only in test/fish): add a "
                                                    "fish folder of images to the training folder, or remove "
                                                    "test/fish.")


def test_an_empty_training_folder_says_where_images_go_not_to_lower_a_fraction(tmp_path):
    """A pre-split folder has no validation fraction to lower."""
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "data" / "val", classes=("red", "blue"), per_class=3, size=32)
    for name in ("red", "blue"):
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
    assert _refusal_at_start(tmp_path / "data") == ("The training folder holds no images; add each class's images to "
                                                    "a folder of the class's name inside it, as in the validation "
                                                    "folder.")


class _AfterEpoch(Recorder):
    """Does ``action`` once the first epoch's files are on the disk."""

    def __init__(self, action):
        super().__init__()
        self.action = action

    def on_epoch_end(self, event):
        super().on_epoch_end(event)
        if event.epoch == 1:
            self.action()


def test_a_run_folder_moved_away_mid_run_ends_it_with_one_sentence_and_is_not_made_again(tiny_dataset, tmp_path,
                                                                                         caplog):
    """It ended with 'FileNotFoundError: ...' (and two logged tracebacks), and a status write made the old
    folder again, empty, which the window then read as a run that never started."""
    run, moved = tmp_path / "run", tmp_path / "moved"

    def move():  # once the first epoch's checkpoint, written in the background, is there
        import time

        deadline = time.time() + 30
        while not (run / names.LAST_CHECKPOINT).is_file() and time.time() < deadline:
            time.sleep(0.05)
        run.rename(moved)

    trainer = Trainer(config_for(tiny_dataset, epochs=3), run, [_AfterEpoch(move)])
    finished = trainer.fit()
    assert finished.status == "failed" and trainer.error is None
    assert finished.message.startswith(f"The run folder {run} was moved or deleted while the run trained")
    assert not run.exists()  # not made again by a late write
    assert ckpt.load_checkpoint(moved / names.LAST_CHECKPOINT)["epoch"] == 1
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_run_folder_made_read_only_mid_run_ends_it_with_one_sentence(tiny_dataset, tmp_path, monkeypatch, caplog):
    import tempfile

    run = tmp_path / "run"
    real_mkstemp, locked = tempfile.mkstemp, []

    def mkstemp(*args, **kwargs):  # as root, chmod does not stop a write: refuse it as a read-only folder would
        if locked and str(kwargs.get("dir")) == str(run):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    trainer = Trainer(config_for(tiny_dataset, epochs=3), run, [_AfterEpoch(lambda: locked.append(True))])
    finished = trainer.fit()
    assert finished.status == "failed" and trainer.error is None
    assert finished.message == (f"The run folder {run} can no longer be written (Operation not permitted), so the "
                                "run stopped; make it writable again, then resume the run.")
    assert finished.epochs_done <= 2
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("changed", [dict(optimizer="sgd"), dict(freeze="none")])
def test_a_resume_with_another_freeze_or_optimizer_is_refused_before_anything_is_written(tiny_dataset, tmp_path,
                                                                                          changed):
    """It was a KeyError ('momentum') or 'a different number of parameter groups' with a traceback, after
    config.json held the new settings and status.json said failed: the run would not resume again."""
    run = tmp_path / "run"
    fit(config_for(tiny_dataset, epochs=1), run)
    files = {name: (run / name).read_bytes() for name in (names.CONFIG, names.STATUS, names.LAST_CHECKPOINT)}
    trainer = Trainer(config_for(tiny_dataset, epochs=2, **changed), run)
    finished = trainer.fit(resume=True)
    assert trainer.error is None and finished.status == "failed"
    key, value = next(iter(changed.items()))
    was = config_for(tiny_dataset).optimizer if key == "optimizer" else "all"
    assert f"trained with --{key} {was} (not {value})" in finished.message
    assert {name: (run / name).read_bytes() for name in files} == files
    resumed = Trainer(config_for(tiny_dataset, epochs=2), run).fit(resume=True)  # with its own settings
    assert resumed.status == "completed" and resumed.epochs_done == 2


def test_a_resume_with_another_model_or_other_classes_names_them(tiny_dataset, tmp_path):
    import shutil

    run = tmp_path / "run"
    fit(config_for(tiny_dataset, epochs=1), run)
    other = Trainer(config_for(tiny_dataset, epochs=2, model="resnet18", weights="none"), run).fit(resume=True)
    assert other.message.startswith("This run folder was trained with efficientnet_lite0, not resnet18; resume it "
                                    "with efficientnet_lite0")
    fewer = shutil.copytree(tiny_dataset, tmp_path / "fewer")
    shutil.rmtree(fewer / "blue")
    changed = Trainer(config_for(fewer, epochs=2), run).fit(resume=True)
    assert changed.message.startswith("This run folder was trained on the classes blue, green, red, and the data set "
                                      "now has green, red;")


def test_exporting_a_run_before_its_first_epoch_ended_says_to_wait(tmp_path):
    from tl_studio.core.errors import UserError
    from tl_studio.core.runs import open_run

    run = tmp_path / "run"
    run.mkdir()
    (run / names.CONFIG).write_text("{}")
    with pytest.raises(UserError, match="has not finished its first epoch, so there is nothing to export yet"):
        open_run(run)


def test_early_stopping_is_said_after_the_epoch_that_ends_the_run(tiny_dataset, tmp_path):
    """"Stopped early: val loss has not improved for 1 epochs …" came before the line of the epoch that
    caused it."""
    config = config_for(tiny_dataset, epochs=12, early_stopping_patience=1, lr=3.0)  # a rate that cannot settle
    finished, recorder = fit(config, tmp_path / "run")
    assert finished.status == "early-stopped"
    kinds = [type(event).__name__ for event in recorder.events if not isinstance(event, events.BatchEnd)]
    notice = kinds.index("Notice")
    assert kinds[notice - 1] in ("EpochEnd", "SamplePredictions") and "EpochEnd" not in kinds[notice:]
    text = recorder.of_type(events.Notice)[0].message
    assert text.startswith("Stopped early: val loss has not improved for 1 epoch (best at epoch ")
