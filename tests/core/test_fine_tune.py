"""The two-phase fine-tune schedule: head on cached features first, then unfreezing down to the chosen
depth with discriminative rates and a fresh one-cycle; curves, checkpoints and resume across the change.

One uninterrupted reference run (4 epochs: head for 2, fine-tune for 2, freeze depth 2) is shared; the
resume tests stop a run in each phase, resume it, and must reproduce the reference exactly.
"""

from __future__ import annotations

import csv
import math

import pytest

from tl_studio.core import events
from tl_studio.core.callbacks import Callback, Recorder
from tl_studio.core.config import Phase, TrainConfig, plan_phases
from tl_studio.core.control import RunControl
from tl_studio.core.engine import Trainer
from tests.helpers import make_image_folder

# efficientnet_lite0's stages (models.py): stem = conv_stem, bn1, blocks.0; stage1 = blocks.1; then
# stage2 = blocks.2, stage3 = blocks.3-4, stage4 = blocks.5-6, conv_head, bn2. Freeze depth 2 = stem + stage1.
FROZEN_AT_DEPTH_2 = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")
HEAD = "classifier."


def config_for(data_dir, **changes) -> TrainConfig:
    settings = dict(data_dir=str(data_dir), model="efficientnet_lite0", schedule="fine-tune", freeze="2",
                    freeze_epochs=2, epochs=4, batch_size=8, workers=0, img_size=64, augment="light", seed=0)
    return TrainConfig(**{**settings, **changes})


class PhaseInspector(Callback):
    """Looks at the trainer when each phase starts (test-only access to its state): which parameters
    train, the optimizer's groups and their peak rates; and at the BatchNorm modes during training."""

    def __init__(self):
        self.trainer = None
        self.phases: dict[str, dict] = {}
        self.bn_modes: dict[str, tuple[bool, bool]] = {}

    def on_phase_start(self, event: events.PhaseStart) -> None:
        state = self.trainer.state
        names = {id(p): n for n, p in state.model.named_parameters()}
        self.phases[event.name] = {
            "trainable": {n for n, p in state.model.named_parameters() if p.requires_grad},
            "groups": [(g["name"], _peak_lr(g), {names[id(p)] for p in g["params"]})
                       for g in state.policy.optimizer.param_groups],
            "event": event}

    def on_batch_end(self, event: events.BatchEnd) -> None:
        model = self.trainer.state.model
        # stem BatchNorm (frozen stage) and a BatchNorm in stage2 (trainable in the fine-tune phase)
        self.bn_modes.setdefault(self.trainer.state.phase.name, (model.bn1.training, model.blocks[2][0].bn1.training))


def _peak_lr(group: dict) -> float:
    return group.get("max_lr", group.get("initial_lr", group["lr"]))


def fit(config, run_dir, *callbacks, control=None, resume=False):
    recorder = Recorder()
    trainer = Trainer(config, run_dir, [recorder, *callbacks], control,
                      strict_callbacks=True)
    for callback in callbacks:
        if isinstance(callback, PhaseInspector):
            callback.trainer = trainer
    finished = trainer.fit(resume=resume)
    if trainer.error is not None:
        raise trainer.error
    return finished, recorder


class StopAt(Callback):
    def __init__(self, control, epoch, batch):
        self.control, self.epoch, self.batch = control, epoch, batch

    def on_batch_end(self, event):
        if (event.epoch, event.batch) == (self.epoch, self.batch):
            self.control.request_stop()


@pytest.fixture(scope="module", autouse=True)
def no_model_file(tmp_path_factory):
    """Each run here would end by exporting model.pt2 (torch.export: seconds per run); the model file is
    tested in test_engine.py, so these runs skip it to keep the module fast."""
    from types import SimpleNamespace

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tl_studio.core.export.export_model",
                      lambda network, spec, metadata, path, fmt, images: SimpleNamespace(path=path))
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("fine_tune") / "data", per_class=12)


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    inspector = PhaseInspector()
    finished, recorder = fit(config_for(data_dir), run, inspector)
    assert finished.status == "completed", finished.message
    return run, recorder, inspector


def epoch_rows(run_dir) -> list[dict]:
    return list(csv.DictReader(open(run_dir / "metrics.csv")))


