"""`tl-studio cluster-script`: the SLURM batch script's text (resources, the flags passed to train, the
requeue and resume), and the script itself run by bash with stand-ins for srun and scontrol: it trains
in two CPU processes through torchrun, and a second attempt (a requeue) resumes the run."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_folders import write_run
from tl_studio.cli.cmd_cluster_script import slurm_seconds
from tl_studio.cli.main import main
from tl_studio.core.run_folder import RunFolder


def script_text(capsys, *args: str) -> str:
    assert main(["cluster-script", *args]) == 0
    return capsys.readouterr().out


def test_the_script_asks_for_the_machines_and_gpus_and_passes_the_train_flags(tiny_dataset, tmp_path, capsys):
    text = script_text(capsys, str(tiny_dataset), "--out", str(tmp_path / "run"), "--nodes", "3",
                       "--gpus-per-node", "8", "--epochs", "12", "--model", "resnet50", "--freeze", "none",
                       "--no-amp", "--partition", "a100", "--time", "4:00:00")
    assert text.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --nodes=3", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --cpus-per-task=32", "#SBATCH --partition=a100", "#SBATCH --time=4:00:00",
                 "#SBATCH --requeue", "#SBATCH --signal=B:USR1@120"):
        assert line in text.splitlines()
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    inner = shlex.split(srun)[4]  # srun --kill-on-bad-exit=1 bash -c '<the command on each machine>' &
    words = shlex.split(inner)
    assert words[:2] == ["exec", "$TL_STUDIO"]
    assert words[2:6] == ["train", str(tiny_dataset.resolve()), "--out", str((tmp_path / "run").resolve())]
    flags = " ".join(words[6:])
    for given in ("--model resnet50", "--freeze none", "--epochs 12", "--no-amp", "--nproc-per-node 8",
                  "--nnodes $SLURM_NNODES", "--node-rank $SLURM_NODEID", "--master-addr $MASTER_ADDR"):
        assert given in flags
    assert "--batch-size" not in flags  # a flag left at its default is not written out
    assert "scontrol requeue" in text and "trap requeue USR1" in text
    assert 'RESUME_FLAG=--resume' in text and '$RESUME_FLAG' in inner


def test_the_script_needs_the_run_folder_named_though_train_alone_does_not(tiny_dataset, capsys):
    with pytest.raises(SystemExit) as ended:
        main(["cluster-script", str(tiny_dataset), "--nodes", "2"])
    assert ended.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_the_script_is_written_to_a_file_but_never_over_one(tiny_dataset, tmp_path, capsys):
    target = tmp_path / "job.sbatch"
    args = ["cluster-script", str(tiny_dataset), "--out", str(tmp_path / "run"), "--script", str(target)]
    assert main(args) == 0
    assert target.read_text().startswith("#!/bin/bash") and os.access(target, os.X_OK)
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def _stand_ins(folder: Path) -> Path:
    """srun runs its command once, as node 0 of 1; scontrol names this machine."""
    folder.mkdir()
    srun = folder / "srun"
    srun.write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
                    'echo "resume=$RESUME_FLAG" >> "$SRUN_LOG"\nexport SLURM_NODEID=0\nexec "$@"\n')
    scontrol = folder / "scontrol"
    scontrol.write_text('#!/bin/bash\necho 127.0.0.1\n')
    for tool in (srun, scontrol):
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_the_script_trains_through_torchrun_and_a_requeued_attempt_resumes(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    script = tmp_path / "job.sbatch"
    assert main(["cluster-script", str(tiny_dataset), "--out", str(run), "--script", str(script),
                 "--nodes", "1", "--gpus-per-node", "2", "--device", "cpu", "--epochs", "1", "--workers", "0",
                 "--img-size", "64", "--batch-size", "8"]) == 0
    tools = _stand_ins(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_NNODES": "1",
           "SLURM_JOB_NODELIST": "localhost", "SRUN_LOG": str(tmp_path / "srun.log"), "OMP_NUM_THREADS": "1"}
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert RunFolder(run).status().state == "done" and len(RunFolder(run).metrics()) == 1
    assert (tmp_path / "srun.log").read_text().splitlines() == ["resume="]

    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming the run" in again.stdout
    assert (tmp_path / "srun.log").read_text().splitlines()[-1] == "resume=--resume"
    assert RunFolder(run).status().state == "done"


@pytest.mark.parametrize("limit", ["90", "30:00", "24:00:00", "2-00:00:00", "1-12", "3-6:30", "UNLIMITED"])
def test_every_slurm_time_form_is_taken(limit, tiny_dataset, tmp_path, capsys):
    text = script_text(capsys, str(tiny_dataset), "--out", str(tmp_path / "run"), "--time", limit)
    assert f"#SBATCH --time={limit}\n" in text


@pytest.mark.parametrize("flags, said", [
    (["--time", "banana"], "'banana' is not a SLURM time limit"),
    (["--time", "1:2:3:4"], "is not a SLURM time limit"),
    (["--freeze", "banana"], "Freeze depth 'banana'"),
    (["--weight-decay", "-1"], "weight decay"),
    (["--cpus-per-gpu", "0"], "--cpus-per-gpu must be 1 or more (it is 0)"),
    (["--cpus-per-gpu", "-3"], "--cpus-per-gpu must be 1 or more (it is -3)"),
    (["--nodes", "0"], "--nodes must be 1 or more"),
    (["--gpus-per-node", "0"], "--gpus-per-node must be 1 or more"),
    (["--model", "nosuchmodel"], "Unknown model 'nosuchmodel'"),
    (["--model", "resnet"], "did you mean resnet50"),
    (["--freeze", "7"], "Freeze depth 7 is out of range: this model has 5 stages"),  # train knew at model build
    (["--freeze", "5"], "--freeze 5 freezes every stage of efficientnet_lite0, which is --freeze all"),  # as train
    (["--freeze", "4", "--model", "resnet18", "--script", "{tmp}/no such folder/job.sh"],
     "(No such file or directory); choose a --script file in a folder that exists"),
])
def test_a_mistake_is_refused_before_a_script_is_written_not_when_the_job_runs(flags, said, tiny_dataset, tmp_path,
                                                                               capsys):
    script = tmp_path / "job.sh"
    flags = [flag.replace("{tmp}", str(tmp_path)) for flag in flags]
    try:  # argparse's refusals end the process (2); the checks after it return 2
        code = main(["cluster-script", str(tiny_dataset), "--out", str(tmp_path / "run"), "--script", str(script),
                     *flags])
    except SystemExit as ended:
        code = ended.code
    assert code == 2
    captured = capsys.readouterr()
    assert said in captured.err and "Traceback" not in captured.err and not script.exists()
    assert "#SBATCH" not in captured.out


@pytest.mark.parametrize("limit, seconds", [
    ("90", 90 * 60), ("1:00", 60), ("1:30", 120), ("0:05", 60), ("24:00:00", 86400), ("25:61:00", 26 * 3600 + 60),
    ("1-12", 36 * 3600), ("3-6:30", 3 * 86400 + 6 * 3600 + 1800), ("2-00:00:01", 2 * 86400 + 60),
    ("0", None), ("unlimited", None), ("INFINITE", None),
])
def test_the_time_limit_is_counted_as_slurm_counts_it(limit, seconds):
    # two fields are minutes:seconds, seconds round up to a whole minute, zero is no limit
    assert slurm_seconds(limit) == seconds


@pytest.mark.parametrize("limit, said", [
    ("1:00", "--time 1:00 is 1 min to SLURM (minutes:seconds)"),
    ("9:00", "give 10 min or more, e.g. --time 9:00:00 (9 h, hours:minutes:seconds)"),
    ("5", "--time 5 is 5 min to SLURM (minutes)"),
    ("0-0:09", "is 9 min to SLURM (days-hours:minutes)"),
])
def test_a_time_limit_that_leaves_no_time_to_train_is_refused_saying_how_slurm_reads_it(limit, said, tiny_dataset,
                                                                                        tmp_path, capsys):
    script = tmp_path / "job.sh"
    code = main(["cluster-script", str(tiny_dataset), "--out", str(tmp_path / "run"), "--script", str(script),
                 "--time", limit])
    err = capsys.readouterr().err
    assert code == 2 and said in err and "requeued" in err and "Traceback" not in err and not script.exists()


def test_a_long_limit_slurm_adds_up_is_taken_and_said_in_plain_words(tiny_dataset, tmp_path, capsys):
    text = script_text(capsys, str(tiny_dataset), "--out", str(tmp_path / "run"), "--time", "25:61:00")
    assert "#SBATCH --time=25:61:00\n" in text and "time limit 26 h 1 min per attempt" in text
    assert "time limit 10 min per attempt" in script_text(capsys, str(tiny_dataset), "--out", str(tmp_path / "run"),
                                                          "--time", "9:59")  # rounded up: the shortest taken


def test_a_run_folder_the_jobs_resume_would_refuse_is_refused_now(tiny_dataset, tmp_path, capsys):
    run = write_run(tmp_path / "run", model="resnet18", epochs=5, data_dir=str(tiny_dataset.resolve()))
    common = ["cluster-script", str(tiny_dataset), "--out", str(run)]
    assert main([*common, "--model", "efficientnet_lite0", "--epochs", "8"]) == 2  # train: "another model"
    err = capsys.readouterr().err
    assert f"{run} was trained with --model resnet18 (not efficientnet_lite0)" in err and "another folder (--out)" in err
    assert main(common) == 2  # all 5 epochs done: every attempt would only write the model file again
    assert "has already trained its 5 epochs" in capsys.readouterr().err
    assert main([*common, "--epochs", "8"]) == 0  # the same run, further: the script resumes it
    assert "--epochs 8" in capsys.readouterr().out

    other_files = tmp_path / "notes"
    other_files.mkdir()
    (other_files / "notes.txt").write_text("mine")
    assert main(["cluster-script", str(tiny_dataset), "--out", str(other_files)]) == 2
    assert "is not empty (it holds notes.txt)" in capsys.readouterr().err
