"""The Predict step: a folder with a broken file gets a row that says why, the other images are classified
exactly like the model file does, the table sorts by confidence, and the CSV has every row."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.evaluation_helpers import one_torch_thread, plain_torch_probabilities, tiny_model
from tests.helpers import make_image
from tl_studio.gui.pages.predict_page import PredictPage
from tl_studio.gui.session import Session

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture
def page(qtbot, model):
    session = Session()
    session.set_run(model.run_dir, model.model_file)
    predict_page = PredictPage(session)
    qtbot.addWidget(predict_page)
    predict_page.show()  # the step on screen: its status lines are said (a hidden step holds them)
    yield predict_page
    predict_page.shutdown()


def test_a_broken_file_gets_its_reason_and_the_rest_go_on(page, qtbot, model, tmp_path):
    folder = tmp_path / "new"
    good = [make_image(folder / f"img{i}.jpg", colour, seed=i)
            for i, colour in enumerate([(200, 40, 40), (40, 180, 60), (40, 60, 200)])]
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a photo")
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS) as finished:
        page.add_paths([folder])
    assert finished.args == [4]
    rows = {row["path"]: row for row in page.rows()}
    assert len(rows) == 4
    broken = rows[str(folder / "broken.jpg")]
    assert broken["error"] and not broken["labels"]
    expected = plain_torch_probabilities(model.model_file, good)
    classes = ["blue", "green", "red"]
    for path, probabilities in zip(good, expected):
        row = rows[str(path)]
        assert not row["error"] and len(row["labels"]) == 3
        assert row["labels"][0] == classes[int(probabilities.argmax())]
        np.testing.assert_allclose(row["probs"], np.sort(probabilities)[::-1], atol=1e-6)
    assert all(page.table_model.item(row, 0).data(Qt.DecorationRole) is not None for row in range(4))


def test_one_dropped_image_is_one_image_in_the_status_line(page, qtbot, tmp_path):
    said = []
    page.session.statusMessage.connect(said.append)
    photo = make_image(tmp_path / "photo.jpg", (200, 40, 40))
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([photo])
    assert said[-1] == "Classified 1 image."


def test_open_model_file_on_the_step_opens_it_for_every_step(qtbot, model, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    session = Session()
    predict_page = PredictPage(session)
    qtbot.addWidget(predict_page)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(model.model_file), ""))
    predict_page.choose_model()
    assert predict_page.model_path == model.model_file
    assert session.model_file == model.model_file and session.run_dir == model.run_dir  # Evaluate, Export
    predict_page.shutdown()


def test_a_folder_added_again_is_not_listed_twice_and_selected_rows_can_be_removed(page, qtbot, tmp_path):
    from PySide6.QtCore import QItemSelectionModel

    said = []
    page.session.statusMessage.connect(said.append)
    folder = tmp_path / "photos"
    images = [make_image(folder / f"img{i}.jpg", colour, seed=i)
              for i, colour in enumerate([(200, 40, 40), (40, 180, 60), (40, 60, 200)])]
    (folder / "notes.txt").write_text("not a photo")
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([folder, images[0]])  # the file is in the folder too: once
    assert said[-1] == "Classified 3 images; 1 file could not be read (see Problem)."
    assert len(page.rows()) == 4
    make_image(folder / "img9.jpg", (90, 90, 90), seed=9)
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS) as finished:
        page.add_paths([folder])
    assert finished.args == [1] and said[-1] == "Classified 1 image (4 files already in the list)."
    assert sorted(row["path"] for row in page.rows()) == sorted(str(p) for p in [*folder.iterdir()])
    assert not page.remove_button.isEnabled()
    selection = page.table.selectionModel()
    for row in (0, 2):
        selection.select(page.table_model.index(row, 0), QItemSelectionModel.Select | QItemSelectionModel.Rows)
    kept = [row["path"] for i, row in enumerate(page.rows()) if i not in (0, 2)]
    assert page.remove_button.isEnabled()
    page.remove_button.click()
    assert [row["path"] for row in page.rows()] == kept


def test_sorting_by_confidence_and_csv_export(page, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    assert not page.export_button.isEnabled()  # an empty list wrote a CSV of its header alone
    assert not page.clear_button.isEnabled()  # nor is there anything to clear
    paths = [make_image(tmp_path / f"p{i}.jpg", (40 * i, 200 - 40 * i, 90), seed=i) for i in range(4)]
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths(paths)
    assert page.export_button.isEnabled() and page.clear_button.isEnabled()
    page.table.sortByColumn(3, Qt.DescendingOrder)
    confidences = [row["probs"][0] for row in page.rows()]
    assert confidences == sorted(confidences, reverse=True)
    out = tmp_path / "predictions.csv"
    page.export(str(out))
    with open(out, newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0][:3] == ["path", "label1", "prob1"] and len(table) == 5
    assert {row[0] for row in table[1:]} == {str(p) for p in paths}
    said = []
    page.session.statusMessage.connect(said.append)
    chosen = tmp_path / "exports" / "chosen.csv"
    chosen.parent.mkdir()
    offered = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: offered.append(args[2]) or (str(chosen), ""))
    page.choose_export_file()
    assert chosen.is_file() and said[-1] == f"Saved 4 rows to {chosen}."  # the write said nothing
    page.choose_export_file()  # started in the working folder; now home, then the folder last saved to
    assert offered == [str(Path.home() / "predictions.csv"), str(chosen.parent / "predictions.csv")]
    page.clear()
    assert said[-1] == "Cleared the list (4 images)." and not page.export_button.isEnabled()


def test_work_done_while_the_step_is_hidden_is_said_when_it_is_shown_not_over_another_steps_line(page, qtbot,
                                                                                                   tmp_path):
    """A model trained on the Train step classified the listed images again in the background, and its
    "Classified 9 images; 1 file could not be read" took the line where the run's result stood."""
    said = []
    page.session.statusMessage.connect(said.append)
    page.hide()
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([make_image(tmp_path / "one.jpg", (200, 40, 40))])
    assert said == []
    page.show()
    assert said == ["Classified 1 image."]


