"""Following a run from its events.jsonl (core/run_follow.py): every event the engine sent comes back
as the same event, a line still being written waits for its end, a replaced file is read anew."""

from __future__ import annotations

import dataclasses
import json

from tl_studio.core import events
from tl_studio.core.callbacks import Callback
from tl_studio.core.config import TrainConfig
from tl_studio.core.engine import Trainer
from tl_studio.core.run_folder import RunFolder
from tl_studio.core.run_follow import RunFollower, earlier_batches
from tl_studio.core.run_writers import event_record


class Recorder(Callback):
    def __init__(self):
        self.seen = []

    def _keep(self, event):
        self.seen.append(event)

    on_fit_start = on_phase_start = on_feature_progress = on_batch_end = _keep
    on_epoch_end = on_sample_predictions = on_image_skipped = on_notice = on_fit_end = _keep


def _comparable(event):
    if isinstance(event, events.SamplePredictions):  # thumbnails are made again from the paths
        return (event.epoch, event.classes, [(s.path, s.true_label, s.top_labels, s.top_probs) for s in event.samples])
    return event


def test_a_followed_run_gives_back_every_event_the_engine_sent(tiny_dataset, tmp_path):
    recorder = Recorder()
    config = TrainConfig(data_dir=str(tiny_dataset), epochs=2, batch_size=8, workers=0, img_size=64)
    assert Trainer(config, tmp_path / "run", [recorder]).fit().status == "completed"
    followed = RunFollower(tmp_path / "run", from_start=True).poll()
    assert [_comparable(e) for e in followed] == [_comparable(e) for e in recorder.seen]
    samples = next(e for e in followed if isinstance(e, events.SamplePredictions))
    assert samples.samples[0].thumbnail.ndim == 3


def test_only_complete_new_lines_are_returned_and_a_replaced_file_is_read_from_its_start(tmp_path):
    folder = RunFolder(tmp_path)
    path = folder.file("events.jsonl")
    notice = json.dumps(event_record(events.Notice("one"))) + "\n"
    path.write_text(notice)
    follower = RunFollower(folder)  # starts at the end of what is there
    assert follower.poll() == []
    second = json.dumps(event_record(events.Notice("two")))
    with open(path, "a") as handle:
        handle.write(second[:10])
        handle.flush()
        assert follower.poll() == []
        handle.write(second[10:] + "\n" + '{"event": "SomethingNew", "x": 1}\n')
    assert follower.poll() == [events.Notice("two")]
    path.unlink()
    path.write_text(json.dumps(event_record(events.Notice("three"))) + "\n")  # a run started over
    assert follower.poll() == [events.Notice("three")]
    assert dataclasses.is_dataclass(RunFollower(folder, from_start=True).poll()[0])


def test_a_resumed_runs_earlier_batches_come_back_each_once_from_its_last_pass(tmp_path):
    folder = RunFolder(tmp_path)

    def batch(epoch, number, loss):
        return json.dumps(event_record(events.BatchEnd(epoch, number, 2, 2 * (epoch - 1) + number, loss, 1e-3, 9.0)))

    lines = [batch(1, 1, 0.9), batch(1, 2, 0.8), json.dumps(event_record(events.Notice("x"))),
             batch(2, 1, 0.7),  # epoch 2 stopped part-way, then trained again after a resume
             '{"event": "BatchEnd", "epoch": "not a number"', batch(2, 1, 0.6), batch(2, 2, 0.5),
             batch(3, 1, 0.4)]  # the epoch being trained again now: not earlier
    folder.file("events.jsonl").write_text("\n".join(lines) + "\n")
    found = earlier_batches(tmp_path, before_epoch=3)
    assert [(b.epoch, b.batch, b.loss) for b in found] == [(1, 1, 0.9), (1, 2, 0.8), (2, 1, 0.6), (2, 2, 0.5)]
    assert earlier_batches(tmp_path, before_epoch=1) == []
    assert earlier_batches(tmp_path / "nothing here", before_epoch=3) == []
