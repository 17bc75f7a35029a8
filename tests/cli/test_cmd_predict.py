"""`tl-studio predict` in batches: every line, JSON object and CSV row is on disk as soon as its batch is
done (an interrupted run keeps what it did); the batch size changes no answer; progress goes to a
terminal's stderr only, and stdout keeps its contract."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.evaluation_helpers import one_torch_thread
from tests.helpers import make_image
from tests.model_file_helpers import tiny_exports
from tl_studio.cli.main import main


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    return tiny_exports(tmp_path_factory.mktemp("exports"))["pt2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("in")
    for i in range(13):
        make_image(root / f"{i:02d}.png", ((i * 40) % 256, 90, 200 - i * 10), size=24 + 7 * i, seed=i)
    return root


@pytest.fixture
def sigint_handler_restored():
    """The command's Ctrl-C handling ignores a second SIGINT from then on; give pytest its own back."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def _interrupt_after(monkeypatch, count: int, on_interrupt) -> None:
    """predict_paths as the command calls it, with a Ctrl-C after ``count`` predictions; just before it,
    ``on_interrupt()`` looks at what is on disk while the command is still at work."""
    from tl_studio.core import predict

    real = predict.predict_paths

    def interrupted(*args, **kwargs):
        for done, prediction in enumerate(real(*args, **kwargs)):
            if done == count:
                on_interrupt()
                raise KeyboardInterrupt
            yield prediction

    monkeypatch.setattr(predict, "predict_paths", interrupted)


def test_csv_rows_and_json_lines_are_written_as_they_come(pt2, folder, tmp_path, monkeypatch, capsys,
                                                         sigint_handler_restored):
    out = tmp_path / "p.csv"
    seen = {}
    _interrupt_after(monkeypatch, 8, lambda: seen.update(rows=list(csv.DictReader(out.open(encoding="utf-8"))),
                                                        lines=capsys.readouterr().out.splitlines()))
    assert main(["predict", str(pt2), str(folder), "--csv", str(out), "--json", "--batch-size", "4"]) == 130
    images = sorted(str(p) for p in folder.iterdir())
    assert [row["path"] for row in seen["rows"]] == images[:8]  # on disk before the run ended
    assert [json.loads(line)["path"] for line in seen["lines"]] == images[:8]
    kept = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["path"] for row in kept] == images[:8] and all(row["label1"] in ("a", "b") for row in kept)


def test_the_batch_size_changes_no_answer(pt2, folder, capsys):
    answers = []
    for flags in (["--batch-size", "1", "--workers", "0"], ["--batch-size", "32"],
                  ["--batch-size", "5", "--workers", "2"]):
        assert main(["predict", str(pt2), str(folder), "--json", *flags]) == 0
        answers.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    first = answers[0]
    assert len(first) == 13
    for other in answers[1:]:
        assert [a["path"] for a in other] == [a["path"] for a in first]
        for mine, theirs in zip(other, first):
            assert [t["label"] for t in mine["top"]] == [t["label"] for t in theirs["top"]]
            assert [t["prob"] for t in mine["top"]] == pytest.approx([t["prob"] for t in theirs["top"]], abs=1e-5)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_a_terminals_stderr_and_stdout_keeps_its_lines(pt2, folder, monkeypatch, capsys):
    assert main(["predict", str(pt2), str(folder)]) == 0
    plain = capsys.readouterr()
    assert "img/s" not in plain.err  # stderr is not a terminal here: no progress
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["predict", str(pt2), str(folder), "--batch-size", "4"]) == 0
    assert capsys.readouterr().out == plain.out
    shown = terminal.getvalue()
    assert "Classifying: 13/13 images" in shown and "img/s, time left" in shown and shown.endswith("\n")


