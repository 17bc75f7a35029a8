"""The Export step: its formats come from the one registry, and switching the format keeps the folder
and name the user typed, changing only the suffix."""

from __future__ import annotations

import pytest

from tl_studio.core.export_formats import EXPORT_FORMATS
from tl_studio.gui.pages.export_page import INT8_LABEL, ExportPage
from tl_studio.gui.session import Session


def _choose(page, fmt):
    for button in page.format_buttons.buttons():
        if button.property("format") == fmt:
            button.setChecked(True)


def _page_whose_export_runs_on(qtbot, monkeypatch, run, fmt):
    """The Export step of ``run`` with ``fmt`` chosen; an export starts a stand-in task that runs until the
    test says otherwise (its ``running``). Returns the session, the page and that task."""
    from types import SimpleNamespace

    session = Session()
    session.set_run(run, None)
    page = ExportPage(session)
    qtbot.addWidget(page)
    _choose(page, fmt)
    signal = SimpleNamespace(connect=lambda slot: None)
    task = SimpleNamespace(succeeded=signal, failed=signal, cancelled=signal, running=True)
    monkeypatch.setattr(page.tasks, "start", lambda work, name: task)
    return session, page, task


def test_switching_the_format_keeps_the_typed_folder_and_name(qtbot, tmp_path):
    session = Session()
    session.set_run(tmp_path / "run", None)
    page = ExportPage(session)
    qtbot.addWidget(page)
    assert [b.text() for b in page.format_buttons.buttons()] == [f.label for f in EXPORT_FORMATS.values()] + [INT8_LABEL]
    assert page.path_edit.text() == str(tmp_path / "run" / "model.pt2")
    typed = tmp_path / "deliveries" / "ants-v3.pt2"
    page.path_edit.setText(str(typed))
    _choose(page, "onnx")
    assert page.path_edit.text() == str(tmp_path / "deliveries" / "ants-v3.onnx")
    assert "ants-v3.onnx" in page.snippet.toPlainText() and "onnxruntime" in page.snippet.toPlainText()
    _choose(page, "torchscript")
    assert page.path_edit.text() == str(tmp_path / "deliveries" / "ants-v3.ts")
    # the snippet names the file the export would write, as it is typed (it kept the one suggested before)
    page.path_edit.setText(str(tmp_path / "elsewhere" / "typed.ts"))
    assert f"{tmp_path / 'elsewhere' / 'typed.ts'}" in page.snippet.toPlainText()
    page.path_edit.setText("bare.ts")  # a bare name goes into the run folder
    assert f"{tmp_path / 'run' / 'bare.ts'}" in page.snippet.toPlainText()
    page.path_edit.setText(str(tmp_path / "deliveries" / "ants-v3.ts"))
    page.path_edit.setText(str(tmp_path / "deliveries" / "no-suffix"))
    _choose(page, "pt2")
    assert page.path_edit.text() == str(tmp_path / "deliveries" / "no-suffix.pt2")
    page.shutdown()


def test_int8_onnx_is_a_choice_with_its_two_dot_suffix(qtbot, tmp_path):
    session = Session()
    session.set_run(tmp_path / "run", None)
    page = ExportPage(session)
    qtbot.addWidget(page)
    page.path_edit.setText("")
    _choose(page, "onnx-int8")
    assert page.path_edit.text() == str(tmp_path / "run" / "model.int8.onnx")
    assert "onnxruntime" in page.snippet.toPlainText() and "model.int8.onnx" in page.snippet.toPlainText()
    page.path_edit.setText(str(tmp_path / "deliveries" / "ants-v3.int8.onnx"))
    _choose(page, "onnx")
    assert page.path_edit.text() == str(tmp_path / "deliveries" / "ants-v3.onnx")
    _choose(page, "onnx-int8")
    assert page.path_edit.text() == str(tmp_path / "deliveries" / "ants-v3.int8.onnx")
    _choose(page, "pt2")
    assert page.path_edit.text() == str(tmp_path / "deliveries" / "ants-v3.pt2")
    keep = page.keep_box
    assert (keep.minimum(), keep.maximum(), keep.value()) == (0.50, 0.99, 0.95) and "unknown" in keep.toolTip()
    page.shutdown()


