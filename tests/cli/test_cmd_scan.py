"""`tl-studio scan`: the summary, the JSON report, exit statuses, and a start-up without torch."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.helpers import make_image
from tl_studio.cli.main import main
from tl_studio.core.data import scan_dataset

_unique = itertools.count(1)


def add_images(folder: Path, count: int) -> None:
    for i in range(count):
        make_image(folder / f"img_{i:03d}.jpg", (60, 120, 200), size=32, seed=next(_unique))


def scan_json(capsys, *args: str) -> dict:
    assert main(["scan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_report(tiny_dataset, capsys):
    (tiny_dataset / "red" / "broken.jpg").write_bytes(b"")
    report = scan_json(capsys, str(tiny_dataset))
    assert report["classes"] == [{"name": "blue", "label": 0, "count": 12}, {"name": "green", "label": 1, "count": 12},
                                 {"name": "red", "label": 2, "count": 12}]
    assert report["num_images"] == 36 and report["presplit"] is False
    assert report["root"] == str(tiny_dataset)
    assert report["splits"] == scan_dataset(tiny_dataset).counts()  # the split is the core's, per file
    assert [(p["path"], p["kind"]) for p in report["problems"]] == [("red/broken.jpg", "empty_file")]


def test_split_options_change_the_split(tiny_dataset, capsys):
    report = scan_json(capsys, str(tiny_dataset), "--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "3")
    assert report["splits"] == scan_dataset(tiny_dataset, val_fraction=0.25, test_fraction=0.25, seed=3).counts()
    assert report["splits"] != scan_dataset(tiny_dataset).counts()
    assert report["seed"] == 3


def test_human_summary_shows_classes_counts_and_problems(tiny_dataset, capsys):
    for i in range(25):
        (tiny_dataset / "green" / f"note_{i:02d}.txt").write_text("not an image")
    counts = scan_dataset(tiny_dataset).counts()
    assert main(["scan", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "3 classes, 36 images" in out
    assert [line.split()[:5] for line in out.splitlines() if line.strip().startswith("blue")] == [
        ["blue", str(counts["train"]["blue"]), str(counts["val"]["blue"]), "12",
         "\u2588" * 30 if "\u2588" in out else "#" * 30]]
    assert "25 problems:" in out and "green/note_00.txt: Not an image file" in out
    assert "... and 5 more (use --all to list them all)" in out and "note_24" not in out
    assert main(["scan", str(tiny_dataset), "--all"]) == 0
    out = capsys.readouterr().out
    assert "note_24.txt" in out and "more" not in out


def test_imbalance_is_noted(tmp_path, capsys):
    add_images(tmp_path / "many", 40)
    add_images(tmp_path / "few", 5)
    train = scan_dataset(tmp_path).counts()["train"]
    assert main(["scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ratio = train["many"] / train["few"]
    assert ratio > 3 and (f"Imbalanced classes: 'many' has {train['many']} training images, {ratio:.1f}x the "
                          f"{train['few']} of 'few'") in out
    # a class this small is not helped by weighting (train leaves it alone): the advice is more images
    assert train["few"] < 5 and "add images of 'few': class weighting cannot make up for fewer than 5" in out


def test_a_class_without_training_images_is_said_to_stop_a_run(tmp_path, capsys):
    for split, count in (("train", 6), ("val", 3)):
        add_images(tmp_path / split / "many", count)
    add_images(tmp_path / "val" / "none", 3)
    (tmp_path / "train" / "none").mkdir()
    assert main(["scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("Imbalanced classes: 'many' has 6 training images, while 'none' has none; add training images of "
            "'none': a run cannot start without them.") in out


def test_no_imbalance_note_for_balanced_classes(tiny_dataset, capsys):
    main(["scan", str(tiny_dataset)])
    out = capsys.readouterr().out
    assert "Imbalanced" not in out and "No problems found." in out


def test_missing_folder_exits_2_with_one_line(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "nowhere")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "does not exist" in captured.err


def test_one_class_exits_2_with_a_way_forward(tmp_path, capsys):
    add_images(tmp_path / "only", 3)
    assert main(["scan", str(tmp_path), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tl-studio scan: ") and "at least two" in err and err.count("\n") == 1


def test_bad_fraction_exits_2(tiny_dataset, capsys):
    assert main(["scan", str(tiny_dataset), "--val-fraction", "1.5"]) == 2
    assert "validation fraction" in capsys.readouterr().err


def test_the_command_runs_as_a_process_without_torch_or_numpy(tiny_dataset):
    code = ("import sys; from tl_studio.cli.main import main; "
            f"code = main(['scan', {str(tiny_dataset)!r}, '--json']); "
            "assert code == 0, code; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'torch or numpy imported'")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["num_images"] == 36


def test_the_process_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tl_studio", "scan", str(tmp_path / "missing")],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_scan_of_the_real_dataset(hymenoptera, capsys):
    report = scan_json(capsys, str(hymenoptera))
    assert report["presplit"] is True and report["num_images"] == 398
    assert report["splits"]["train"] == {"ants": 124, "bees": 121}
    assert report["splits"]["val"] == {"ants": 70, "bees": 83}


def test_verify_decodes_every_image_and_reports_what_the_quick_scan_missed(tmp_path, capsys):
    add_images(tmp_path / "cats", 3)
    add_images(tmp_path / "dogs", 3)
    png = tmp_path / "cats" / "damaged.png"
    Image.effect_noise((48, 48), 60).convert("RGB").save(png)
    data = bytearray(png.read_bytes())
    start = data.index(b"IDAT") + 10
    data[start:start + 30] = bytes(byte ^ 0x55 for byte in data[start:start + 30])  # header and end intact
    png.write_bytes(bytes(data))
    assert scan_json(capsys, str(tmp_path))["problems"] == []
    verified = scan_json(capsys, str(tmp_path), "--verify")
    assert [(p["path"], p["kind"]) for p in verified["problems"]] == [("cats/damaged.png", "corrupt")]
    assert verified["num_images"] == 6


def test_a_lopsided_split_is_said_with_a_seed_to_try(tmp_path, capsys):
    from tests.helpers import make_image_folder
    from tl_studio.core.data import scan_dataset

    data = make_image_folder(tmp_path / "small", classes=("ants", "bees"), per_class=20, size=16)
    seed = next(s for s in range(60) if scan_dataset(data, val_fraction=0.3, seed=s).uneven_split())
    assert main(["scan", str(data), "--val-fraction", "0.3", "--seed", str(seed)]) == 0
    out = capsys.readouterr().out
    assert "Another seed gives another split. (--seed " + str(seed + 1) + ", for example)" in out
