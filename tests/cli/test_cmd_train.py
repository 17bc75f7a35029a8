"""`tl-studio train / export / predict` as a user runs them: JSON lines, Ctrl-C, a killed run resumed,
exports against the model-file contract, predictions that go on past a broken file."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tl_studio.cli.main import main

FAST = ["--epochs", "2", "--batch-size", "8", "--workers", "0", "--img-size", "64"]


def tl_studio(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tl_studio", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One real run shared by the export and predict tests."""
    from tests.helpers import make_image_folder

    root = tmp_path_factory.mktemp("cli")
    data = make_image_folder(root / "data", per_class=12)
    run = root / "run"
    assert main(["train", str(data), "--out", str(run), *FAST]) == 0
    return data, run


def test_train_json_prints_one_line_per_epoch_and_a_done_line(tiny_dataset, tmp_path, capsys):
    code = main(["train", str(tiny_dataset), "--out", str(tmp_path / "run"), "--json", *FAST])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [l["event"] for l in lines] == ["epoch", "epoch", "done"]
    assert set(lines[0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                             "train_images_per_s"}
    assert lines[-1]["model_file"] == str(tmp_path / "run" / "model.pt2")
    assert lines[-1]["best_epoch"] in (1, 2) and 0 <= lines[-1]["best_val_acc"] <= 1
    # how the run ended, as the README says; status.json files a completed run as "done"
    assert lines[-1]["status"] == "completed"
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "done"


def test_train_names_the_files_the_scan_left_out_and_trains_on_the_rest(tiny_dataset, tmp_path, capsys):
    import shutil

    (tiny_dataset / "red" / "notes.jpg").write_text("not an image")
    first_blue = sorted((tiny_dataset / "blue").iterdir())[0]
    (tiny_dataset / "green" / "cut.png").write_bytes(first_blue.read_bytes()[:200])
    shutil.copy(first_blue, tiny_dataset / "green" / "also_blue.png")  # the same image with two labels
    code = main(["train", str(tiny_dataset), "--out", str(tmp_path / "run"), *FAST])
    output = capsys.readouterr().err
    assert code == 0
    assert ("Note: The dataset scan found 3 problems: 2 files left out of the run (green/cut.png, red/notes.jpg); "
            "1 duplicate image with another label or in another split (green/also_blue.png)") in output
    train, val = re.search(r"Training on (\d+) images, validating on (\d+),", output).groups()
    assert int(train) + int(val) == 3 * 12 + 1  # the usable duplicate trains; the two broken files do not


def test_the_summary_says_each_thing_once_and_which_seconds_a_rate_belongs_to(tiny_dataset, tmp_path, capsys):
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "run"), *FAST, "--no-feature-cache"]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert out.count("parameters train") == 1  # "Training: N of M parameters train." repeated the first line
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(re.search(r"\| \d+\.\d s \(training \d+\.\d img/s\)", line) for line in epochs)
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "two phases"), "--epochs", "2", "--batch-size",
                 "8", "--workers", "0", "--img-size", "64", "--schedule", "fine-tune", "--freeze", "none"]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Phase 1: training the new head" in out and "Phase 2: fine-tuning" in out


def test_a_dataset_without_problems_gets_no_problem_note(tiny_dataset, tmp_path, capsys):
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "run"), *FAST]) == 0
    assert "problem" not in capsys.readouterr().err


def test_without_out_a_run_gets_a_new_folder_in_the_runs_folder_that_runs_lists(tiny_dataset, tmp_path,
                                                                                   monkeypatch, capsys):
    runs = tmp_path / "my runs"
    monkeypatch.setenv("TL_STUDIO_RUNS_DIR", str(runs))
    assert main(["train", str(tiny_dataset), *FAST]) == 0
    assert main(["train", str(tiny_dataset), *FAST]) == 0  # the same second: a second folder, nothing replaced
    out = capsys.readouterr().out
    folders = sorted(runs.iterdir())
    assert len(folders) == 2 and all((folder / "model.pt2").is_file() for folder in folders)
    assert all(re.fullmatch(rf"{tiny_dataset.name}-efficientnet_lite0-\d{{8}}-\d{{6}}(-2)?", f.name) for f in folders)
    assert out.count("Run folder: ") == 2 and f"Run folder: {folders[0]}" in out
    assert main(["runs", "--json"]) == 0
    assert sorted(row["path"] for row in json.loads(capsys.readouterr().out)) == [str(f) for f in folders]