def test_a_bare_file_name_is_written_into_the_run_folder_and_another_run_clears_the_last_result(qtbot, tmp_path,
                                                                                                monkeypatch):
    from types import SimpleNamespace

    session = Session()
    session.set_run(tmp_path / "run", None)
    page = ExportPage(session)
    qtbot.addWidget(page)
    _choose(page, "onnx")
    page.path_edit.setText("relative.onnx")  # typed: not the folder the app happened to start in
    signal = SimpleNamespace(connect=lambda slot: None)
    started = []
    monkeypatch.setattr(page.tasks, "start", lambda work, name: started.append(name) or SimpleNamespace(
        succeeded=signal, failed=signal, cancelled=signal, running=True))
    page.export()
    assert started == ["export"] and page.path_edit.text() == str(tmp_path / "run" / "relative.onnx")
    assert page.export_progress.isVisibleTo(page)  # something moves while the export works
    page._failed("Export cancelled.", warn=False)
    assert not page.export_progress.isVisibleTo(page)
    (tmp_path / "deliveries").mkdir()  # a folder typed as where to write: the file goes into it, no question
    page.task = None
    page.path_edit.setText(str(tmp_path / "deliveries"))
    monkeypatch.setattr("PySide6.QtWidgets.QMessageBox.question", lambda *args: pytest.fail(f"asked {args}"))
    page.export()
    assert started == ["export", "export"] and page.path_edit.text() == str(tmp_path / "deliveries" / "model.onnx")
    page._failed("Export cancelled.", warn=False)
    page.result.setText(f"Wrote {tmp_path / 'run' / 'relative.onnx'} (13.1 MB) in 2.0 s.")
    page.task = None  # the export ended
    session.set_run(tmp_path / "another run", None)
    assert page.result.text() == "" and page.path_edit.text() == str(tmp_path / "another run" / "model.onnx")
    page.shutdown()


def test_the_choices_stay_as_they_were_while_a_file_is_written(qtbot, tmp_path, monkeypatch):
    """int8 ONNX picked while a TorchScript export ran left the step naming model.int8.onnx and int8
    ONNX over the model.ts just written, with the TorchScript snippet under them."""
    session, page, _ = _page_whose_export_runs_on(qtbot, monkeypatch, tmp_path / "run", "torchscript")
    said = []
    session.statusMessage.connect(said.append)
    page.export()
    choices = (page.format_box, page.path_edit, page.browse_button, page.keep_box, page.export_button)
    assert not any(widget.isEnabled() for widget in choices)
    assert said[-1] == "Exporting to model.ts…"  # not "Exporting torchscript..."
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *args: pytest.fail("asked where"))
    page.export_as()  # File > Export Model… meanwhile: the path box is not changed under the export
    page._failed("Export cancelled.", warn=False)
    assert all(widget.isEnabled() for widget in choices)
    page.task = None
    page.shutdown()


def test_a_run_that_finishes_during_an_export_takes_the_step_over_once_the_export_ends(qtbot, tmp_path,
                                                                                         monkeypatch):
    """Run B finished while run A's ONNX file was written: "Exporting to model.onnx…" went, the path box
    named B's file, and the step never said whether A's file passed its check."""
    from types import SimpleNamespace

    session, page, task = _page_whose_export_runs_on(qtbot, monkeypatch, tmp_path / "A", "onnx")
    page.export()
    session.set_run(tmp_path / "B", tmp_path / "B" / "model.pt2")  # B's run ends meanwhile
    assert page.result.text() == "Exporting to model.onnx and checking it against the app…"
    assert page.path_edit.text() == str(tmp_path / "A" / "model.onnx") and "A." in page.run_label.text()

    written = tmp_path / "A" / "model.onnx"
    written.parent.mkdir()
    written.write_bytes(b"x" * 1000)
    task.running = False
    check = SimpleNamespace(describe=lambda: "Export check passed: on 3 images top-1 is identical.")
    page._exported(SimpleNamespace(path=written, check=check), "onnx")
    assert page.result.text().startswith(f"Wrote {written} ") and "check passed" in page.result.text()
    assert page.path_edit.text() == str(tmp_path / "B" / "model.onnx") and "B." in page.run_label.text()
    assert page.export_button.isEnabled()
    page.shutdown()


