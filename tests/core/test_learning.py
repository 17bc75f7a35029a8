"""The engine learns, and only through its optimizer: on generated data that a pretrained backbone separates
easily, a short run reaches a validation accuracy far above chance, while the same run with a learning rate of
zero in effect leaves every weight where it started and stays where the untrained head was. And the feature cache is only a
shortcut: the head trained on cached features takes the same optimizer steps and reaches the same result as
the head trained through the whole frozen network."""

from __future__ import annotations

import pytest
import torch

from tl_studio.core import events
from tl_studio.core.callbacks import Recorder
from tl_studio.core.config import TrainConfig
from tl_studio.core.engine import Trainer
from tl_studio.core.checkpoint import load_checkpoint
from tl_studio.core.models import build_model, head_path
from tl_studio.core.run_folder import BEST_CHECKPOINT, RunFolder
from tl_studio.core.run_state import HEAD_MIN_STEPS, seed_everything
from tests.helpers import COLOURS, make_image_folder

CLASSES = tuple(COLOURS)  # five colours: chance is 20 %
# The validator refuses 0 (a user typing it made a mistake); 1e-12 moves no float32 weight of a fresh head.
NO_LEARNING = 1e-12


def separable_dataset(root, per_class: int = 12):
    return make_image_folder(root, classes=CLASSES, per_class=per_class, size=64, splits=("train", "val"))


def run(data_dir, run_dir, **changes):
    config = TrainConfig(**{"data_dir": str(data_dir), "model": "efficientnet_lite0", "freeze": "all",
                            "epochs": 4, "batch_size": 8, "workers": 0, "img_size": 64, "seed": 0,
                            "augment": "none", **changes})
    recorder = Recorder()
    trainer = Trainer(config, run_dir, [recorder], strict_callbacks=True)
    finished = trainer.fit()
    if trainer.error is not None:
        raise trainer.error
    assert finished.status == "completed", finished.message
    return recorder


def saved_weights(run_dir) -> dict[str, torch.Tensor]:
    """The network's weights at the best epoch, as the checkpoint holds them."""
    return load_checkpoint(RunFolder(run_dir).file(BEST_CHECKPOINT))["model"]


def val_accuracies(recorder) -> list[float]:
    return [end.val_acc for end in recorder.of_type(events.EpochEnd)]


def test_a_short_run_learns_and_a_zero_learning_rate_does_not(tmp_path):
    data = separable_dataset(tmp_path / "colours")
    learned = val_accuracies(run(data, tmp_path / "learns", lr=3e-3))
    frozen = run(data, tmp_path / "stays", lr=NO_LEARNING)
    assert max(learned) >= 0.8, learned  # four times chance (0.2)
    still = val_accuracies(frozen)
    assert len(set(still)) == 1 and still[0] <= 0.6, still  # the same untrained head every epoch
    losses = {end.val_loss for end in frozen.of_type(events.EpochEnd)}
    assert len(losses) == 1, losses
    # only the head moves, and only as far as its learning rate lets it: every weight the run saved is the
    # one the seeded run started from (the backbone exactly, the head within steps x rate)
    seed_everything(0)  # as the run does, right before it builds the model
    network = build_model("efficientnet_lite0", len(CLASSES))
    untouched = network.state_dict()
    stays, learns = saved_weights(tmp_path / "stays"), saved_weights(tmp_path / "learns")
    assert stays.keys() == untouched.keys() == learns.keys()
    head = {name for name in untouched if name.startswith(head_path(network) + ".")}
    assert head and all(torch.equal(run_weights[name], untouched[name])
                        for run_weights in (stays, learns) for name in untouched if name not in head)
    moved = {name: (stays[name] - untouched[name]).abs().max().item() for name in head}
    learned_moved = {name: (learns[name] - untouched[name]).abs().max().item() for name in head}
    assert max(moved.values()) < 1e-9 and min(learned_moved.values()) > 1e-3, (moved, learned_moved)


def test_the_feature_cache_takes_the_same_steps_to_the_same_model(tmp_path):
    # Enough images that the cached head makes one pass per epoch (it repeats passes below HEAD_MIN_STEPS
    # updates in a phase): 140 training images in batches of 4 = 35 steps an epoch, 105 in three.
    data = separable_dataset(tmp_path / "colours", per_class=28)
    # float32 on both paths (a CPU with bf16 matrix units computes cached training features in bf16, and
    # the frozen backbone's forward in a training step in float32): the same arithmetic, only the cache differs
    settings = dict(lr=1e-3, epochs=3, batch_size=4, amp=False)
    assert 3 * 140 // 4 >= HEAD_MIN_STEPS
    cached = run(data, tmp_path / "cached", feature_cache=True, **settings)
    through = run(data, tmp_path / "through", feature_cache=False, **settings)
    assert cached.of_type(events.FitStart)[0].feature_cache and not through.of_type(events.FitStart)[0].feature_cache
    steps = [[end.step for end in recorder.of_type(events.BatchEnd)] for recorder in (cached, through)]
    assert steps[0] == steps[1] == list(range(1, 3 * 35 + 1))
    # The two paths shuffle with different generators (the loader draws its workers' base seed first), so
    # epochs in the middle differ by the order of the batches; after the same steps both reach the same model.
    ends = [recorder.of_type(events.EpochEnd)[-1] for recorder in (cached, through)]
    assert round(abs(ends[0].val_acc - ends[1].val_acc) * 140) <= 2 and min(end.val_acc for end in ends) >= 0.8, ends
    assert abs(ends[0].val_loss - ends[1].val_loss) < 0.05, ends


def test_head_passes_report_images_per_second_counting_each_image_once():
    """On cached features a small data set gets several passes an epoch; the live rate must count its
    images once, like the epoch line, not once per pass (a clock that ticks 1 s per step here)."""
    from tl_studio.core import loops
    from tl_studio.core.features import FeatureSet

    ticks = iter(range(1000))
    head = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    rates = []
    ctx = loops.StepContext(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                            torch.nn.CrossEntropyLoss(), torch.device("cpu"), None, None, False, lambda: None,
                            lambda batch, batches, loss, lr, rate: rates.append(rate),
                            clock=lambda: float(next(ticks)))
    features = FeatureSet(torch.randn(20, 4), torch.arange(20) % 2, torch.arange(20))
    totals = loops.train_on_features(head, head, features, 10, torch.Generator().manual_seed(0), ctx, passes=3)
    assert totals.seen == 60 and len(rates) == 6
    assert rates[-1] == pytest.approx(20 / 6)  # 20 images in 6 seconds (6 steps), not 60