def test_without_out_what_cannot_start_leaves_no_folder_and_resume_asks_for_it(tiny_dataset, tmp_path, monkeypatch,
                                                                               capsys):
    runs = tmp_path / "runs"
    monkeypatch.setenv("TL_STUDIO_RUNS_DIR", str(runs))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err and not runs.exists()
    assert main(["train", str(empty)]) == 2
    assert "no usable class" in capsys.readouterr().err and list(runs.iterdir()) == []
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pth")  # fails as the model is built: the run has begun
    assert main(["train", str(tiny_dataset), "--weights", str(tmp_path / "other.pth"), *FAST]) == 2
    out, err = capsys.readouterr()
    assert "other.pth does not fit efficientnet_lite0" in err and list(runs.iterdir()) == []
    named = out.split("Run folder: ")[1].split()[0]  # the folder named at the start is said to be gone
    assert f"The run did not start, so its folder {Path(named).name} was removed." in err
    assert main(["train", str(empty), "--resume"]) == 2
    assert "--resume continues a run: name its folder with --out RUN_DIR" in capsys.readouterr().err
    assert main(["train", str(empty), "--nnodes", "2", "--node-rank", "0", "--master-addr", "h"]) == 2
    assert "needs --out RUN_DIR" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TL_STUDIO_RUNS_DIR", str(tmp_path / "file" / "runs"))
    assert main(["train", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Cannot make a run folder in" in err and "--out RUN_DIR" in err and err.count("\n") == 1


@pytest.mark.parametrize("flags, words", [(["--resume"], "No checkpoint at"),
                                          (["--weights", "missing.pth"], "missing.pth does not exist"),
                                          (["--model", "nosuch"], "Unknown model 'nosuch'")])
def test_with_out_what_cannot_start_leaves_nothing_behind_and_keeps_the_users_folder(tiny_dataset, tmp_path,
                                                                                     capsys, flags, words):
    # a new --out folder goes again; a folder the user had made stays, without the lock and the events
    # the failed start wrote (they made it look like a run folder to the next command)
    made = tmp_path / "made"
    made.mkdir()
    for out in (tmp_path / "new", made):
        assert main(["train", str(tiny_dataset), "--out", str(out), *flags]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and made.is_dir() and list(made.iterdir()) == []


def test_an_unknown_model_is_said_before_a_run_folder_is_named(tiny_dataset, tmp_path, monkeypatch, capsys):
    from tl_studio.core.catalog import list_models

    list_models()  # the catalogue file, as any earlier command leaves it
    monkeypatch.setenv("TL_STUDIO_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["train", str(tiny_dataset), "--model", "resnet_18x"]) == 2
    captured = capsys.readouterr()
    assert "Run folder" not in captured.out and "Unknown model 'resnet_18x'" in captured.err
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_the_resume_command_a_stopped_run_suggests_pastes_into_a_shell(tmp_path, capsys):
    import argparse
    import shlex
    from types import SimpleNamespace

    from tl_studio.cli.cmd_train import _report

    data, run = tmp_path / "my photos", tmp_path / "TL Studio" / "runs" / "a run"
    args = argparse.Namespace(json=False, data_dir=str(data), out=str(run))
    assert _report(SimpleNamespace(status="stopped", epochs_done=3, model_file="run/model.pt2"), None, args) == 130
    command = capsys.readouterr().err.split("continue with: ")[1]
    assert shlex.split(command) == ["tl-studio", "train", str(data), "--out", str(run), "--resume"]


def test_a_run_resumes_only_with_its_own_images_or_the_folder_they_moved_to(tiny_dataset, tmp_path, capsys):
    from tests.helpers import make_image_folder
    from tl_studio.core.config import TrainConfig

    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), *FAST]) == 0
    other = make_image_folder(tmp_path / "other", classes=("red", "green", "blue"), per_class=12, size=64, seed=3)
    capsys.readouterr()
    assert main(["train", str(other), "--out", str(run), "--resume", *FAST[2:], "--epochs", "3"]) == 2
    assert (f"was trained on {tiny_dataset}, and a resumed run goes on with its own images: resume it with that "
            f"folder, or train on {other} in a new run (another --out).") in capsys.readouterr().err
    assert TrainConfig.load(run / "config.json").data_dir == str(tiny_dataset)
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2  # no epoch on the other images

    # another recipe: config.json said --lr 0.5 and --batch-size 4 while the run went on with its own
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", *FAST[2:], "--epochs", "3", "--lr", "0.5",
                 "--batch-size", "4", "--class-weights", "on"]) == 2
    assert (f"{run} was trained with --batch-size 8 (not 4) and --lr 0.001 (not 0.5) and --class-weights auto (not "
            "on), and a resumed run goes on with its own settings") in capsys.readouterr().err
    assert TrainConfig.load(run / "config.json").lr is None
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2

    moved = tiny_dataset.rename(tmp_path / "moved")  # the same images in another place: the run goes on
    assert main(["train", str(moved), "--out", str(run), "--resume", *FAST[2:], "--epochs", "3"]) == 0
    assert TrainConfig.load(run / "config.json").data_dir == str(moved)
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3


