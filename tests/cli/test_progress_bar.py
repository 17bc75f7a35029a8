"""The command line's training progress line: its time left."""

from __future__ import annotations

import io

from tl_studio.cli import reporters
from tl_studio.core import events


class _Terminal(io.StringIO):
    def isatty(self) -> bool:  # the line is drawn in place only on a terminal
        return True


def _epoch(epoch: int, seconds: float, features: float | None = None) -> events.EpochEnd:
    return events.EpochEnd(epoch=epoch, train_loss=0.5, train_acc=0.8, val_loss=0.4, val_acc=0.9, lr=1e-3,
                           seconds=seconds, train_images_per_s=800.0, feature_images_per_s=features)


def test_the_time_left_goes_by_the_epochs_after_the_feature_pass(monkeypatch):
    """Epoch 1 computed the features (37 s), the next ones take 0.3 s: at epoch 3 of 20 the line said
    about 10 minutes left (the median of 37 s and 0.3 s is 37 s)."""
    now = [0.0]
    monkeypatch.setattr(reporters.time, "perf_counter", lambda: now[0])
    terminal = _Terminal()
    bar = reporters.ProgressBar(terminal)
    bar.on_fit_start(events.FitStart(run_dir="/tmp/run", classes=("a", "b"), num_train=245, num_val=153, epochs=20,
                                     start_epoch=1, batches_per_epoch=8, device="CPU (2 threads)",
                                     trainable_params=2562, total_params=3_400_000, feature_cache=True,
                                     class_weights=None))
    bar.on_epoch_end(_epoch(1, 37.0, features=10.8))
    bar.on_epoch_end(_epoch(2, 0.3))
    now[0] = 100.0
    bar.on_batch_end(events.BatchEnd(epoch=3, batch=1, num_batches=8, step=17, loss=0.3, lr=1e-3,
                                     images_per_s=800.0))
    now[0] = 100.02
    bar.on_batch_end(events.BatchEnd(epoch=3, batch=8, num_batches=8, step=24, loss=0.3, lr=1e-3,
                                     images_per_s=800.0))
    assert terminal.getvalue().endswith("time left 00:06")  # 17 epochs of 0.3 s after this one, rounded up
