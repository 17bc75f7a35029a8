"""Training in several processes through torchrun (core/strategy.py, cli/torchrun_launch.py): the shard
of each epoch, the launcher's command line, stop requests through the run folder, and real two-process
runs on the CPU (gloo): the same numbers as one process, one writer, a killed process that ends the
run within a minute, and --resume after it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from tl_studio.cli import torchrun_launch
from tl_studio.core.control import FolderRequests, RunControl
from tl_studio.core.run_folder import RunFolder, RunStatus
from tl_studio.core.strategy import ShardedBatches

FAST = ["--workers", "0", "--img-size", "64", "--batch-size", "8", "--device", "cpu"]
KILL_LIMIT_S = 60


# ---- the shard of an epoch ------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 7, 10, 36, 245])
@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_every_image_is_in_exactly_one_process_once_and_every_process_has_as_many_batches(count, world, batch_size):
    shards = [ShardedBatches(count, batch_size, rank, world, seed=5) for rank in range(world)]
    batches = [list(shard) for shard in shards]
    seen = [i for rank in batches for batch in rank for i in batch]
    assert sorted(seen) == list(range(count))
    assert len({len(rank) for rank in batches}) == 1 == len({len(s) for s in shards})
    assert all(len(rank) == len(shards[0]) for rank in batches)
    sizes = [len(batch) for rank in batches for batch in rank if batch]
    assert max(sizes) <= batch_size + 1 and max(sizes) - min(sizes) <= 1


def test_each_epoch_has_its_own_order_and_the_same_seed_and_epoch_give_the_same_one():
    first, again = ShardedBatches(100, 8, 0, 2, seed=1), ShardedBatches(100, 8, 0, 2, seed=1)
    epoch_one = list(first)
    assert list(again) == epoch_one
    first.set_epoch(2)
    assert list(first) != epoch_one


# ---- the launcher's command line ------------------------------------------------------------------
def test_the_workers_get_the_command_line_without_the_launchers_flags():
    argv = ["data", "--out", "run", "--nproc-per-node", "2", "--master-port=1234", "--epochs", "3",
            "--nnodes", "1"]
    assert torchrun_launch.worker_argv(argv) == ["data", "--out", "run", "--epochs", "3", "--distributed-worker"]


def _launch_args(**given):
    fields = dict(nproc_per_node=2, nnodes=None, node_rank=None, master_addr=None, master_port=None,
                  distributed_worker=False)
    return Namespace(**{**fields, **given})


def test_one_machine_uses_a_free_port_and_several_pass_their_rendezvous_through():
    one = torchrun_launch.torchrun_command(_launch_args(), ["d", "--distributed-worker"])
    assert one[1:3] == ["-m", "tl_studio.cli.torchrun_quiet"] and "--standalone" in one
    assert one[one.index("--nproc-per-node") + 1] == "2"
    assert one[-5:] == ["-m", "tl_studio", "train", "d", "--distributed-worker"]
    several = torchrun_launch.torchrun_command(
        _launch_args(nnodes=4, node_rank=3, master_addr="node0", master_port=4000), ["d"])
    assert "--standalone" not in several
    pairs = dict(zip(several[::1], several[1:]))
    assert (pairs["--nnodes"], pairs["--node-rank"], pairs["--master-addr"], pairs["--master-port"]) == (
        "4", "3", "node0", "4000")


@pytest.mark.parametrize("given, words", [
    (dict(nnodes=2), "--node-rank"),
    (dict(nnodes=2, node_rank=2, master_addr="a"), "between 0 and 1"),
    (dict(nproc_per_node=0), "1 or more"),
])
def test_launch_flags_a_user_gets_wrong_are_named(given, words):
    from tl_studio.core.errors import UserError

    with pytest.raises(UserError, match=words):
        torchrun_launch.check_arguments(_launch_args(**given))


def test_a_single_process_run_is_not_relaunched():
    assert not torchrun_launch.wants_several_processes(_launch_args(nproc_per_node=1))
    assert not torchrun_launch.wants_several_processes(_launch_args(distributed_worker=True))
    assert torchrun_launch.wants_several_processes(_launch_args(nproc_per_node=None, nnodes=2))


# ---- requests through the run folder --------------------------------------------------------------
def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_pause_continue_and_stop_written_to_the_folder_reach_the_runs_control(tmp_path):
    folder = RunFolder(tmp_path)
    folder.request("stop")  # left over from an earlier run: ignored
    time.sleep(0.01)
    control = RunControl()
    follower = FolderRequests(folder, control).start()
    try:
        time.sleep(3 * FolderRequests.POLL_SECONDS)
        assert not control.stop_requested
        folder.request("pause")
        assert _wait(lambda: control.paused)
        folder.request("continue")
        assert _wait(lambda: not control.paused)
        folder.request("stop")
        assert _wait(lambda: control.stop_requested)
    finally:
        follower.close()


def test_a_run_whose_processes_were_killed_is_recorded_as_failed_with_the_reason(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_status(RunStatus(state="running", planned_epochs=3))
    assert folder.mark_ended("A process was killed.")
    assert (folder.status().state, folder.status().reason) == ("failed", "A process was killed.")
    folder.write_status(RunStatus(state="done", reason="fine"))
    assert not folder.mark_ended("nothing")
    assert folder.status().state == "done"


# ---- real runs in two processes ---------------------------------------------------------------------
def _train(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tl_studio", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def _metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_processes_give_the_numbers_of_one_and_only_rank_0_writes(tiny_dataset, tmp_path):
    """A frozen backbone: each process extracts the features of half the images, all of them train the
    same head on all features, so the epochs are those of one process at the same batch size. Images that
    fail to load in either process are all named in the run's report, as one process names them."""
    broken = _add_undecodable_images(tiny_dataset / "red", 4)
    one = _train(str(tiny_dataset), "--out", str(tmp_path / "one"), "--epochs", "2", "--json", *FAST)
    two = _train(str(tiny_dataset), "--out", str(tmp_path / "two"), "--epochs", "2", "--json", *FAST,
                 "--nproc-per-node", "2")
    out_two, err_two = two.communicate(timeout=600)
    out_one, err_one = one.communicate(timeout=600)
    assert one.returncode == 0, err_one
    assert two.returncode == 0, err_two
    lines = [json.loads(line) for line in out_two.splitlines()]
    assert [line["event"] for line in lines] == ["epoch", "epoch", "done"]  # rank 0 only reports
    single, double = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(double) == 2
    for a, b in zip(single, double):
        assert float(a["val_acc"]) == pytest.approx(float(b["val_acc"]), abs=1e-6)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-3)
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-3)
    status = RunFolder(tmp_path / "two").status()
    assert status.state == "done" and (tmp_path / "two" / "model.pt2").is_file()
    skipped = [{e["path"] for e in RunFolder(tmp_path / run).events() if e["event"] == "ImageSkipped"}
               for run in ("one", "two")]
    assert skipped[0] == skipped[1] == {str(path) for path in broken}

    # Again with the persistent feature cache missing a third of the images (unevenly between the
    # processes: one may have nothing to compute while the other computes): the same numbers.
    stored = sorted((Path(os.environ["TL_STUDIO_CACHE_DIR"]) / "features").rglob("*.pt"))
    assert len(stored) == 36
    for path in stored[::3]:
        path.unlink()
    three = _train(str(tiny_dataset), "--out", str(tmp_path / "three"), "--epochs", "2", "--json", *FAST,
                   "--nproc-per-node", "2")
    _, err_three = three.communicate(timeout=600)
    assert three.returncode == 0, err_three
    for a, b in zip(single, _metrics(tmp_path / "three")):
        assert float(a["val_acc"]) == pytest.approx(float(b["val_acc"]), abs=1e-6)
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-3)
    assert len(sorted((Path(os.environ["TL_STUDIO_CACHE_DIR"]) / "features").rglob("*.pt"))) == 36


