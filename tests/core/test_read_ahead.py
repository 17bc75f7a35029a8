"""Images decoded while the process imports torch (core/read_ahead.py): the loaders take exactly what they
would have decoded, never a stale or differently sized one, and the thread is gone before any fork."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import make_image, make_image_folder
from tl_studio.core import dataset as dataset_module
from tl_studio.core import feature_layout, read_ahead
from tl_studio.core.config import TrainConfig
from tl_studio.core.data import scan_dataset
from tl_studio.core.dataset import ImageDataset, make_loader
from tl_studio.core.preprocess import PreprocessSpec
from tl_studio.core.transforms import eval_transform

ROOT = Path(__file__).resolve().parents[2]
SPEC = PreprocessSpec(crop_size=112, resize_size=128)


@pytest.fixture
def folder(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=6, size=96)
    # larger than twice the side the preprocessing needs: decoded reduced (JPEG draft), as in training
    for i in range(3):
        make_image(root / "red" / f"large_{i}.jpg", (200, 30, 30), size=600, seed=50 + i)
    return root


@pytest.fixture(autouse=True)
def no_read_ahead_left():
    yield
    read_ahead.end()


def _config(root: Path, **settings) -> TrainConfig:
    return TrainConfig(data_dir=str(root), model="efficientnet_lite0", **settings)


def _records(root: Path):
    scan = scan_dataset(root, val_fraction=0.2, seed=0)
    return [*scan.split("train"), *scan.split("val")]


def _items(records, **loader_options):
    dataset = ImageDataset(records, eval_transform(SPEC))
    loader = make_loader(dataset, batch_size=4, shuffle=False, seed=0, **loader_options)
    return list(loader)


def _decoded_ahead(root: Path) -> read_ahead.ReadAhead:
    ahead = read_ahead.ReadAhead(_config(root), SPEC.resize_size)
    read_ahead._active = ahead.start()
    ahead.wait(60)
    return ahead


def _change(path: Path) -> None:
    """New content under the same name: another size and a later modification time."""
    make_image(path, (0, 255, 0), size=96, seed=999)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))


def test_the_loader_takes_the_images_decoded_ahead_and_they_are_its_own(folder):
    records = _records(folder)
    expected = _items(records, workers=0)
    ahead = _decoded_ahead(folder)
    assert not ahead.running and ahead.scan is not None
    assert len(ahead.decoded) == len(records)  # the run's records, training split first
    got = _items(records, workers=0)
    assert not ahead.decoded  # every one handed out, once
    assert all(torch.equal(a.images, b.images) and a.indices.tolist() == b.indices.tolist()
               for a, b in zip(expected, got))


def test_a_file_changed_after_it_was_decoded_is_decoded_again(folder):
    records = _records(folder)
    _decoded_ahead(folder)
    changed = records[0].path
    _change(changed)
    fresh = ImageDataset(records[:1], eval_transform(SPEC))
    got = fresh[0][0]
    read_ahead.end()
    assert torch.equal(got, ImageDataset(records[:1], eval_transform(SPEC))[0][0])


def test_an_image_decoded_at_another_side_is_not_taken(folder):
    records = _records(folder)
    ahead = _decoded_ahead(folder)
    path = str(records[0].path)
    assert read_ahead.take(path, SPEC.resize_size + 1) is None
    assert path in ahead.decoded
    assert read_ahead.take(path, SPEC.resize_size) is not None
    assert read_ahead.take(path, SPEC.resize_size) is None  # handed out once


def _store_features_of(records, model: str, code: int = feature_layout.CODE_VERSION) -> Path:
    """A key folder of the feature store laid out as feature_store.py writes one, with an entry for each
    of ``records`` (the read-ahead only looks whether an entry is there; the store reads and checks it)."""
    folder = feature_layout.store_root() / f"key-{model}-{code}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / feature_layout.KEY_FILE).write_text(json.dumps({"model": model, "code": code}), encoding="utf-8")
    for record in records:
        entry = feature_layout.entry_path(folder, feature_layout.file_digest(record.path))
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(b"")
    return folder


def test_images_whose_features_are_stored_are_not_decoded_and_their_digests_are_kept(folder):
    records = _records(folder)
    stored, rest = records[::2], records[1::2]
    _store_features_of(stored, "efficientnet_lite0")
    _store_features_of(rest, "resnet18")  # another model's features: its pixels are still needed
    _store_features_of(rest, "efficientnet_lite0", code=feature_layout.CODE_VERSION - 1)  # older code's
    ahead = _decoded_ahead(folder)
    assert sorted(ahead.decoded) == sorted(str(r.path) for r in rest)
    assert all(read_ahead.known_digest(str(r.path)) == feature_layout.file_digest(r.path) for r in records)
    changed = records[0].path
    _change(changed)
    assert read_ahead.known_digest(str(changed)) is None  # changed since it was read: read again
    read_ahead.end()
    assert read_ahead.known_digest(str(records[1].path)) is None


def test_the_store_lookup_takes_the_digests_read_ahead(folder, monkeypatch):
    from tl_studio.core import feature_store

    records = _records(folder)
    _decoded_ahead(folder)
    hashed = []
    real_digest = feature_store.file_digest
    monkeypatch.setattr(feature_store, "file_digest", lambda path: hashed.append(path) or real_digest(path))
    store = feature_store.FeatureStore(feature_layout.store_root(), {"model": "efficientnet_lite0"}, 1 << 30)
    changed = records[3].path
    _change(changed)
    lookup = store.lookup(records)
    assert hashed == [str(changed)]  # only the file changed since the read-ahead read it
    assert lookup.digests == [real_digest(r.path) for r in records]


def test_a_store_lookup_that_catches_up_with_the_thread_reads_the_rest_itself(tmp_path, monkeypatch):
    from tl_studio.core import feature_store

    root = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=30, size=96)
    digest = read_ahead.file_digest

    def slow(path):
        time.sleep(0.02)  # 60 files: the thread is surely still reading digests when the lookup starts
        return digest(path)

    monkeypatch.setattr(read_ahead, "file_digest", slow)
    ahead = read_ahead.ReadAhead(_config(root), 256)
    read_ahead._active = ahead.start()
    scan = ahead.scanned(60)
    records = [*scan.split("train"), *scan.split("val")]
    store = feature_store.FeatureStore(feature_layout.store_root(), {"model": "efficientnet_lite0"}, 1 << 30)
    lookup = store.lookup(records)
    assert not ahead.running and not ahead.decoded and len(ahead.digests) < len(records)
    assert lookup.digests == [digest(r.path) for r in records]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_forked_loader_workers_use_the_images_decoded_ahead(folder, monkeypatch):
    records = _records(folder)
    expected = _items(records, workers=0)
    _decoded_ahead(folder)

    def no_decoding(path, **options):
        raise AssertionError(f"decoded {path} again")

    # the workers inherit this: an image they had to decode themselves would be a LoadFailure
    monkeypatch.setattr(dataset_module, "load_rgb", no_decoding)
    got = _items(records, workers=2, mp_context=multiprocessing.get_context("fork"))
    assert all(torch.equal(a.images, b.images) for a, b in zip(expected, got))
    assert sum(len(batch) for batch in got) == len(records)


def _slow_decoding(monkeypatch):
    """Each image takes 20 ms more, so that the thread is surely still at work a moment later."""
    decode = read_ahead.load_rgb

    def slow(path, **options):
        time.sleep(0.02)
        return decode(path, **options)

    monkeypatch.setattr(read_ahead, "load_rgb", slow)


def test_the_thread_stops_before_a_fork_and_the_switch_interval_comes_back(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=60, size=96)
    _slow_decoding(monkeypatch)
    interval = sys.getswitchinterval()
    ahead = read_ahead.ReadAhead(_config(root), 256)
    read_ahead._active = ahead.start()
    assert sys.getswitchinterval() == read_ahead.SWITCH_INTERVAL
    ahead.scanned(60)
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    assert not ahead.running
    assert len(ahead.decoded) < 120  # stopped part way, keeping what it decoded
    assert sys.getswitchinterval() == interval
    read_ahead.end()
    assert not ahead.decoded and read_ahead._active is None


def test_only_a_run_that_starts_on_a_frozen_backbones_features_reads_ahead(folder, monkeypatch):
    for settings in ({"freeze": "none"}, {"feature_cache": False}):
        assert read_ahead.begin(_config(folder, **settings)) is None
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    assert read_ahead.begin(_config(folder)) is None  # its workers would get the images pickled
    assert read_ahead.begin(_config(folder, workers=0)) is not None  # in-process loading takes them


def test_a_folder_the_scan_refuses_leaves_the_scan_to_the_run(tmp_path):
    ahead = read_ahead.ReadAhead(_config(tmp_path / "missing"), 256).start()
    assert ahead.scanned(60) is None
    ahead.wait(60)
    assert not ahead.decoded


SCRIPT = textwrap.dedent("""
    import json, sys
    from tl_studio.core import read_ahead
    started = []
    begin = read_ahead.begin
    def recording(config):
        ahead = begin(config)
        started.append(ahead is not None and len(ahead.scanned(60).records))
        return ahead
    read_ahead.begin = recording
    decode = read_ahead.ReadAhead._decode
    decoding = []
    def counting(self, records):
        decoding.append(len(records))
        return decode(self, records)
    read_ahead.ReadAhead._decode = counting
    from tl_studio.{module} import main
    code = main(sys.argv[1:])
    print(json.dumps({{"code": code, "read_ahead": started, "decoding": decoding}}))