def test_a_bad_batch_size_gets_a_sentence(pt2, folder, capsys):
    for flags in (["--batch-size", "0"], ["--workers", "-1"], ["--batch-size", "many"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", str(pt2), str(folder), *flags])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "give" in err and "Traceback" not in err


def test_a_folder_without_files_gets_a_sentence_not_silence(pt2, tmp_path, capsys):
    empty = tmp_path / "new photos"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"\0")  # hidden: skipped
    (empty / "Thumbs.db").write_bytes(b"\0")  # Windows' thumbnail cache: skipped as the scan skips it
    (empty / "@eaDir").mkdir()  # a NAS's thumbnails: skipped
    (empty / "@eaDir" / "SYNOPHOTO_THUMB_M.jpg").write_bytes(b"\0")
    assert main(["predict", str(pt2), str(empty)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"tl-studio predict: No files in {empty} (hidden and system files are skipped); give image files, "
                            "or folders that hold them.\n")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_the_commands_let_openmp_threads_sleep_before_torch_loads(pt2, folder, tmp_path, command):
    # In a fresh process, as a user runs them: the setting only works if made before torch is imported.
    import os
    import shutil
    import subprocess
    import sys

    data = tmp_path / "data"
    for name, images in (("a", sorted(folder.iterdir())[:3]), ("b", sorted(folder.iterdir())[3:6])):
        (data / name).mkdir(parents=True)
        for image in images:
            shutil.copy(image, data / name / image.name)
    arguments = [command, str(pt2), str(data)] + (["--split", "all"] if command == "evaluate" else [])
    code = ("import os, sys\nfrom tl_studio.cli.main import main\n"
            f"code = main({arguments!r})\nprint(code, os.environ.get('OMP_WAIT_POLICY'), file=sys.stderr)")
    env = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.stderr.split()[-2:] == ["0", "PASSIVE"], result.stderr


def test_a_full_disk_while_writing_the_csv_is_one_sentence(pt2, folder, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    assert main(["predict", str(pt2), str(folder), "--csv", "/dev/full", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "Could not write /dev/full (No space left on device); the rows written before are kept" in err
    assert "Traceback" not in err


def test_a_table_never_replaces_a_file_the_command_reads(pt2, folder, tmp_path, capsys):
    """--csv photo.jpg --overwrite turned the photo into a 142-byte table, then called it "not an image
    file"; --csv model.onnx --overwrite replaced the model file without a word."""
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(folder, photos)
    photo = sorted(photos.rglob("*.png"))[0]
    model = tmp_path / "model.pt2"
    shutil.copy(pt2, model)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(pt2, run / "model.pt2")
    (run / "metrics.csv").write_text("epoch,val_acc\n1,0.5\n")
    untouched = {path: path.read_bytes() for path in (photo, model, run / "metrics.csv")}
    for model_arg, table, said in [(model, photo, "is one of the images to classify"),
                                   (model, model, "is the model file"),
                                   (run, run / "metrics.csv", f"is a file of the run {run}")]:
        assert main(["predict", str(model_arg), str(photos), "--csv", str(table), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"--csv {table} {said}; choose another file for the table." in err and err.count("\n") == 1
    assert all(path.read_bytes() == content for path, content in untouched.items())
    assert main(["predict", str(run), str(photo), "--csv", str(run / "answers.csv")]) == 0  # a new file there is fine
    assert (run / "answers.csv").read_text().startswith("path,label1,prob1")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_folder_given_before_the_model_is_answered_with_the_command_in_order(pt2, folder, command, capsys):
    assert main([command, str(folder), str(pt2)]) == 2
    assert capsys.readouterr().err.strip() == (f"tl-studio {command}: {folder} is a folder of images and {pt2} a "
                                               f"model: the model comes first (tl-studio {command} {pt2} {folder}).")


def test_a_photo_given_before_the_model_is_answered_with_the_command_in_order(pt2, folder, capsys):
    """`predict photo.jpg runs/ants-bees` said only "photo.jpg is not a model file TL Studio knows"."""
    photo = folder / "00.png"
    assert main(["predict", str(photo), str(pt2)]) == 2
    assert capsys.readouterr().err.strip() == (f"tl-studio predict: {photo} is not a model file and {pt2} a model: the "
                                               f"model comes first (tl-studio predict {pt2} {photo}).")
    assert main(["predict", str(photo), str(photo)]) == 2  # no model among them: what the file is not, as before
    assert capsys.readouterr().err.strip() == (f"tl-studio predict: {photo.name} is not a model file TL Studio knows "
                                               "(.pt2, .onnx, .ts, .pt, .pth, .jit).")
