"""The persistent feature cache (core/feature_store.py): a second run or analysis on the same images
computes nothing, a changed image is recomputed alone, other models, weights or preprocessing never see
each other's features, a damaged entry or an unusable cache folder only costs time, and the folder
stays within its bound, least recently used first."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest
import torch

from tl_studio.core import events, feature_layout, feature_store, features
from tl_studio.core.callbacks import Recorder
from tl_studio.core.config import TrainConfig
from tl_studio.core.engine import Trainer
from tl_studio.core.workbench import open_workbench, record_features
from tests.helpers import make_image

FAST = dict(model="efficientnet_lite0", freeze="all", epochs=2, batch_size=8, workers=0, img_size=64, seed=0)


class BackboneCounter:
    """Counts the images that go through a model's backbone: the features ``extract_features`` computes
    with it (the extraction runs a copy with its BatchNorms folded, core/bn_folding.py, so a hook on the
    model itself would not see them)."""

    def __init__(self, model, monkeypatch):
        self.images = 0
        original = features.extract_features

        def counting(network, *args, **kwargs):
            result = original(network, *args, **kwargs)
            if network is model:
                self.images += len(result)
            return result

        monkeypatch.setattr(features, "extract_features", counting)


@pytest.fixture
def bench(tiny_dataset):
    return open_workbench(TrainConfig(data_dir=str(tiny_dataset), **FAST))


def _store_of(bench):
    """The store the workbench's feature pass uses (its key has the autocast dtype device.py picks)."""
    from tl_studio.core.device import autocast_dtype

    return feature_store.open_store(bench.model, bench.spec, bench.device.device,
                                    autocast_dtype(bench.device, bench.model, purpose="features"))


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "features").rglob("*" + feature_store.ENTRY_SUFFIX))


def test_a_second_pass_computes_nothing_and_gives_the_same_features(bench, private_cache_dir, monkeypatch):
    counter = BackboneCounter(bench.model, monkeypatch)
    records = bench.scan.split("train")
    first = record_features(bench, records)
    assert counter.images == len(records) == len(entries(private_cache_dir))
    again = record_features(bench, records)
    assert counter.images == len(records)  # nothing new went through the backbone
    assert torch.equal(again.features, first.features) and torch.equal(again.labels, first.labels)
    assert torch.equal(again.indices, first.indices)


def test_changing_one_image_recomputes_that_image_only(bench, monkeypatch):
    counter = BackboneCounter(bench.model, monkeypatch)
    records = bench.scan.split("train")
    first = record_features(bench, records)
    changed = records[3].path
    make_image(Path(changed), (250, 250, 250), size=64, seed=999)  # same name, new content
    counter.images = 0
    again = record_features(bench, records)
    assert counter.images == 1
    row = int((again.indices == 3).nonzero())
    assert not torch.allclose(again.features[row], first.features[row])
    others = again.indices != 3
    assert torch.equal(again.features[others], first.features[others])


def test_a_moved_image_keeps_its_features_and_takes_its_new_label(bench, tiny_dataset, monkeypatch):
    records = bench.scan.split("train")
    first = record_features(bench, records)
    counter = BackboneCounter(bench.model, monkeypatch)
    source = Path(records[0].path)
    moved = source.with_name("moved_" + source.name)
    os.rename(source, moved)
    relabelled = [dataclasses.replace(records[0], path=moved, label=2)] + list(records[1:])
    again = record_features(bench, relabelled)
    assert counter.images == 0
    assert torch.equal(again.features, first.features)
    assert int(again.labels[0]) == 2


def test_other_weights_or_preprocessing_never_share_features(tiny_dataset, private_cache_dir, monkeypatch):
    config = TrainConfig(data_dir=str(tiny_dataset), **FAST)
    pretrained = open_workbench(config)
    records = pretrained.scan.split("train")[:4]
    record_features(pretrained, records)
    for other in (open_workbench(TrainConfig(**{**config.to_dict(), "weights": "none"})),
                  open_workbench(TrainConfig(**{**config.to_dict(), "img_size": 96}))):
        counter = BackboneCounter(other.model, monkeypatch)
        record_features(other, records)
        assert counter.images == 4
    assert len({path.parent.parent for path in entries(private_cache_dir)}) == 3