""")


def _train(tmp_path: Path, data: Path, name: str, module: str, cache: str | None = None) -> tuple[dict, list[dict]]:
    """``tl-studio train`` in a process of its own, through ``tl_studio.{module}.main``, with the cache
    folder ``cache`` (by default one of its own)."""
    command = [sys.executable, "-c", SCRIPT.format(module=module), "train", str(data), "--out",
               str(tmp_path / name), "--epochs", "2", "--batch-size", "8", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**os.environ, "TL_STUDIO_CACHE_DIR": str(tmp_path / f"{cache or name}.cache")})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines[-1], [line for line in lines if line.get("event") == "epoch"]


def test_tl_studio_train_reads_ahead_and_trains_exactly_as_without(folder, tmp_path):
    ahead, epochs_ahead = _train(tmp_path, folder, "ahead", "entry")  # the console command: owns its process
    plain, epochs_plain = _train(tmp_path, folder, "plain", "cli.main")  # inside another program: no thread
    assert ahead == {"code": 0, "read_ahead": [15], "decoding": [15]}
    assert plain == {"code": 0, "read_ahead": [], "decoding": []}
    assert len(epochs_ahead) == 2
    assert _figures(epochs_ahead) == _figures(epochs_plain)


def _figures(epochs: list[dict]) -> list[list[float]]:
    return [[e[k] for k in ("train_loss", "val_loss", "val_acc")] for e in epochs]


def test_a_second_run_on_the_same_images_decodes_none_of_them_ahead(folder, tmp_path):
    first, epochs_first = _train(tmp_path, folder, "first", "entry", cache="shared")
    second, epochs_second = _train(tmp_path, folder, "second", "entry", cache="shared")
    assert first["decoding"] == [15] and second["decoding"] == [0]  # every feature read back from the store
    assert second["code"] == 0 and _figures(epochs_second) == _figures(epochs_first)


def test_a_loader_in_this_process_that_catches_up_ends_the_thread(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=60, size=96)
    _slow_decoding(monkeypatch)
    ahead = read_ahead.ReadAhead(_config(root), 256)
    read_ahead._active = ahead.start()
    records = ahead.scanned(60).split("train")
    assert read_ahead.take(str(records[-1].path), 256) is None  # not decoded yet: the thread is behind
    assert not ahead.running and sys.getswitchinterval() != read_ahead.SWITCH_INTERVAL