def test_the_plan_is_head_epochs_then_the_rest():
    config = TrainConfig(schedule="fine-tune", freeze="2", freeze_epochs=2, epochs=5)
    assert plan_phases(config) == [Phase("head", 1, 2, "all", None), Phase("fine-tune", 3, 5, "2", 0.5)]
    assert plan_phases(TrainConfig(epochs=5)) == [Phase("train", 1, 5, "all", None)]


def test_the_head_phase_trains_only_the_head_on_cached_features(reference):
    _, recorder, inspector = reference
    head = inspector.phases["head"]
    assert head["trainable"] == {HEAD + "weight", HEAD + "bias"}
    assert [(name, lr) for name, lr, _ in head["groups"]] == [("head", pytest.approx(1e-3))]
    assert recorder.of_type(events.FitStart)[0].feature_cache
    # features were computed once, in epoch 1, for all 36 images (training and validation)
    assert recorder.of_type(events.FeatureProgress)[-1].done == 36
    assert [e.phase for e in recorder.of_type(events.EpochEnd)] == ["head", "head", "fine-tune", "fine-tune"]


def test_the_phase_change_unfreezes_exactly_the_later_stages_with_discriminative_rates(reference):
    _, recorder, inspector = reference
    tune = inspector.phases["fine-tune"]
    names = [name for name, _ in inspector.trainer.state.model.named_parameters()]
    expected = {name for name in names if not name.startswith(FROZEN_AT_DEPTH_2)}
    assert tune["trainable"] == expected
    base = 1e-4  # config.FINE_TUNE_PHASE_LR for AdamW
    rates = {name: lr for name, lr, _ in tune["groups"]}
    assert rates == pytest.approx({"head": base, "stage4": base * 0.5, "stage3": base * 0.25, "stage2": base * 0.125})
    # every trainable parameter is in exactly one group, the head's in the head group
    grouped = [names for _, _, names in tune["groups"]]
    assert set().union(*grouped) == expected and sum(map(len, grouped)) == len(expected)
    assert grouped[0] == {HEAD + "weight", HEAD + "bias"}
    sizes = {name: p.numel() for name, p in inspector.trainer.state.model.named_parameters()}
    assert tune["event"].first_epoch == 3 and tune["event"].trainable_params == sum(sizes[n] for n in expected)
    # every BatchNorm keeps the statistics the head was trained with (eval mode), frozen stage or not
    assert inspector.bn_modes["fine-tune"] == (False, False)


def test_the_fine_tune_phase_starts_a_fresh_one_cycle(reference):
    _, recorder, _ = reference
    batches = recorder.of_type(events.BatchEnd)
    head = [b.lr for b in batches if b.epoch <= 2]
    tune = [b.lr for b in batches if b.epoch >= 3]
    # each phase peaks at its own maximum and anneals to almost nothing; then the rate rises again
    assert max(head) == pytest.approx(1e-3, rel=0.2) and head[-1] < max(head) / 10
    assert max(tune) == pytest.approx(1e-4, rel=0.2) and max(tune) > 4 * head[-1] and tune[-1] < max(tune) / 10
    # the head phase makes at least 100 updates (several passes over the cached features per epoch);
    # the fine-tune phase trains on images: 30 training images in batches of 8
    assert len(head) >= 100 and len({b.num_batches for b in batches if b.epoch <= 2}) == 1
    assert {b.num_batches for b in batches if b.epoch >= 3} == {4}


def test_curves_and_checkpoints_continue_across_the_phase_change(reference):
    run, recorder, _ = reference
    rows = epoch_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
    steps = [b.step for b in recorder.of_type(events.BatchEnd)]
    assert steps == list(range(1, len(steps) + 1))  # the global step keeps counting
    assert (run / "last.ckpt").is_file() and (run / "best.ckpt").is_file()


def stop_and_resume(data_dir, run, stop_epoch: int):
    control = RunControl()
    stopped, _ = fit(config_for(data_dir), run, StopAt(control, stop_epoch, 1), control=control)
    assert stopped.status == "stopped" and stopped.epochs_done == stop_epoch - 1
    finished, recorder = fit(config_for(data_dir), run, resume=True)
    assert finished.status == "completed", finished.message
    return recorder