def test_resuming_a_finished_run_says_how_to_train_it_further_and_rewrites_nothing(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), *FAST]) == 0
    before = {path.name: path.stat().st_mtime_ns for path in run.iterdir()}
    capsys.readouterr()
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"{run} has already trained its 2 epochs (best val accuracy " in out
    assert out.rstrip().endswith("to train it further, resume with more epochs, e.g. --epochs 7.")
    assert {path.name: path.stat().st_mtime_ns for path in run.iterdir()} == before
    # --json: stdout stays JSON Lines (it printed the sentence there)
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", "--json"]) == 0
    printed = capsys.readouterr()
    done = json.loads(printed.out)
    assert done["event"] == "done" and done["status"] == "completed" and done["model_file"] == str(run / "model.pt2")
    assert "has already trained its 2 epochs" in printed.err
    # fewer epochs than it has: the same sentence, not a check of settings it would not train with
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", "--epochs", "1"]) == 0
    assert "has already trained its 2 epochs" in capsys.readouterr().out
    # --config is not read with --resume: said, not left unread
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", "--epochs", "3", "--config",
                 str(run / "config.json")]) == 2
    assert "--config is not read with --resume" in capsys.readouterr().err
    # a flag that changes the default rate: the flag is named, not a --lr the user never typed
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", "--epochs", "3", "--optimizer", "sgd"]) == 2
    err = capsys.readouterr().err
    assert "was trained with --optimizer adamw (not sgd)," in err and "--lr" not in err

    # a stopped run that --epochs would cut short is refused, not re-planned and marked done
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "state": "stopped", "planned_epochs": 4}))
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", "--epochs", "2"]) == 2
    assert (f"{run} ended after epoch 2 of 4, so --epochs 2 leaves nothing to train: resume it with --epochs 4 or "
            f"more, or write its model file as it is with: tl-studio export {run}") in capsys.readouterr().err
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"


def test_ctrl_c_stops_after_the_batch_and_says_how_to_resume(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    process = tl_studio("train", str(tiny_dataset), "--out", str(run), "--json", "--no-feature-cache",
                        *FAST[:-4], "--epochs", "50", "--workers", "0", "--img-size", "64")
    wait_for(lambda: (run / "last.ckpt").exists())
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "--resume" in err and "Traceback" not in err
    assert (run / "model.pt2").is_file()


def test_a_killed_run_resumes_and_loses_at_most_the_epoch_in_progress(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(tiny_dataset), "--out", str(run), "--json", "--no-feature-cache", "--epochs", "4",
            "--batch-size", "8", "--workers", "0", "--img-size", "64"]
    process = tl_studio(*args)
    wait_for(lambda: (run / "metrics.csv").exists())  # epoch 1 is checkpointed
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    done_before = len(list(csv.DictReader(open(run / "metrics.csv"))))
    resumed = subprocess.run([sys.executable, "-m", "tl_studio", *args, "--resume"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    epochs = [json.loads(line)["epoch"] for line in resumed.stdout.splitlines() if '"epoch"' in line
              and json.loads(line)["event"] == "epoch"]
    assert epochs[0] == done_before + 1 and epochs[-1] == 4
    assert [r["epoch"] for r in csv.DictReader(open(run / "metrics.csv"))] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".ts"), ("pt2", ".pt2")])
