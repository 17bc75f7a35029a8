"""`tl-studio runs`, `runs diff`, `runs best`: the table, JSON, exit statuses, and no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.run_folders import write_run
from tl_studio.cli.main import main
from tl_studio.core.run_folder import RunFolder


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "lite0-frozen", final_acc=0.90, started=1_000_000)
    write_run(root / "resnet-full", model="resnet18", freeze="none", lr=3e-4, final_acc=0.96, started=2_000_000)
    write_run(root / "crashed", state="failed", reason="The dataset folder disappeared; check the disk.",
              epochs=5, done=1, started=3_000_000)
    return root


def test_json_lists_every_run_with_the_documented_fields(runs_root, capsys):
    assert main(["runs", str(runs_root), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == ["crashed", "resnet-full", "lite0-frozen"]  # newest first
    failed = records[0]
    assert failed["status"] == "failed" and failed["reason"] == "The dataset folder disappeared; check the disk."
    resnet = records[1]
    assert (resnet["model"], resnet["freeze"], resnet["lr"], resnet["epochs_done"]) == ("resnet18", "none", 3e-4, 5)
    assert resnet["best_epoch"] == 5 and resnet["best_val_acc"] == pytest.approx(0.96, abs=0.01)
    assert resnet["train_seconds"] == pytest.approx(60.0) and resnet["created"] == 2_000_000
    assert resnet["path"] == str(runs_root / "resnet-full")


def test_table_shows_status_and_the_failure_reason(runs_root, capsys):
    assert main(["runs", str(runs_root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("NAME") and "VAL ACC" in lines[0]
    assert any(line.startswith("crashed") and "failed" in line for line in lines)
    assert "The dataset folder disappeared; check the disk." in out


def test_a_running_run_shows_as_running(runs_root, capsys):
    folder = write_run(runs_root / "live", state="running", epochs=8, done=3, started=4_000_000)
    lock = RunFolder(folder).lock()
    try:
        assert main(["runs", str(runs_root), "--json"]) == 0
    finally:
        lock.release()
    live = json.loads(capsys.readouterr().out)[0]
    assert (live["name"], live["status"], live["epochs_done"], live["planned_epochs"]) == ("live", "running", 3, 8)


def test_best_prints_the_best_runs_path(runs_root, capsys):
    assert main(["runs", "best", str(runs_root)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(runs_root / "resnet-full")
    assert "resnet-full" in captured.err


def test_best_with_no_finished_run_is_one_sentence(tmp_path, capsys):
    assert main(["runs", "best", str(tmp_path)]) == 2
    assert "has finished an epoch" in capsys.readouterr().err


def test_diff_shows_only_what_differs(runs_root, capsys):
    assert main(["runs", "diff", str(runs_root / "lite0-frozen"), str(runs_root / "resnet-full"), "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["settings"] == {"model": ["efficientnet_lite0", "resnet18"], "freeze": ["all", "none"],
                                "lr": [None, 3e-4]}
    assert diff["trained_lr"] == [1e-3, 3e-4]  # a default, as the rate it stands for
    assert "best_val_acc" in diff["results"] and "status" not in diff["results"]
    assert main(["runs", "diff", str(runs_root / "lite0-frozen"), str(runs_root / "resnet-full")]) == 0
    text = capsys.readouterr().out
    assert "freeze" in text and "resnet18" in text and "data_dir" not in text
    assert re.search(r"0\.001 \(default\) +\|  0\.0003", text)  # the rate each run used
    # the second run's column lines up under its name
    bars = {line.index("|") for line in text.splitlines() if "|" in line}
    assert len(bars) == 1, text


def test_diff_of_a_folder_that_is_no_run_says_so(runs_root, tmp_path, capsys):
    assert main(["runs", "diff", str(runs_root / "lite0-frozen"), str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_runs_never_imports_torch(runs_root):
    code = ("import sys; from tl_studio.cli.main import main; "
            f"assert main(['runs', {str(runs_root)!r}, '--json']) == 0; "
            f"assert main(['runs', 'best', {str(runs_root)!r}]) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_without_a_root_the_apps_runs_folder_is_read(runs_root, monkeypatch, capsys):
    monkeypatch.setenv("TL_STUDIO_RUNS_DIR", str(runs_root))
    assert main(["runs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["runs", "best"]) == 0
    assert capsys.readouterr().out.strip() == str(runs_root / "resnet-full")


def test_best_says_what_writes_the_model_file_of_a_run_stopped_before_it(runs_root, capsys):
    (runs_root / "resnet-full" / "model.pt2").unlink()
    assert main(["runs", "best", str(runs_root)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(runs_root / "resnet-full")
    assert err.strip().endswith(f"It has no model file yet: tl-studio export {runs_root / 'resnet-full'} writes "
                                "it from its best epoch.")


def test_the_table_shortens_long_run_names_in_the_middle_so_their_times_still_differ(tmp_path, capsys):
    for time_of_day in ("160310", "160345"):
        write_run(tmp_path / f"hymenoptera-efficientnet_lite0-20261203-{time_of_day}")
    assert main(["runs", str(tmp_path)]) == 0
    names = [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(names) == 2 and all(len(name) == 30 and "…" in name for name in names)
    assert sorted(name[-6:] for name in names) == ["160310", "160345"]


def test_a_folder_that_is_not_there_is_said_not_listed_as_an_empty_history(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "typo")]) == 2  # was "No runs under ..." and exit 0
    assert "typo is not a folder; give the folder that holds your runs" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0 and "No runs under" in capsys.readouterr().err


def test_best_and_diff_say_a_folder_that_is_not_there_as_runs_does(runs_root, tmp_path, capsys):
    typo = str(tmp_path / "typo")
    assert main(["runs", "best", typo]) == 2  # was "No run under ... has finished an epoch yet"
    assert "typo is not a folder; give the folder that holds your runs" in capsys.readouterr().err
    assert main(["runs", "diff", str(runs_root / "lite0-frozen"), typo]) == 2  # was "is not a run folder"
    err = capsys.readouterr().err
    assert "typo is not a folder; give two run folders" in err and "Traceback" not in err


@pytest.mark.parametrize("words", [["runs", "--help"], ["runs", "diff", "--help"], ["runs", "best", "--help"]])
def test_the_help_of_each_form_says_what_each_form_does(words, capsys):
    with pytest.raises(SystemExit) as ended:
        main(words)
    assert ended.value.code == 0
    out = capsys.readouterr().out
    assert "tl-studio runs diff RUN_A RUN_B       the settings and results that differ between two runs" in out
    assert "tl-studio runs best [ROOT...]         the best run's path (why, on stderr)" in out
