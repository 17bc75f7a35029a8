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
])
def test_a_mistake_is_refused_before_a_script_is_written_not_when_the_job_runs(flags, said, tiny_dataset, tmp_path,
                                                                               capsys):
    script = tmp_path / "job.sh"
    try:  # argparse's refusals end the process (2); the checks after it return 2
        code = main(["cluster-script", str(tiny_dataset), "--out", str(tmp_path / "run"), "--script", str(script),
                     *flags])
    except SystemExit as ended:
        code = ended.code
    assert code == 2
    captured = capsys.readouterr()
    assert said in captured.err and "Traceback" not in captured.err and not script.exists()
    assert "#SBATCH" not in captured.out