def test_no_model_asks_for_one(qtbot, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    told = []
    monkeypatch.setattr(QMessageBox, "information", lambda *args: told.append(args[2]))
    empty = PredictPage(Session())
    qtbot.addWidget(empty)
    empty.add_paths(["/anything.jpg"])
    assert told and "model" in told[0] and not empty.running


def test_the_csv_escapes_names_that_a_spreadsheet_would_run(page, qtbot, tmp_path):
    image = make_image(tmp_path / "=HYPERLINK(0).jpg", (200, 40, 40))
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([str(image)])
    row = next(csv.DictReader(page.csv_text().splitlines()))
    assert row["path"] == str(image)  # an absolute path starts with / and stays as it is
    page.table_model.item(0, 0).setData("=HYPERLINK(0).jpg", Qt.UserRole + 2)  # as a relative path would be
    row = next(csv.DictReader(page.csv_text().splitlines()))
    assert row["path"] == "'=HYPERLINK(0).jpg"


def test_an_image_below_the_files_threshold_is_unknown_with_its_closest_class(page, qtbot, model, tmp_path):
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.runs import export_run

    # a file that keeps half of the validation images: a threshold high enough for unfamiliar colours
    strict = export_run(model.run_dir, "pt2", tmp_path / "strict.pt2", keep=0.5).path
    page.session.set_run(model.run_dir, strict)
    threshold = load_model_file(strict).metadata["unknown"]["threshold"]
    colours = [(200, 40, 40), (40, 180, 60), (40, 60, 200)] + [(128, 128, 128), (200, 200, 40), (20, 20, 20),
                                                                (240, 240, 240), (200, 40, 200), (40, 200, 200)]
    images = [make_image(tmp_path / "mixed" / f"img{i}.jpg", colour, seed=i) for i, colour in enumerate(colours)]
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([tmp_path / "mixed"])
    expected = plain_torch_probabilities(strict, images)
    classes = ["blue", "green", "red"]
    texts = {page.table_model.item(row, 1).text(): page.table_model.item(row, 2).text()
             for row in range(page.table_model.rowCount())}
    unknown = 0
    for path, probabilities in zip(images, expected):
        closest, confidence = classes[int(probabilities.argmax())], float(probabilities.max())
        if confidence < threshold:
            unknown += 1
            assert texts[path.name] == f"unknown (closest: {closest})"  # its confidence in the next column
        else:
            assert texts[path.name] == closest
    assert unknown >= 1, "none of the unfamiliar colours fell below the threshold"


def test_the_model_is_named_by_its_run_and_open_starts_in_the_runs_folder(page, model, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from tl_studio.core.run_history import annotate_run

    assert f"of run <b>{model.run_dir.name}</b>" in page.model_label.text()  # not only "model.pt2"
    exported = tmp_path / "shipped" / "flowers.pt2"
    exported.parent.mkdir()
    page.set_model(exported)
    assert "flowers.pt2" in page.model_label.text() and str(exported.parent) in page.model_label.text()
    runs = tmp_path / "runs"  # TL_STUDIO_RUNS_DIR in these tests
    runs.mkdir(exist_ok=True)
    started_in = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: started_in.append(args[2]) or ("", ""))
    page.choose_model()
    assert started_in == [str(runs)]
    named = tmp_path / "named_run"
    (named).mkdir()
    (named / "config.json").write_text("{}")
    annotate_run(named, name="baseline (frozen)")
    page.set_model(named / "model.pt2")
    assert "of run <b>baseline (frozen)</b>" in page.model_label.text()


def test_file_and_model_names_are_shown_as_written(page, qtbot, tmp_path, monkeypatch):
    """A tooltip guesses markup: the image `<b>x&y.jpg` showed as a bold "x&y.jpg", and a model file in a
    folder `<i>shipped` lost its `<i>`; a failure that quotes such a name said it without them."""
    from PySide6.QtWidgets import QMessageBox

    from tests.gui.shown_text import shown

    image = make_image(tmp_path / "<b>x&y.jpg", (200, 40, 40))
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([image])
    assert shown(page.table_model.item(0, 0).toolTip()) == str(image)
    exported = tmp_path / "<i>shipped" / "flowers.pt2"
    page.set_model(exported)
    assert shown(page.model_label.toolTip()) == str(exported)
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warned.append(shown(text)))
    page._on_failed(f"{exported} could not be loaded.")
    assert warned == [f"{exported} could not be loaded."]


