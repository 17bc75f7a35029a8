"""Closing the window is safe at any moment: the app runs in its own process (tests/gui/close_driver.py)
and closes itself at 10 moments from 0 to 10 s after start (while the model catalogue, the stage summary,
the scan and the torch import still run in background tasks), and during a training run, an evaluation
and an export. Each time the process exits 0; before the fix it aborted ("QThread: Destroyed while thread
'model-stages' is still running", exit 134). The processes run side by side to keep the test short."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation_helpers import tiny_model

ROOT = Path(__file__).resolve().parents[2]
MOMENTS_S = [0, 0.3, 0.8, 1.5, 2.5, 3.5, 5, 6.5, 8, 10]
TIMEOUT_S = 480  # a busy shared machine: the window alone took 45 s to appear once


def launch(tmp_path: Path, name: str, *args) -> subprocess.Popen:
    home = tmp_path / name
    home.mkdir()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(home / "config"),
               TL_STUDIO_RUNS_DIR=str(home / "runs"), HOME=str(home), PYTHONFAULTHANDLER="1")
    return subprocess.Popen([sys.executable, "-m", "tests.gui.close_driver", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the app did not exit within {TIMEOUT_S} s:\n{output[-3000:]}")
    assert process.returncode == 0, f"exit {process.returncode}:\n{output[-3000:]}"
    assert "closing at" in output and "closed in" in output, output[-3000:]
    assert "QThread: Destroyed" not in output, output[-3000:]
    return output


def test_closing_at_any_moment_exits_cleanly(tmp_path, tmp_path_factory, tiny_dataset):
    model = tiny_model(tmp_path_factory)
    export_run = tmp_path / "export-run"
    shutil.copytree(model.run_dir, export_run)
    processes = {f"idle {t} s": launch(tmp_path, f"idle-{t}", tiny_dataset, "idle", t) for t in MOMENTS_S}
    processes["training"] = launch(tmp_path, "training", tiny_dataset, "train", 0.5)
    processes["evaluation"] = launch(tmp_path, "evaluation", model.data_dir, "evaluate", 0.5, model.run_dir)
    processes["export"] = launch(tmp_path, "export", model.data_dir, "export", 0.5, export_run)
    outputs = {name: finish(process) for name, process in processes.items()}
    assert len(outputs) == 13
    for name, output in outputs.items():  # the figures, for a reader of `pytest -s`
        print(name, *[line for line in output.splitlines() if line.startswith(("closing at", "closed in"))])
    # the run stopped by quitting keeps its last finished epoch, so it can be resumed
    run_dirs = list((tmp_path / "training" / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "last.ckpt").is_file(), outputs["training"][-2000:]
