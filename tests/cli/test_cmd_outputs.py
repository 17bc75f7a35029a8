"""What the commands write for the user: names from the disk never reach the terminal raw or a
spreadsheet as a formula, odd file names do not break a CSV, mistakes in flags or destinations get one
sentence before any work, and written files get the user's normal permissions."""

from __future__ import annotations

import csv
import os
import stat

import pytest

from tests.helpers import make_image, make_image_folder
from tests.model_file_helpers import tiny_exports
from tl_studio.cli.main import main

ESC = "\x1b"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return tiny_exports(tmp_path_factory.mktemp("exports"))


def test_scan_shows_escape_sequences_in_names_instead_of_obeying_them(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", classes=(f"{ESC}[31mred", "green", "blue"), per_class=2, size=32)
    make_image(data / "green" / f"{ESC}]0;pwned{chr(7)}.png", (0, 200, 0), size=32)
    # a class folder with control characters is itself a problem the scan names (core/data.py); both
    # names reach the terminal escaped
    assert main(["scan", str(data), "--all"]) == 0
    out, err = capsys.readouterr()
    assert ESC not in out + err and chr(7) not in out + err and "\\x1b[31mred" in out + err


def test_evaluate_shows_escape_sequences_in_class_names(tmp_path, capsys):
    classes = (f"{ESC}[31mred", "green")
    model = tiny_exports(tmp_path / "model", classes)["pt2"]
    # the data set's own folder with that name is a problem of the scan (not a class), and a third class
    # keeps the scan usable; the model's class names still reach the report
    data = make_image_folder(tmp_path / "data", classes=(*classes, "blue"), per_class=2, size=32)
    assert main(["evaluate", str(model), str(data), "--split", "all"]) == 0
    out, err = capsys.readouterr()
    assert ESC not in out + err and "\\x1b[31mred" in out


def test_predict_escapes_names_in_the_terminal_and_formulas_in_the_csv(exports, tmp_path, capsys):
    folder = tmp_path / "in"
    for name in (f"{ESC}[2Jclear.png", "=HYPERLINK(1).png", "+sum.png", "-minus.png", "@at.png"):
        make_image(folder / name, (200, 40, 40), size=40)
    out_csv = tmp_path / "out.csv"
    assert main(["predict", str(exports["pt2"]), str(folder), "--csv", str(out_csv)]) == 0
    assert ESC not in capsys.readouterr().out
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    by_name = {os.path.basename(row["path"]): row for row in rows}
    assert len(rows) == 5
    # every path cell starts with the folder; a bare name cell would be escaped: check the helper too
    from tl_studio.core.safe_text import csv_cell
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@x", "plain")] == ["'=1+1", "'+1", "'-1", "'@x", "plain"]
    assert all(row["label1"] in ("a", "b") for row in by_name.values())


def test_a_label_or_path_that_starts_like_a_formula_is_escaped_in_predicts_csv(exports, tmp_path, monkeypatch):
    make_image(tmp_path / "img.png", (10, 10, 200), size=40)
    monkeypatch.chdir(tmp_path)
    out_csv = tmp_path / "out.csv"
    assert main(["predict", str(exports["pt2"]), "img.png", "--csv", str(out_csv)]) == 0
    assert main(["predict", str(exports["pt2"]), "=img.png", "--csv", str(out_csv), "--overwrite"]) == 2  # no file
    os.rename(tmp_path / "img.png", tmp_path / "=img.png")
    assert main(["predict", str(exports["pt2"]), "=img.png", "--csv", str(out_csv), "--overwrite"]) == 0
    row = next(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert row["path"] == "'=img.png"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes; Windows names are always Unicode")
def test_a_file_name_that_is_not_utf8_does_not_break_the_csv(exports, tmp_path, capsys):
    folder = tmp_path / "in"
    make_image(folder / "ok.png", (200, 40, 40), size=40)
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    os.rename(os.path.join(os.fsencode(folder), b"ok.png"), odd)
    out_csv = tmp_path / "out.csv"
    assert main(["predict", str(exports["pt2"]), str(folder), "--csv", str(out_csv), "--json"]) == 0
    row = next(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert row["path"].endswith("caf\\xe9.png") and row["label1"] in ("a", "b")
    assert "caf\\\\xe9.png" in capsys.readouterr().out  # the JSON string holds the same readable name


def test_a_negative_top_k_gets_a_sentence(exports, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(exports["pt2"]), str(tmp_path), "--top-k", "-5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "give 1 or more" in err and "Traceback" not in err


def _unwritable_folder(tmp_path):
    """A folder nobody can write into, root included: its "parent" is a plain file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    return blocker / "out"


def test_read_only_destinations_get_a_sentence_before_any_work(exports, tmp_path, capsys, monkeypatch):
    from tl_studio.core import predict

    make_image(tmp_path / "in" / "x.png", (1, 2, 3), size=32)
    classified = []
    real = predict.predict_paths
    monkeypatch.setattr(predict, "predict_paths", lambda *a, **k: classified.append(1) or real(*a, **k))
    assert main(["predict", str(exports["pt2"]), str(tmp_path / "in"), "--csv",
                 str(_unwritable_folder(tmp_path) / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "Cannot write" in err and "choose another place" in err and not classified


def test_export_to_a_read_only_destination_gets_a_sentence_before_any_work(tmp_path_factory, tmp_path, capsys,
                                                                           monkeypatch):
    from tests.evaluation_helpers import tiny_model
    from tl_studio.core import export

    model = tiny_model(tmp_path_factory)
    monkeypatch.setattr(export, "export_model", lambda *a, **k: pytest.fail("the export started"))
    out = _unwritable_folder(tmp_path) / "m.onnx"
    assert main(["export", str(model.run_dir), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Cannot write" in err and "Traceback" not in err


def test_written_files_get_the_users_umask_and_stale_temporaries_go(tmp_path):
    from tl_studio.core.fileio import atomic_write_text

    target = tmp_path / "model.pt2"
    dead = tmp_path / ".model.999999999-abcd1234.tmp.pt2"  # a writer that was killed (no such process)
    alive = tmp_path / f".model.{os.getpid()}-efgh5678.tmp.pt2"  # this process: maybe another thread
    foreign = tmp_path / ".model.notours.tmp.pt2x"
    for path in (dead, alive, foreign):
        path.write_bytes(b"partial")
    old = os.umask(0o027)
    try:
        atomic_write_text(target, "new")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not dead.exists() and alive.exists() and foreign.exists()
    target.chmod(0o604)  # a replaced file keeps the mode its owner gave it
    atomic_write_text(target, "again")
    assert stat.S_IMODE(target.stat().st_mode) == 0o604


def test_a_two_class_models_csv_has_no_empty_third_label_column(exports, tmp_path):
    make_image(tmp_path / "img.png", (10, 10, 200), size=40)
    table = tmp_path / "out.csv"
    assert main(["predict", str(exports["pt2"]), str(tmp_path / "img.png"), "--csv", str(table)]) == 0
    rows = list(csv.reader(table.open(encoding="utf-8")))
    assert rows[0] == ["path", "label1", "prob1", "label2", "prob2", "unknown", "error"]
    assert len(rows[1]) == 7 and rows[1][1] in ("a", "b") and rows[1][3] in ("a", "b")