def test_export_writes_a_checked_file_with_the_same_contract(trained_run, tmp_path, capsys, fmt, suffix):
    from tl_studio.core.export import load_model_file

    _, run = trained_run
    out = tmp_path / f"model{suffix}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    assert "Export check passed" in capsys.readouterr().out
    model = load_model_file(out, trust_torchscript=True)  # TorchScript runs code: loading it needs trust
    assert model.classes == ["blue", "green", "red"]
    for shape in ((1, 3, 64, 64), (2, 3, 120, 90), (1, 3, 333, 517)):
        probabilities = torch.as_tensor(model.predict(torch.rand(*shape)))
        assert probabilities.shape == (shape[0], 3)
        assert torch.allclose(probabilities.sum(1), torch.ones(shape[0]), atol=1e-4)


def test_export_never_overwrites_a_file_silently(trained_run, tmp_path, capsys):
    _, run = trained_run
    out = tmp_path / "model.onnx"
    out.write_text("something the user made")
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 2
    assert out.read_text() == "something the user made"
    assert "--overwrite" in capsys.readouterr().err


def test_export_rewrites_the_runs_model_file_only_as_it_was_unless_told(trained_run, tmp_path, capsys):
    # RUN/model.pt2 is what predict and evaluate use for the run: the same best epoch and unknown rule
    # again is harmless (the Export step's default), another --keep changes the run's answers
    import shutil

    from tl_studio.core.run_folder import RunFolder

    run = shutil.copytree(trained_run[1], tmp_path / "run")
    model = run / "model.pt2"
    assert main(["export", str(run)]) == 0 and RunFolder(run).model_file_keep() == 0.95
    before = model.read_bytes()
    capsys.readouterr()
    assert main(["export", str(run), "--keep", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "is this run's model file, and it keeps 95% of the validation images known" in err
    assert "add --overwrite" in err and err.count("\n") == 1 and model.read_bytes() == before
    assert main(["export", str(run), "--keep", "0.5", "--overwrite"]) == 0
    assert RunFolder(run).model_file_keep() == 0.5
    assert main(["export", str(run)]) == 2  # back to the default share is a change too
    assert main(["export", str(run), "--keep", "0.5"]) == 0


@pytest.mark.parametrize("fmt, name, words", [
    ("pt2", "model.onnx", "model.onnx does not end in .pt2, and a model file is opened by its suffix; name it model.pt2"),
    ("onnx", "model.pt2", "model.pt2 does not end in .onnx"),
    ("onnx-int8", "model.ts", "model.ts does not end in .onnx"),
    ("pt2", "mymodel", "name it mymodel.pt2"),
    ("onnx", "a_folder", "a_folder is a folder; give a file name to write."),
    ("onnx-int8", "new/folders/model.pt2", "model.pt2 does not end in .onnx"),  # and the folders are not made
    ("onnx", "new/folders/model.pt2", "model.pt2 does not end in .onnx"),
])
def test_export_refuses_a_file_name_that_would_not_open_as_its_format(trained_run, tmp_path, capsys, fmt, name, words):
    _, run = trained_run
    (tmp_path / "a_folder").mkdir()
    assert main(["export", str(run), "--format", fmt, "--out", str(tmp_path / name), "--overwrite"]) == 2
    assert words in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_folder"]  # nothing written, before any work


def test_predict_goes_on_past_a_broken_file(trained_run, tmp_path, capsys):
    data, run = trained_run
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    good = sorted((data / "red").glob("*.jpg"))[:2]
    code = main(["predict", str(run / "model.pt2"), str(broken), *map(str, good), "--json"])
    captured = capsys.readouterr()
    results = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 0
    assert results[0]["path"] == str(broken) and "error" in results[0]
    assert [r["top"][0]["label"] in ("red", "green", "blue") for r in results[1:]] == [True, True]
    assert "1 of 3 files could not be classified" in captured.err


def test_predict_never_replaces_a_csv_file_without_overwrite(trained_run, tmp_path, capsys):
    data, run = trained_run
    image = str(sorted((data / "red").glob("*.jpg"))[0])
    table = tmp_path / "answers.csv"
    table.write_text("the user's own table\n")
    assert main(["predict", str(run / "model.pt2"), image, "--csv", str(table)]) == 2
    err = capsys.readouterr().err
    assert "answers.csv already exists; choose another --csv file or add --overwrite." in err and err.count("\n") == 1
    assert table.read_text() == "the user's own table\n"
    assert main(["predict", str(run / "model.pt2"), image, "--csv", str(table), "--overwrite"]) == 0
    assert table.read_text().splitlines()[1].startswith(f"{image},")


def test_a_run_folder_stands_for_its_model_file_and_a_model_file_for_its_run(trained_run, tmp_path, capsys):
    data, run = trained_run
    image = str(sorted((data / "red").glob("*.jpg"))[0])
    assert main(["predict", str(run), image, "--json"]) == 0
    from_folder = json.loads(capsys.readouterr().out)
    assert main(["predict", str(run / "model.pt2"), image, "--json"]) == 0
    assert from_folder == json.loads(capsys.readouterr().out)
    assert main(["export", str(run / "model.pt2"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").is_file()
    capsys.readouterr()
    assert main(["predict", str(data), image]) == 2
    assert "is a folder without a model file (model.pt2); give a model file" in capsys.readouterr().err
    stopped = tmp_path / "stopped"  # a run stopped before its model file: what writes it is named
    stopped.mkdir()
    (stopped / "best.ckpt").write_bytes((run / "best.ckpt").read_bytes())
    assert main(["predict", str(stopped), image]) == 2
    assert (f"The run {stopped} has no model file yet (it stopped before writing one); tl-studio export {stopped} "
            "writes it from the run's best epoch") in capsys.readouterr().err
    assert main(["export", str(tmp_path / "m.onnx"), "--format", "onnx"]) == 2
    assert "m.onnx is a file; this starts from the run folder that trained the model" in capsys.readouterr().err


def test_predict_matches_the_model_file_run_with_plain_torch(trained_run):
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    from tl_studio.core.export import load_model_file
    from tl_studio.core.predict import predict_paths

    data, run = trained_run
    paths = sorted((data / "green").glob("*.jpg"))[:3]
    model = load_model_file(run / "model.pt2")
    plain = torch.export.load(str(run / "model.pt2")).module()
    for prediction, path in zip(predict_paths(model.predict, model.classes, paths), paths):
        image = pil_to_tensor(Image.open(path).convert("RGB")).float().div(255).unsqueeze(0)
        with torch.no_grad():
            expected = plain(image)[0]
        assert prediction.labels[0] == model.classes[int(expected.argmax())]
        assert prediction.probs[0] == pytest.approx(float(expected.max()), abs=1e-6)


def test_paths_of_the_wrong_kind_are_named_for_what_they_are(tiny_dataset, tmp_path, capsys):
    (tmp_path / "afile.txt").write_text("")
    (tmp_path / "weights").mkdir()
    cases = [(["train", str(tiny_dataset), "--out", str(tmp_path / "afile.txt")], "afile.txt is a file, not a folder"),
             (["train", str(tiny_dataset), "--out", str(tmp_path / "run"), "--weights", str(tmp_path / "weights")],
              "weights is a folder; --weights takes"),
             (["export", str(tmp_path / "nowhere")], "nowhere does not exist; give a run folder"),
             (["benchmark", str(tmp_path / "nowhere")], "nowhere does not exist; give a run folder"),
             (["predict", str(tmp_path / "m.pt2"), str(tiny_dataset), "--csv", str(tmp_path / "afile.txt" / "o.csv")],
              "cannot be made or written")]
    for words, said in cases:
        assert main(words) == 2, words
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_run_folder_inside_the_data_set_is_refused_before_anything_is_written(tiny_dataset, capsys):
    before = sorted(tiny_dataset.rglob("*"))
    for out in (tiny_dataset / "run1", tiny_dataset / "red" / "run", tiny_dataset):
        assert main(["train", str(tiny_dataset), "--out", str(out), *FAST]) == 2
        err = capsys.readouterr().err
        assert "is inside the data set" in err and err.count("\n") == 1
    assert sorted(tiny_dataset.rglob("*")) == before


def test_train_with_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag, value, words", [("--lr", "inf", "learning rate"), ("--lr", "nan", "learning rate"),
                                                ("--img-size", "100000", "between 32 and 1024 pixels"),
                                                ("--weight-decay", "-1", "weight decay must be 0 or a positive"),
                                                ("--freeze", "banana", "is not 'all', 'none' or a number"),
                                                ("--freeze-epochs", "-1", "head-only epochs")])
def test_impossible_settings_get_one_sentence(tiny_dataset, tmp_path, capsys, flag, value, words):
    code = main(["train", str(tiny_dataset), "--out", str(tmp_path / "run"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train", "advise", "lr-find"])
@pytest.mark.parametrize("content, words", [
    (b"\xff\xd8\xff\xe0 a JPEG", "is not a text file"),
    (b"[1, 2]", "holds one JSON object of settings"),
    (b'{"epochs": "two"}', 'The setting "epochs" in the config must be a whole number, not "two"'),
    (b'{"lr": "abc"}', 'The setting "lr" in the config must be a number or null (the default), not "abc"'),
    (b'{"amp": 1}', 'must be true or false, not 1'),
    (b'{"epochs": 2.5}', 'must be a whole number, not 2.5'),
])
def test_a_config_file_a_command_cannot_use_gets_one_sentence(tiny_dataset, tmp_path, capsys, command, content,
                                                              words):
    config = tmp_path / "config.json"
    config.write_bytes(content)
    out = ["--out", str(tmp_path / "run")] if command == "train" else []
    code = main([command, str(tiny_dataset), "--config", str(config), *out])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1 and not (tmp_path / "run").exists(), err


def test_a_config_files_freeze_may_be_a_number_as_on_the_command_line(tmp_path):
    from tl_studio.core.config import TrainConfig

    (tmp_path / "config.json").write_text('{"freeze": 2, "epochs": 3, "lr": 0.01, "img_size": null}')
    config = TrainConfig.load(tmp_path / "config.json").validate()
    assert (config.freeze, config.epochs, config.lr, config.img_size) == ("2", 3, 0.01, None)


def test_a_folder_holding_a_run_needs_resume_or_overwrite(trained_run, capsys):
    data, run = trained_run
    before = (run / "metrics.csv").read_text()
    assert main(["train", str(data), "--out", str(run), *FAST]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and (run / "metrics.csv").read_text() == before
    assert main(["train", str(data), "--out", str(run), "--resume", "--overwrite"]) == 2


def _group_is_gone(pgid: int) -> bool:
    import os

    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _start_training_with_workers(data, run) -> subprocess.Popen:
    """Default loader workers (2), training on images, in its own process group like a terminal job."""
    process = tl_studio("train", str(data), "--out", str(run), "--no-feature-cache", "--epochs", "50",
                        "--batch-size", "4", "--img-size", "64", start_new_session=True)
    wait_for(lambda: '"BatchEnd"' in ((run / "events.jsonl").read_text() if (run / "events.jsonl").exists() else ""))
    return process


def test_ctrl_c_in_the_first_epoch_says_one_true_thing(tiny_dataset, tmp_path):
    import os

    process = _start_training_with_workers(tiny_dataset, tmp_path / "run")
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends: to the workers as well
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err
    assert err.count("Stopping") == 1, err
    assert "no epoch to keep, resume or export" in err and "checkpoint" not in err
    wait_for(lambda: _group_is_gone(process.pid), timeout=15)


def test_a_second_ctrl_c_ends_at_once_without_a_traceback(tiny_dataset, tmp_path):
    import os

    process = _start_training_with_workers(tiny_dataset, tmp_path / "run")
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.5)  # handled apart (two signals close together count as one)
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:  # the first one had already ended it
        pass
    out, err = process.communicate(timeout=120)
    # exit 130, or death by SIGINT once our handler has run (what a shell also reports as 130): see
    # tests/cli/test_interrupt.py
    assert process.returncode in (130, -2) and "Traceback" not in err, err
    wait_for(lambda: _group_is_gone(process.pid), timeout=15)


def test_a_run_stopped_at_once_says_no_model_file_was_written_and_how_to_make_it(capsys):
    """A second Ctrl-C stops before the model file: the last line only said how to resume."""
    import argparse

    from tl_studio.cli.cmd_train import _report
    from tl_studio.core import events

    finished = events.RunFinished(status="stopped", epochs_done=3, best_epoch=1, best_val_acc=0.5, model_file=None,
                                  seconds=9.0, message="")
    args = argparse.Namespace(json=False, out="runs/my run", data_dir="data")
    assert _report(finished, None, args) == 130
    err = capsys.readouterr().err
    assert "continue with: tl-studio train data --out 'runs/my run' --resume" in err
    assert err.rstrip().endswith("No model file was written; tl-studio export 'runs/my run' makes it from the best "
                                 "epoch.")


def test_a_run_still_training_is_said_so_by_predict_and_export(trained_run, tmp_path, capsys):
    """predict on a run still training said it "stopped before writing" its model file, and export wrote
    the best epoch so far without a word that a later epoch may replace it."""
    import shutil

    from tl_studio.core.run_folder import RunFolder

    data, run = trained_run
    training = tmp_path / "training"
    shutil.copytree(run, training)
    (training / "model.pt2").unlink()  # written when the run ends
    image = str(sorted((data / "red").glob("*.jpg"))[0])
    lock = RunFolder(training).lock()  # as the training process holds it
    try:
        assert main(["predict", str(training), image]) == 2
        assert capsys.readouterr().err.strip() == (
            f"tl-studio predict: The run {training} is still training; it writes its model file when it ends, and "
            f"until then tl-studio export {training} writes one from its best epoch so far.")
        assert main(["export", str(training), "--format", "onnx"]) == 0
        assert ("Note: the run is still training; this file is its best epoch so far: export again when it ends."
                in capsys.readouterr().out)
    finally:
        lock.release()
    assert main(["predict", str(training), image]) == 2  # ended without its model file: the usual sentence
    assert "has no model file yet (it stopped before writing one)" in capsys.readouterr().err


def test_a_resumed_run_keeps_the_share_its_model_file_was_exported_to_keep(tiny_dataset, tmp_path, capsys):
    """`export RUN --keep 0.8 --overwrite`, then `train --resume --epochs 3`: the run's new model.pt2 kept
    95 % again, without a word, and `predict RUN` answered what the user had made "unknown"."""
    from tl_studio.core.run_folder import RunFolder

    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), *FAST]) == 0
    assert main(["export", str(run), "--keep", "0.8", "--overwrite"]) == 0
    assert RunFolder(run).model_file_keep() == pytest.approx(0.8)
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", *FAST[2:], "--epochs", "3"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert RunFolder(run).model_file_keep() == pytest.approx(0.8)


def test_a_resume_that_finds_a_better_epoch_says_which_exports_hold_an_earlier_one(tiny_dataset, tmp_path, capsys,
                                                                                    monkeypatch):
    """model.onnx exported at epoch 1, then a resume whose best epoch is 2: evaluate gave 0.9216 for the run
    and 0.9150 for its model.onnx, and nothing had said the file was behind."""
    from tl_studio.core import epoch_rules

    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), *FAST[2:], "--epochs", "1"]) == 0
    assert main(["export", str(run), "--format", "onnx"]) == 0
    real_judge = epoch_rules.BestEpoch.judge
    monkeypatch.setattr(epoch_rules.BestEpoch, "judge",  # epoch 2 is the best
                        lambda self, epoch, acc, loss: real_judge(self, epoch, *((2.0, -1.0) if epoch == 2 else
                                                                                  (acc, loss))))
    capsys.readouterr()
    assert main(["train", str(tiny_dataset), "--out", str(run), "--resume", "--epochs", "2"]) == 0
    printed = capsys.readouterr()
    assert ("model.onnx in the run folder was exported from an earlier epoch; model.pt2 is now epoch 2: export it "
            "again to bring it up to date.") in printed.out + printed.err


def test_a_freeze_depth_of_every_stage_is_refused_with_the_setting_that_means_it(tiny_dataset, tmp_path, capsys):
    """--freeze 5 on efficientnet_lite0 (5 stages) trained the head alone without the feature cache, at the
    fine-tuning rate: val accuracy 0.464 after one epoch on ants/bees, against 0.961 with --freeze all."""
    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), *FAST, "--freeze", "5"]) == 2
    assert ("--freeze 5 freezes every stage of efficientnet_lite0, which is --freeze all: the new head alone trains, "
            "on cached features. Give --freeze all, or a depth from 0 to 4") in capsys.readouterr().err
    assert not run.exists()  # the run did not start: its folder went

