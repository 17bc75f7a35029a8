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
from tl_studio.core import read_ahead
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
    make_image(changed, (0, 255, 0), size=96, seed=999)  # new content (size and modification time)
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
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
    from tl_studio.{module} import main
    code = main(sys.argv[1:])
    print(json.dumps({{"code": code, "read_ahead": started}}))
""")


def _train(tmp_path: Path, data: Path, name: str, module: str) -> tuple[dict, list[dict]]:
    """``tl-studio train`` in a process of its own, through ``tl_studio.{module}.main``."""
    command = [sys.executable, "-c", SCRIPT.format(module=module), "train", str(data), "--out",
               str(tmp_path / name), "--epochs", "2", "--batch-size", "8", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**os.environ, "TL_STUDIO_CACHE_DIR": str(tmp_path / f"{name}.cache")})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines[-1], [line for line in lines if line.get("event") == "epoch"]


def test_tl_studio_train_reads_ahead_and_trains_exactly_as_without(folder, tmp_path):
    ahead, epochs_ahead = _train(tmp_path, folder, "ahead", "entry")  # the console command: owns its process
    plain, epochs_plain = _train(tmp_path, folder, "plain", "cli.main")  # inside another program: no thread
    assert ahead == {"code": 0, "read_ahead": [15]} and plain == {"code": 0, "read_ahead": []}
    keys = ("train_loss", "val_loss", "val_acc")
    assert len(epochs_ahead) == 2
    assert [[e[k] for k in keys] for e in epochs_ahead] == [[e[k] for k in keys] for e in epochs_plain]


def test_a_loader_in_this_process_that_catches_up_ends_the_thread(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "data", classes=("red", "blue"), per_class=60, size=96)
    _slow_decoding(monkeypatch)
    ahead = read_ahead.ReadAhead(_config(root), 256)
    read_ahead._active = ahead.start()
    records = ahead.scanned(60).split("train")
    assert read_ahead.take(str(records[-1].path), 256) is None  # not decoded yet: the thread is behind
    assert not ahead.running and sys.getswitchinterval() != read_ahead.SWITCH_INTERVAL