def test_the_csv_of_a_two_class_model_has_two_label_columns(page, monkeypatch):
    monkeypatch.setattr(page, "rows", lambda: [{"path": "a.jpg", "labels": ["ants", "bees"], "probs": [0.9, 0.1],
                                                "unknown": False, "error": ""}])
    assert page.csv_text().splitlines() == ["path,label1,prob1,label2,prob2,unknown,error",
                                            "a.jpg,ants,0.900000,bees,0.100000,no,"]


def test_file_names_sort_by_their_numbers_as_a_file_manager_does():
    from tl_studio.gui.pages.predict_page import _name_order

    names = ["img_10.jpg", "IMG_2.jpg", "img_100.jpg", "img_1.jpg", "b.jpg", "a.jpg"]
    assert sorted(names, key=_name_order) == ["a.jpg", "b.jpg", "img_1.jpg", "IMG_2.jpg", "img_10.jpg", "img_100.jpg"]


def test_another_model_classifies_the_listed_images_again(page, qtbot, model, tmp_path):
    """The rows were the old model's answers: after another model is opened (or the same file is
    written again) they must be the new one's, not left standing under its name and exported as its."""
    import json

    from tests.model_file_helpers import _rewrite_zip

    folder = tmp_path / "new"
    for i, colour in enumerate([(200, 40, 40), (40, 180, 60), (40, 60, 200)]):
        make_image(folder / f"img{i}.jpg", colour, seed=i)
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([folder])
    first = {row["path"]: row for row in page.rows()}
    assert {label for row in first.values() for label in row["labels"]} == {"red", "green", "blue"}

    def renamed(name, data):  # the same network, its classes named otherwise: its answers tell the models apart
        if not name.endswith("tl_studio.json"):
            return data
        info = json.loads(data)
        info["classes"] = [f"{c}-2" for c in info["classes"]]
        return json.dumps(info).encode()

    other = _rewrite_zip(model.model_file, tmp_path / "other.pt2", renamed)
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS) as finished:
        page.session.set_run(None, other)
    assert finished.args == [3] and page.model_path == other
    again = {row["path"]: row for row in page.rows()}
    assert set(again) == set(first)
    for path, row in again.items():
        assert row["labels"] == [f"{label}-2" for label in first[path]["labels"]]
        np.testing.assert_allclose(row["probs"], first[path]["probs"], atol=1e-6)
    assert "-2," in page.csv_text() and "red," not in page.csv_text()