def _add_undecodable_images(folder: Path, count: int) -> list[Path]:
    """PNGs whose header and size are fine (the scan accepts them) but whose pixel data cannot be decoded:
    they fail while training, wherever they land."""
    from PIL import Image

    paths = []
    for i in range(count):
        path = folder / f"damaged_{i}.png"
        Image.effect_noise((64, 64), 60).convert("RGB").save(path)
        data = bytearray(path.read_bytes())
        start = data.index(b"IDAT") + 10
        data[start:start + 30] = bytes(byte ^ 0x55 for byte in data[start:start + 30])
        path.write_bytes(bytes(data))
        paths.append(path.resolve())
    return paths


def _rank_process(run: Path, rank: int) -> int | None:
    """The pid of the training process with RANK=rank (not one of its loader workers) of the run writing
    to ``run``: another test file's torchrun may be training beside this one."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"--distributed-worker" in cmdline and str(run).encode() in cmdline
                and f"RANK={rank}".encode() in environ):
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            try:
                if b"tl_studio.cli.torchrun_quiet" in Path(f"/proc/{parent}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
    return None


def _batches_of_epoch(run: Path, epoch: int) -> int:
    return sum(1 for e in RunFolder(run).events() if e["event"] == "BatchEnd" and e["epoch"] == epoch)


def _epochs_on_disk(run: Path) -> int:
    status = RunFolder(run).status()  # None until it is written
    return (status.epochs_done or 0) if status is not None else 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_a_killed_process_ends_the_run_within_a_minute_and_resume_finishes_it(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    args = [str(tiny_dataset), "--out", str(run), *FAST, "--batch-size", "4", "--model", "resnet18",
            "--weights", "none", "--freeze", "none", "--nproc-per-node", "2"]
    launcher = _train(*args, "--epochs", "3")
    deadline = time.monotonic() + 600
    # well into the second epoch, with the first one's files on disk (they are written in the background
    # while the next epoch trains, status.json last, after last.ckpt and metrics.csv: docs/training.md)
    while _batches_of_epoch(run, 2) < 2 or _epochs_on_disk(run) < 1:
        assert launcher.poll() is None, launcher.communicate()[1]
        assert time.monotonic() < deadline, "the run did not reach its second epoch"
        time.sleep(0.1)
    victim = _rank_process(run, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    _, err = launcher.communicate(timeout=KILL_LIMIT_S + 30)
    assert time.monotonic() - killed < KILL_LIMIT_S
    assert launcher.returncode == 2
    assert "ended unexpectedly" in err and "--resume" in err
    # one sentence, not torchrun's report ("failed (exitcode: -9)" and a ChildFailedError traceback) first
    assert not any(text in err for text in ("Traceback", "ChildFailedError", "exitcode")), err
    status = RunFolder(run).status()
    assert status.state == "failed" and status.epochs_done == 1
    assert _rank_process(run, 0) is None and _rank_process(run, 1) is None  # nothing left waiting

    resumed = _train(*args, "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    rows = _metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert RunFolder(run).status().state == "done"
    # every training image exactly once per epoch over the two processes: correct / seen has seen ==
    # the number of training images (a repeated image would change the denominator)
    num_train = next(e["num_train"] for e in RunFolder(run).events() if e["event"] == "FitStart")
    for row in rows:
        correct = float(row["train_acc"]) * num_train
        assert correct == pytest.approx(round(correct), abs=1e-3)


def test_several_processes_without_the_gpu_they_need_are_refused_in_one_sentence(tiny_dataset, tmp_path):
    """--device cuda without a GPU: each process's refusal came once per process, then some 40 lines of
    torchrun's report (log lines, a ChildFailedError traceback), then the launcher's sentence."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA GPU")
    launcher = _train(str(tiny_dataset), "--out", str(tmp_path / "run"), *FAST, "--nproc-per-node", "2",
                      "--device", "cuda", "--epochs", "1")
    _, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 2
    assert err.splitlines() == ["tl-studio train: No CUDA GPU is available here; use --device cpu for CPU "
                                "processes."], err  # said before any process started, as one process says it
    assert not (tmp_path / "run").exists()
