"""Each epoch's checkpoints, metrics.csv and status.json reach the disk on a background thread
(run_writers.OrderedWrites): the next epoch does not wait for them, they land in order, and the run
does not end before they are all on the disk."""

from __future__ import annotations

import csv
import threading

from tl_studio.core import checkpoint as ckpt
from tl_studio.core import events, fileio
from tl_studio.core import run_folder as names
from tl_studio.core.callbacks import Callback
from tl_studio.core.config import TrainConfig
from tl_studio.core.engine import Trainer
from tl_studio.core.run_writers import OrderedWrites

FAST = dict(model="efficientnet_lite0", freeze="all", batch_size=8, workers=0, img_size=64, seed=0)


class SecondEpochStarts(Callback):
    def __init__(self):
        self.started = threading.Event()

    def on_batch_end(self, event: events.BatchEnd) -> None:
        if event.epoch == 2:
            self.started.set()


def test_the_next_epoch_trains_while_the_checkpoint_is_written(tiny_dataset, tmp_path, monkeypatch):
    second = SecondEpochStarts()
    real = ckpt.write_file
    waited_for_epoch_2 = []

    def slow_disk(path, data):
        if not waited_for_epoch_2:  # epoch 1's first checkpoint: held until epoch 2 has trained a batch
            waited_for_epoch_2.append(second.started.wait(timeout=30))
        real(path, data)

    monkeypatch.setattr(ckpt, "write_file", slow_disk)
    run = tmp_path / "run"
    finished = Trainer(TrainConfig(data_dir=str(tiny_dataset), epochs=2, **FAST), run, [second]).fit()
    assert finished.status == "completed", finished.message
    assert waited_for_epoch_2 == [True]  # a synchronous write would have held epoch 2 back for 30 s
    assert ckpt.load_checkpoint(run / names.LAST_CHECKPOINT)["epoch"] == 2  # all on the disk when fit returns
    assert len(list(csv.DictReader(open(run / names.METRICS)))) == 2
    assert names.RunFolder(run).status().epochs_done == 2


def test_metrics_csv_never_lists_an_epoch_that_no_checkpoint_holds(tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    seen = []
    real = fileio.atomic_write_text

    def checking_write(path, text, **options):
        if path.name == names.METRICS:
            last_row = int(text.strip().splitlines()[-1].split(",")[0])
            seen.append((last_row, ckpt.load_checkpoint(run / names.LAST_CHECKPOINT)["epoch"]))
        real(path, text, **options)

    monkeypatch.setattr(fileio, "atomic_write_text", checking_write)
    finished = Trainer(TrainConfig(data_dir=str(tiny_dataset), epochs=3, **FAST), run, []).fit()
    assert finished.status == "completed", finished.message
    assert [row for row, _ in seen] == [1, 2, 3]
    assert all(checkpoint >= row for row, checkpoint in seen), seen


def test_a_failed_write_drops_the_writes_after_it_and_is_raised_once():
    writes, done = OrderedWrites(), []

    def full_disk():
        raise ckpt.DiskFull("The disk is full.")

    writes.submit(lambda: done.append("a"))
    writes.submit(full_disk)
    writes.submit(lambda: done.append("after the failure"))
    try:
        writes.wait()
    except ckpt.DiskFull as error:
        raised = str(error)
    else:
        raised = None
    assert raised == "The disk is full." and done == ["a"]
    writes.submit(lambda: done.append("final status"))  # asked for after the error was reported
    writes.wait()
    assert done == ["a", "final status"]