def test_the_step_answers_as_tl_studio_predict_does_to_the_last_digit(page, qtbot, model, tmp_path, capsys):
    """One model file, one answer: the window and the command line classify in the same batches with the
    same decoding (a large JPEG decodes at a reduced size in both), and write the same CSV."""
    from PIL import Image

    from tl_studio.cli.main import main

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # large enough for the reduced JPEG decode; blocky detail that resampling changes
        blocks = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        Image.fromarray(blocks).resize((960, 720), Image.NEAREST).save(folder / f"big{i}.jpg", quality=90)
    make_image(folder / "small.png", (200, 40, 40))
    with qtbot.waitSignal(page.predictionsFinished, timeout=TIMEOUT_MS):
        page.add_paths([folder])
    csv_file = tmp_path / "cli.csv"
    assert main(["predict", str(model.model_file), str(folder), "--csv", str(csv_file), "--workers", "0"]) == 0
    capsys.readouterr()
    # the same file, byte for byte: the command's lines ended "\r\n", the window's "\n"
    # (both here on one torch thread: a sum split over other threads can move a sixth decimal)
    assert page.csv_text().count("\n") == 5 and page.csv_text().encode() == csv_file.read_bytes()


def test_progress_gives_the_rate_and_time_left_and_cancel_says_how_far_it_got(page, qtbot, tmp_path):
    import re

    folder = tmp_path / "many"
    for i in range(70):
        make_image(folder / f"img{i:02d}.jpg", (200, 40, 40), seed=i)
    with qtbot.waitSignal(page.table_model.rowsInserted, timeout=TIMEOUT_MS):
        page.add_paths([folder])
    assert re.fullmatch(r"Classifying: \d+/70 · \d+\.\d img/s · \d\d:\d\d left", page.progress.format()), \
        page.progress.format()
    with qtbot.waitSignal(page.session.statusMessage, timeout=TIMEOUT_MS,
                          check_params_cb=lambda message: "cancelled" in message) as said:
        page.cancel()
    done = page.table_model.rowCount()
    assert said.args[0] == f"Prediction cancelled after {done} of 70 images; the rows listed stay." and done < 70


def test_a_two_class_model_shows_no_third_guess_before_its_first_answer(page, model, tmp_path):
    """The columns of guesses a model has follow its file as soon as it is opened: a two-class model's
    empty third-guess columns stood until an image was classified."""
    import json
    import zipfile

    from tl_studio.core.model_file import peek_class_count

    third = [6, 7]  # image, name, then a label and a probability per guess: the third guess
    assert peek_class_count(model.model_file) == 3  # the real archive's layout, read without loading it
    assert not any(page.table.isColumnHidden(column) for column in third)
    two = tmp_path / "ants-bees.pt2"
    with zipfile.ZipFile(two, "w") as archive:  # only its metadata is read before it is loaded
        archive.writestr("ants-bees/extra/tl_studio.json", json.dumps({"classes": ["ants", "bees"]}))
    page.set_model(two)
    assert all(page.table.isColumnHidden(column) for column in third)
    page.set_model(model.model_file)
    assert not any(page.table.isColumnHidden(column) for column in third)
    assert peek_class_count(tmp_path / "missing.pt2") is None


def test_the_image_dialogs_open_near_the_data_never_where_the_app_was_started(qtbot, monkeypatch, tmp_path):
    from pathlib import Path

    from PySide6.QtWidgets import QFileDialog

    from tl_studio.core.data import scan_dataset
    from tests.helpers import make_image_folder

    opened, answer = [], {"folder": "", "files": []}
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda parent, title, start: opened.append(start)
                        or answer["folder"])
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda parent, title, start, filters: opened.append(start)
                        or (answer["files"], ""))
    page = PredictPage(Session())
    qtbot.addWidget(page)
    monkeypatch.setattr(page, "add_paths", lambda paths: None)  # only where the dialogs open is looked at
    page.choose_folder()
    assert opened == [str(Path.home())]  # no data set yet
    data = make_image_folder(tmp_path / "data", per_class=2)
    page.session.set_dataset(scan_dataset(data))
    page.choose_images()
    assert opened[-1] == str(data)  # images to classify are often beside the ones trained on
    answer["folder"] = str(tmp_path / "new photos" / "monday")
    page.choose_folder()
    page.choose_images()
    assert opened[-1] == str(tmp_path / "new photos")  # beside the folder chosen last