def test_a_damaged_entry_is_recomputed_and_replaced(bench, private_cache_dir, monkeypatch):
    records = bench.scan.split("train")
    first = record_features(bench, records)
    store = _store_of(bench)
    damaged = [store._entry(feature_store.file_digest(r.path)) for r in records[:4]]
    torch.save(torch.zeros(7), damaged[0])  # a float vector, but not this model's (read first)
    damaged[1].write_bytes(damaged[1].read_bytes()[:40])  # a write cut short
    damaged[2].write_bytes(b"not a tensor")
    torch.save({"weights": torch.zeros(3)}, damaged[3])  # loadable, but not a tensor
    counter = BackboneCounter(bench.model, monkeypatch)
    again = record_features(bench, records)
    assert counter.images == 4
    assert torch.equal(again.features, first.features)
    counter.images = 0
    record_features(bench, records)
    assert counter.images == 0  # the replacements are good entries


@pytest.mark.parametrize("setting", ["blocked", "off"])
def test_an_unusable_or_disabled_cache_only_costs_time(bench, tmp_path, monkeypatch, private_cache_dir, setting):
    if setting == "blocked":
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        monkeypatch.setenv("TL_STUDIO_CACHE_DIR", str(blocker / "cache"))  # cannot be created under a file
    else:
        monkeypatch.setenv(feature_layout.LIMIT_ENV, "0")
    counter = BackboneCounter(bench.model, monkeypatch)
    records = bench.scan.split("train")[:6]
    for _ in range(2):
        assert len(record_features(bench, records)) == 6
    assert counter.images == 12
    assert not (private_cache_dir / "features").exists()  # turned off: nothing written at all


def test_the_folder_stays_within_its_bound_least_recently_used_first(bench, private_cache_dir, monkeypatch):
    records = bench.scan.split("train")
    record_features(bench, records[:4])
    store = _store_of(bench)
    paths = [store._entry(feature_store.file_digest(r.path)) for r in records[:7]]
    for age, path in enumerate(paths[:4]):
        os.utime(path, (1_000_000 + age, 1_000_000 + age))  # used long ago, records[0] first
    record_features(bench, records[:1])  # a hit: records[0] becomes the most recently used
    size = paths[0].stat().st_size
    monkeypatch.setenv(feature_layout.LIMIT_ENV, str(6.5 * size / 2**20))
    record_features(bench, records[4:7])  # three new entries make 7 > 6.5: the oldest one goes
    assert [path.exists() for path in paths] == [True, False, True, True, True, True, True]
    assert sum(path.stat().st_size for path in entries(private_cache_dir)) <= 6.5 * size


def test_leftovers_of_a_crashed_writer_are_ignored_and_cleaned_up(bench, private_cache_dir):
    records = bench.scan.split("train")[:2]
    record_features(bench, records)
    folder = entries(private_cache_dir)[0].parent
    leftover = folder / ("deadbeef" + feature_store.TMP_SUFFIX)
    leftover.write_bytes(b"half a tens")
    os.utime(leftover, (1_000_000, 1_000_000))
    feature_store.trim(private_cache_dir / "features", feature_store.limit_bytes())
    assert not leftover.exists() and len(entries(private_cache_dir)) == 2


def test_writers_racing_on_the_same_entries_never_show_a_reader_half_a_file(bench):
    """Two runs at once compute and store the same images: every read sees a whole entry or none."""
    records = bench.scan.split("train")
    first = record_features(bench, records)
    store = _store_of(bench)
    lookup = feature_store.Lookup(list(records), list(range(len(records))),
                                  [feature_store.file_digest(r.path) for r in records])
    failures = []

    def write():
        for _ in range(20):
            store.save(lookup, first)

    def read():
        for _ in range(20):
            hits = store.lookup(records).hits
            if len(hits) != len(records):
                failures.append(len(hits))

    threads = [threading.Thread(target=write), threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_second_run_reads_its_features_and_trains_the_same_head(tiny_dataset, tmp_path, monkeypatch):
    from tl_studio.core import features

    real, computed = features.extract_features, []

    def counting(*args, **kwargs):
        result = real(*args, **kwargs)
        computed[-1] += len(result)
        return result

    monkeypatch.setattr(features, "extract_features", counting)
    config = TrainConfig(data_dir=str(tiny_dataset), **FAST)
    accuracies = []
    for name in ("first", "second"):
        computed.append(0)
        recorder = Recorder()
        trainer = Trainer(config, tmp_path / name, [recorder], strict_callbacks=True)
        trainer.fit()
        if trainer.error is not None:
            raise trainer.error
        progress = recorder.of_type(events.FeatureProgress)
        assert progress[-1].done == progress[-1].total == 36  # a full hit still reports its progress
        accuracies.append([(e.val_acc, e.val_loss) for e in recorder.of_type(events.EpochEnd)])
    assert computed == [36, 0]
    assert accuracies[1] == accuracies[0]