def test_a_name_of_another_format_is_refused_before_replace_is_asked_and_its_sentence_goes_with_it(
        qtbot, tmp_path, monkeypatch):
    """TorchScript over the run's model.pt2: "Replace it?", then, after Yes, "model.pt2 does not end in
    .ts"; the sentence then stood under the button after the path was changed."""
    session = Session()
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt2").write_bytes(b"the run's model")
    session.set_run(run, run / "model.pt2")
    page = ExportPage(session)
    qtbot.addWidget(page)
    _choose(page, "torchscript")
    page.path_edit.setText(str(run / "model.pt2"))
    monkeypatch.setattr("PySide6.QtWidgets.QMessageBox.question", lambda *args: pytest.fail(f"asked {args}"))
    monkeypatch.setattr(page.tasks, "start", lambda *args: pytest.fail("exported"))
    page.export()
    assert page.result.text().startswith("model.pt2 does not end in .ts, and a model file is opened by its suffix")
    assert (run / "model.pt2").read_bytes() == b"the run's model"
    _choose(page, "onnx")  # the path follows the format: the sentence was about the other one
    assert page.result.text() == "" and page.path_edit.text() == str(run / "model.onnx")
    page.shutdown()


def test_writing_the_runs_model_file_with_another_keep_asks_first(qtbot, tmp_path, monkeypatch):
    import json
    import zipfile
    from types import SimpleNamespace

    from PySide6.QtWidgets import QMessageBox

    run = tmp_path / "run"
    run.mkdir()
    with zipfile.ZipFile(run / "model.pt2", "w") as archive:  # only the metadata the question reads
        archive.writestr("model/extra/tl_studio.json", json.dumps({"unknown": {"threshold": 0.7, "keep": 0.95}}))
    session = Session()
    session.set_run(run, run / "model.pt2")
    page = ExportPage(session)
    qtbot.addWidget(page)
    assert page.path_edit.text() == str(run / "model.pt2")
    signal = SimpleNamespace(connect=lambda slot: None)
    started, asked = [], []
    monkeypatch.setattr(page.tasks, "start", lambda work, name: started.append(name) or SimpleNamespace(
        succeeded=signal, failed=signal, cancelled=signal, running=False))
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text: asked.append(text) or QMessageBox.No)
    page.keep_box.setValue(0.95)
    page.export()  # the same best epoch and share again: no question
    assert started == ["export"] and asked == []
    page.keep_box.setValue(0.5)
    page.export()
    assert started == ["export"] and len(asked) == 1
    assert "this run's model file, and it keeps 95% of the validation images known" in asked[0]
    page.task = None
    page.shutdown()


def test_the_int8_snippet_gives_the_apps_figures_as_every_onnx_snippet_does():
    """It said "within about a point of what the app shows" from when the app batched an int8 file on
    canvases; the app now runs it one image at a time, decoded as the snippet decodes."""
    from pathlib import Path

    from tl_studio.gui.pages.export_page import INT8, snippet_for

    int8 = snippet_for(INT8, Path("model.int8.onnx"))
    assert "# as the app and `tl-studio predict` show it" in int8 and "within about a point" not in int8


@pytest.mark.parametrize("chosen", ["", "deliveries/ants"])
def test_export_model_from_the_menu_asks_where_first(qtbot, tmp_path, monkeypatch, chosen):
    """File > Export Model… (Ctrl+E) exported at once to whatever the path box held; it asks where, and a
    cancelled dialog exports nothing."""
    from tl_studio.gui.pages import export_page

    session = Session()
    session.set_run(tmp_path / "run", None)
    page = ExportPage(session)
    qtbot.addWidget(page)
    asked, exported = [], []
    target = str(tmp_path / chosen) if chosen else ""
    monkeypatch.setattr(export_page.QFileDialog, "getSaveFileName",
                        lambda *args: asked.append(args[2]) or (target, ""))
    monkeypatch.setattr(page, "export", lambda: exported.append(page.path_edit.text()))
    page.export_as()
    assert asked == [str(tmp_path / "run" / "model.pt2")]
    assert exported == ([target + ".pt2"] if chosen else [])
    page.shutdown()
