"""Loader processes hand their batches over in shared memory, and through their pipe when shared memory is
too small (core/dataset.py): a run on a machine with a small /dev/shm (a Docker container's 64 MB) used to
print tracebacks and wait forever for the batches that did not fit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from tests.helpers import make_image_folder
from tl_studio.core import dataset
from tl_studio.core.data import scan_dataset
from tl_studio.core.dataset import ImageDataset, make_loader
from tl_studio.core.preprocess import PreprocessSpec
from tl_studio.core.transforms import eval_transform

SHARED_MEMORY_FULL = "unable to allocate shared memory(shm) for file </torch_1_2_3>: No space left on device (28)"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    data = make_image_folder(tmp_path_factory.mktemp("handover") / "data", per_class=7, size=48)
    return ImageDataset(scan_dataset(data).records, eval_transform(PreprocessSpec(crop_size=32, resize_size=36)))


def _batches(images, workers: int) -> list:
    loader = make_loader(images, batch_size=4, shuffle=False, workers=workers, seed=0)
    batches = list(loader)
    del loader  # its persistent workers end here, not at the next collection
    return batches


def _same_batches(got: list, expected: list) -> None:
    assert len(got) == len(expected) == 6  # 21 images, batches of 4
    for batch, reference in zip(got, expected):
        assert torch.equal(batch.images, reference.images)
        assert torch.equal(batch.labels, reference.labels) and torch.equal(batch.indices, reference.indices)


def test_loader_processes_hand_batches_over_in_shared_memory(images):
    before = dataset.batches_through_pipe()
    batches = _batches(images, workers=2)
    _same_batches(batches, _batches(images, workers=0))
    assert all(batch.images.is_shared() and not batch.through_pipe for batch in batches)
    assert dataset.batches_through_pipe() == before


def test_a_batch_that_shared_memory_cannot_hold_travels_through_the_pipe(images, monkeypatch):
    expected = _batches(images, workers=0)

    def full(batch):  # what torch raises in the loader process when /dev/shm has no room left
        raise RuntimeError(SHARED_MEMORY_FULL)

    monkeypatch.setattr(torch.utils.data, "default_collate", full)  # the forked loader processes inherit it
    before = dataset.batches_through_pipe()
    batches = _batches(images, workers=2)
    _same_batches(batches, expected)
    assert all(batch.through_pipe and not batch.images.is_shared() for batch in batches)
    assert dataset.batches_through_pipe() == before + len(batches)


def test_a_fault_of_the_batch_itself_is_still_raised(images, monkeypatch):
    """Only the handing over falls back: images that cannot be stacked fail as before."""
    monkeypatch.setattr(torch.utils.data, "default_collate", lambda batch: torch.stack([batch[0], batch[0][:1]]))
    with pytest.raises(RuntimeError):
        dataset.collate_skipping_failures([(torch.zeros(3, 4, 4), 0, 0), (torch.zeros(3, 5, 5), 0, 1)])
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())  # as in a loader process
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        dataset.collate_skipping_failures([(torch.zeros(3, 4, 4), 0, 0), (torch.zeros(3, 5, 5), 0, 1)])


def _can_mount_a_small_dev_shm() -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_a_small_dev_shm(), reason="needs root and unshare to give a run a small /dev/shm")
def test_train_and_predict_with_a_4_mb_dev_shm_finish_and_say_how_to_give_it_room(tmp_path):
    """A real small /dev/shm, in a mount namespace of the commands' own: every batch (16 images of 224 px,
    9.6 MB) is larger than it."""
    data = make_image_folder(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    python = sys.executable
    script = (f"mount -t tmpfs -o size=4m tmpfs /dev/shm && "
              f"{python} -m tl_studio train {data} --out {run} --epochs 1 --batch-size 16 --workers 2 && "
              f"{python} -m tl_studio predict {run / 'model.pt2'} {data} --batch-size 16 --workers 1")
    # its own process group, so that a run that hangs (as it did) leaves no process behind
    process = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=180)  # about 20 s here
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    output = stdout + stderr
    assert process.returncode == 0, output
    assert "Traceback" not in output and "unable to allocate shared memory" not in output
    assert output.count(dataset.SHARED_MEMORY_ADVICE) == 2, output  # once by train, once by predict
    assert len([line for line in stdout.splitlines() if line.startswith(str(data))]) == 30