@pytest.fixture(scope="module")
def resumed_in_fine_tune(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("resumed") / "run"
    return run, stop_and_resume(data_dir, run, stop_epoch=4)


def optimizer_steps(run_dir) -> list[int]:
    from tl_studio.core.checkpoint import LAST, load_checkpoint

    state = load_checkpoint(run_dir / LAST)["optimizer"]["state"]
    return sorted({int(entry["step"]) for entry in state.values()})


def assert_same_metrics(run_dir, reference_dir) -> None:
    rows, expected = epoch_rows(run_dir), epoch_rows(reference_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    for key in ("train_loss", "val_loss", "val_acc", "lr"):
        assert [float(r[key]) for r in rows] == pytest.approx([float(r[key]) for r in expected], rel=1e-4), key


def test_resume_in_the_head_phase_reproduces_the_uninterrupted_run(reference, data_dir, tmp_path):
    reference_run, _, _ = reference
    recorder = stop_and_resume(data_dir, tmp_path / "run", stop_epoch=2)
    starts = recorder.of_type(events.PhaseStart)
    assert [(s.name, s.first_epoch) for s in starts] == [("head", 2), ("fine-tune", 3)]
    assert [e.epoch for e in recorder.of_type(events.EpochEnd)] == [2, 3, 4]
    assert_same_metrics(tmp_path / "run", reference_run)


def test_resume_in_the_fine_tune_phase_continues_its_optimizer_and_schedule(reference, resumed_in_fine_tune):
    reference_run, reference_recorder, _ = reference
    run, recorder = resumed_in_fine_tune
    starts = recorder.of_type(events.PhaseStart)
    assert [(s.name, s.first_epoch) for s in starts] == [("fine-tune", 4)]
    assert [e.epoch for e in recorder.of_type(events.EpochEnd)] == [4]
    assert [r["epoch"] for r in epoch_rows(run)] == ["1", "2", "3", "4"]
    # the one-cycle goes on where it was (not a fresh cycle over the last epoch) ...
    expected_lrs = [b.lr for b in reference_recorder.of_type(events.BatchEnd) if b.epoch == 4]
    assert [b.lr for b in recorder.of_type(events.BatchEnd)] == pytest.approx(expected_lrs, rel=1e-6)
    # ... and so do AdamW's moments: 8 steps over epochs 3-4, as in the uninterrupted run
    assert optimizer_steps(run) == optimizer_steps(reference_run) == [8]


def test_resume_in_the_fine_tune_phase_reproduces_the_uninterrupted_run(reference, resumed_in_fine_tune):
    assert_same_metrics(resumed_in_fine_tune[0], reference[0])


def test_a_frozen_run_whose_last_feature_batch_has_one_image_completes(data_dir, tmp_path):
    # 30 training images in batches of 29: the image loader would drop the batch of one, the feature
    # path does not, and the schedule must count the steps the feature path really makes
    config = TrainConfig(data_dir=str(data_dir), freeze="all", epochs=5, batch_size=29, workers=0, img_size=64)
    finished, recorder = fit(config, tmp_path / "run")
    assert finished.status == "completed", finished.message
    # 30 images make 2 batches a pass; the head still gets its minimum number of updates
    batches = recorder.of_type(events.BatchEnd)
    assert len(batches) >= 100 and batches[-1].step == len(batches)


def test_a_run_with_loader_processes_resumes_onto_the_crops_it_would_have_seen(data_dir, tmp_path):
    """Loader processes drew the random crops and flips from streams of their own, which a resumed run (its
    processes new) could not continue: from the epoch after a stop it trained on other crops (val accuracy
    0.804 against 0.797 at epoch 3 of a run that was never stopped). Each image's augmentation now follows
    the run's seed, the epoch and the image alone, so the resumed run is the run, with one loader process
    or none."""
    config = config_for(data_dir, schedule="onecycle", freeze="none", epochs=3, workers=1, augment="strong")
    fit(config, tmp_path / "reference")
    control = RunControl()
    stopped, _ = fit(config, tmp_path / "run", StopAt(control, 2, 1), control=control)
    assert stopped.status == "stopped" and stopped.epochs_done == 1
    finished, _ = fit(config, tmp_path / "run", resume=True)
    assert finished.status == "completed", finished.message
    fit(config.replace(workers=0), tmp_path / "in this process")
    expected = epoch_rows(tmp_path / "reference")
    for run in ("run", "in this process"):
        rows = epoch_rows(tmp_path / run)
        assert [r["epoch"] for r in rows] == ["1", "2", "3"]
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert [float(r[key]) for r in rows] == pytest.approx([float(r[key]) for r in expected], rel=1e-5), (run, key)
