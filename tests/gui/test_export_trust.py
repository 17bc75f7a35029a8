"""The Export step's production choices on a real trained run: the "Keep known images" share reaches the
written file's unknown rule, the int8 ONNX export writes a checked file or shows the gate's sentence, and
"Compare formats" fills the table from the format report with progress, and stops on Cancel."""

from __future__ import annotations

import time

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.evaluation_helpers import tiny_model
from tl_studio.core.errors import Cancelled
from tl_studio.core.format_report import FormatFigures, FormatReport
from tl_studio.core.model_file import load_model_file
from tl_studio.core.quantize import Int8CheckError
from tl_studio.gui.pages import export_page as export_module
from tl_studio.gui.pages.export_page import ExportPage
from tl_studio.gui.session import Session

TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture
def page(qtbot, model, monkeypatch):
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warnings.append(text))
    session = Session()
    session.set_run(model.run_dir, model.model_file)
    export = ExportPage(session)
    export.warnings = warnings
    qtbot.addWidget(export)
    yield export
    export.shutdown()


def _wait_export(qtbot, page):
    qtbot.waitUntil(lambda: not page.task.running, timeout=TIMEOUT_MS)


def test_the_keep_share_is_the_written_files_unknown_rule(page, qtbot, tmp_path):
    page.choose_format("pt2")
    page.path_edit.setText(str(tmp_path / "kept.pt2"))
    page.keep_box.setValue(0.8)
    with qtbot.waitSignal(page.exported, timeout=TIMEOUT_MS):
        page.export_button.click()
    unknown = load_model_file(tmp_path / "kept.pt2").metadata["unknown"]
    assert unknown["keep"] == pytest.approx(0.8)
    assert 'info.get("unknown")' in page.snippet.toPlainText() and "kept.pt2" in page.snippet.toPlainText()


def test_an_int8_export_is_written_checked_or_refused_in_one_sentence(page, qtbot, tmp_path):
    page.choose_format("onnx-int8")
    out = tmp_path / "model.int8.onnx"
    page.path_edit.setText(str(out))
    page.export_button.click()
    _wait_export(qtbot, page)
    text = page.result.text()
    if out.exists():  # the gate passed: the file says it is int8 and what its check found
        metadata = load_model_file(out).metadata
        assert metadata["quantization"]["check"]["agreement"] >= 0.99
        assert text.startswith(f"Wrote {out} (") and "int8 check passed" in text and not page.warnings
        assert "onnxruntime" in page.snippet.toPlainText()
    else:
        assert "int8 check FAILED" in text and page.warnings == [text]


def test_a_failed_int8_gate_shows_its_sentence_and_writes_nothing(page, qtbot, tmp_path, monkeypatch):
    sentence = ("int8 check FAILED on 9 validation images: top-1 agreement with the full-precision model 77.8% "
                "(at least 99%). The int8 file was not written; ship the full-precision ONNX file.")

    def refuse(run_dir, out, *, overwrite, keep, cancelled):
        assert keep == pytest.approx(0.95)
        raise Int8CheckError(sentence)

    monkeypatch.setattr(export_module, "export_int8_in_child_process", refuse)
    page.choose_format("onnx-int8")
    page.path_edit.setText(str(tmp_path / "model.int8.onnx"))
    page.export_button.click()
    _wait_export(qtbot, page)
    assert page.result.text() == sentence and page.warnings == [sentence]
    assert page.export_button.isEnabled() and not (tmp_path / "model.int8.onnx").exists()


def _figures(fmt, error=""):
    if error:
        return FormatFigures(fmt, 0, float("nan"), float("nan"), float("nan"), float("nan"), 0, error)
    return FormatFigures(fmt, 3_000_000, 12.34, 456.0, 0.9, 0.975, 40)


def test_compare_formats_shows_the_report_as_a_table(page, qtbot, monkeypatch):
    seen = []

    def measure(run_dir, report, cancelled):
        seen.append(run_dir)
        for step, fmt in enumerate(("pt2", "onnx", "onnx-int8", "torchscript")):
            report((f"Writing and measuring {fmt}", step, 4))
        return FormatReport(str(run_dir), "CPU (test, 1 thread)",
                            (_figures("pt2"), _figures("onnx"), _figures("onnx-int8", "int8 check FAILED on 9 images."),
                             _figures("torchscript")))

    monkeypatch.setattr(export_module, "measure_formats_in_child_process", measure)
    page.compare_button.click()
    qtbot.waitUntil(lambda: not page.comparing, timeout=TIMEOUT_MS)
    table = page.format_table
    assert seen == [page.session.run_dir] and table.rowCount() == 4
    assert [table.cell_text(0, c) for c in range(6)] == ["PyTorch program (.pt2)", "3.0", "12.3", "456", "90.0%",
                                                         "97.5%"]
    assert table.cell_text(2, 0) == "int8 ONNX" and table.cell_text(2, 1) == "int8 check FAILED on 9 images."
    assert table.columnSpan(2, 1) == 5
    caption = page.compare_result.text()
    assert "CPU (test, 1 thread)" in caption and "40 validation images" in caption
    assert page.compare_button.isEnabled() and page.compare_progress.isHidden()


def test_compare_formats_shows_progress_and_cancels(page, qtbot, monkeypatch):
    def measure(run_dir, report, cancelled):
        report(("Writing and measuring pt2", 0, 4))
        deadline = time.monotonic() + 60
        while not cancelled():  # this is the task's thread: the GUI thread stays free
            if time.monotonic() > deadline:
                raise AssertionError("never cancelled")
            time.sleep(0.01)
        raise Cancelled()

    monkeypatch.setattr(export_module, "measure_formats_in_child_process", measure)
    page.compare_button.click()
    qtbot.waitUntil(lambda: page.compare_progress.format() == "Writing and measuring pt2 (0/4)", timeout=TIMEOUT_MS)
    assert not page.compare_progress.isHidden() and not page.compare_cancel.isHidden()
    assert not page.compare_button.isEnabled()
    page.compare_cancel.click()
    qtbot.waitUntil(lambda: not page.comparing, timeout=TIMEOUT_MS)
    assert page.compare_result.text() == "Format comparison cancelled." and page.format_table.rowCount() == 0


def test_a_real_comparison_stops_in_its_child_process_on_cancel(page, qtbot):
    page.compare_button.click()
    qtbot.waitUntil(lambda: "Writing and measuring" in page.compare_progress.format(), timeout=TIMEOUT_MS)
    started = time.monotonic()
    page.compare_cancel.click()
    qtbot.waitUntil(lambda: not page.comparing, timeout=TIMEOUT_MS)
    assert page.compare_result.text() == "Format comparison cancelled."
    assert time.monotonic() - started < 60
