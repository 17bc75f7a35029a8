"""The Export step: write model.pt2 (default), ONNX, int8 ONNX or TorchScript with the share of known
images the "unknown" answer keeps, see the export check, copy a snippet that runs the file with plain
PyTorch or ONNX Runtime, and compare the formats' size, speed and accuracy on this machine."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QButtonGroup, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton, QRadioButton,
                               QScrollArea, QVBoxLayout, QWidget)

from tl_studio.core import run_folder
from tl_studio.core.errors import UserError
from tl_studio.core.export_formats import EXPORT_FORMATS, check_suffix_fits
from tl_studio.core.wording import MB, megabytes
from tl_studio.gui.format_table import FormatTable
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.tasks import TaskRunner

# int8 ONNX is a run-level export (quantised from the run's ONNX file and checked against it on the
# validation split, core/quantize.py), not an entry of the format registry: the page handles it itself.
INT8 = "onnx-int8"
INT8_SUFFIX = ".int8.onnx"
# Not "faster": on CPUs without fast int8 arithmetic it is not (Compare formats measures it on this one).
INT8_LABEL = "int8 ONNX (3-4x smaller; checked against the full-precision file)"
NO_RUN = "Train a model first, or open a run on the Runs step; its best epoch is exported."
DEFAULT_KEEP = 0.95  # core/unknown.py's default; the core is not imported here (it imports numpy)
KEEP_TOOLTIP = ("The share of the validation images the model still answers; the rest, the least sure, it "
                "answers \"unknown\". The file's unknown threshold is chosen so: higher keeps more known "
                "images but rejects fewer unfamiliar ones.")


def snippet_for(fmt: str, path: Path) -> str:
    # an int8 file runs as any ONNX file; the app classifies it one image at a time, decoded as the snippet
    # decodes (inference.QUANTIZED_ONE_AT_A_TIME), so the snippet's figures are the app's too
    return EXPORT_FORMATS["onnx" if fmt == INT8 else fmt].snippet_for(path)


def suffix_of(fmt: str) -> str:
    return INT8_SUFFIX if fmt == INT8 else EXPORT_FORMATS[fmt].suffix


def with_format_suffix(path: Path, fmt: str) -> Path:
    """The same folder and name with the format's suffix in place of a known one (model.int8.onnx has two
    dots), or added when the name has none of them."""
    known = sorted({suffix_of(f) for f in (*EXPORT_FORMATS, INT8)}, key=len, reverse=True)
    name = path.name
    for suffix in known:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return path.with_name(name + suffix_of(fmt))


def export_int8_in_child_process(run_dir: Path, out: Path, *, overwrite: bool, keep: float, cancelled):
    """``core.quantize.export_int8_run`` in a child process (it writes an ONNX file first, which holds the
    GIL for long stretches); its Int8CheckError comes back as one sentence."""
    from tl_studio.core.quantize import export_int8_run
    from tl_studio.gui.processes import call_in_child_process

    return call_in_child_process(export_int8_run, Path(run_dir), Path(out), overwrite=overwrite, keep=keep,
                                 cancelled=cancelled)


def measure_formats_in_child_process(run_dir: Path, report, cancelled):
    """``core.format_report.measure_formats`` in a child process: it exports every format, and the figures
    are fairer without the window's threads competing in the same process."""
    from tl_studio.core.format_report import measure_formats
    from tl_studio.gui.processes import call_in_child_process

    return call_in_child_process(measure_formats, Path(run_dir), report=report, cancelled=cancelled)


class ExportPage(QWidget):
    exported = Signal(object)  # ExportReport

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.tasks = TaskRunner(self)
        self.task = None
        self.compare_task = None
        self.last_report = None
        self.export_started = 0.0
        self.format_report = None
        self._run_changed_meanwhile = False
        self._failure_shown = False  # the result line holds why the last export failed
        self._build()
        session.runDirChanged.connect(self._run_changed)
        self._suggest_path()

    def _build(self) -> None:
        self.run_label = QLabel(NO_RUN)
        self.run_label.setWordWrap(True)
        self.run_label.setTextFormat(Qt.PlainText)  # the run folder's name, never markup
        self.format_buttons = QButtonGroup(self)
        format_box = self.format_box = QGroupBox("Format")
        format_layout = QVBoxLayout(format_box)
        for index, export_format in enumerate(EXPORT_FORMATS.values()):
            button = QRadioButton(export_format.label)
            button.setProperty("format", export_format.name)
            self.format_buttons.addButton(button, index)
            format_layout.addWidget(button)
        int8_button = QRadioButton(INT8_LABEL)
        int8_button.setProperty("format", INT8)
        int8_button.setToolTip("Quantised to 8-bit integers on the training images, then checked on the validation "
                               "images: it is written only if it agrees with the full-precision model on at least "
                               "99 % of them and loses at most 1 point of accuracy")
        self.format_buttons.addButton(int8_button, len(EXPORT_FORMATS))
        format_layout.addWidget(int8_button)
        self.format_buttons.button(0).setChecked(True)
        self.format_buttons.idToggled.connect(self._format_toggled)
        self.path_edit = QLineEdit()
        # the snippet names the file this export writes: it followed the box only after an export had worked
        self.path_edit.textChanged.connect(self._show_snippet)
        self.path_edit.textEdited.connect(self._forget_a_failure)
        browse = self.browse_button = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.keep_box = QDoubleSpinBox()
        self.keep_box.setObjectName("keepBox")
        self.keep_box.setRange(0.50, 0.99)
        self.keep_box.setSingleStep(0.01)
        self.keep_box.setDecimals(2)
        self.keep_box.setValue(DEFAULT_KEEP)
        self.keep_box.setToolTip(KEEP_TOOLTIP)
        keep_label = QLabel("Keep known images")
        keep_label.setToolTip(KEEP_TOOLTIP)
        form = QFormLayout()
        form.addRow("Save as", path_row)
        keep_row = QHBoxLayout()
        keep_row.addWidget(self.keep_box)
        keep_row.addWidget(QLabel("of the validation images answered; the rest, the least sure, \"unknown\""))
        keep_row.addStretch(1)
        form.addRow(keep_label, keep_row)
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("exportButton")
        self.export_button.setToolTip("Write the file and check it answers like the app (Ctrl+E)")
        self.export_button.clicked.connect(self.export)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setTextFormat(Qt.PlainText)  # the file written and its path, never markup
        # moving while an export works (10-40 s on a CPU; an int8 one quantises and checks too): text alone
        # read as a stuck window
        self.export_progress = QProgressBar()
        self.export_progress.setRange(0, 0)
        self.export_progress.setTextVisible(False)
        self.export_progress.hide()
        self.snippet = QPlainTextEdit(readOnly=True)
        self.snippet.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.snippet.setPlaceholderText("After the export, a snippet that loads and runs the file appears here.")
        copy = QPushButton("Copy snippet")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.snippet.toPlainText()))
        # The step scrolls rather than holding the window taller than a laptop screen: its choices, the
        # snippet and the comparison table together need about 650 px, which made the whole window grow
        # past 1000x620 (a QStackedWidget is as large as its largest page) whichever step was shown.
        content = QWidget()
        scroll = QScrollArea()
        scroll.setObjectName("exportScroll")
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.addWidget(self.run_label)
        layout.addWidget(format_box)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.result)
        layout.addWidget(self.export_progress)
        layout.addWidget(QLabel("Use it without TL Studio:"))
        layout.addWidget(self.snippet, 1)
        layout.addWidget(copy)
        layout.addWidget(self._comparison_box(), 1)

    def _comparison_box(self) -> QGroupBox:
        box = QGroupBox("Which file to ship?")
        self.compare_button = QPushButton("Compare formats")
        self.compare_button.setObjectName("compareButton")
        self.compare_button.setToolTip("Write the run's model in every format and measure its size, speed on this "
                                       "machine and accuracy on the validation images (a few minutes)")
        self.compare_button.clicked.connect(self.compare_formats)
        self.compare_cancel = QPushButton("Cancel")
        self.compare_cancel.hide()
        self.compare_cancel.clicked.connect(self.cancel_comparison)
        self.compare_progress = QProgressBar()
        self.compare_progress.hide()
        # the hint holds the row's width while no comparison runs, the progress bar while one does
        self.compare_hint = QLabel("Each format's size, speed on this machine and accuracy on the validation "
                                   "images (a few minutes).")
        self.compare_hint.setWordWrap(True)  # it would hold the page (and so the window) 600 px wide
        row = QHBoxLayout()
        row.addWidget(self.compare_button)
        row.addWidget(self.compare_hint, 1)
        row.addWidget(self.compare_progress, 1)
        row.addWidget(self.compare_cancel)
        self.format_table = FormatTable()
        self.compare_result = QLabel()
        self.compare_result.setWordWrap(True)
        self.compare_result.setTextFormat(Qt.PlainText)  # a failure may quote a path
        layout = QVBoxLayout(box)
        layout.addLayout(row)
        layout.addWidget(self.format_table, 1)
        layout.addWidget(self.compare_result)
        return box

    def shutdown(self) -> None:
        self.tasks.shutdown()

    def current_format(self) -> tuple[str, str]:
        button = self.format_buttons.checkedButton()
        fmt = button.property("format")
        return fmt, suffix_of(fmt)

    def choose_format(self, fmt: str) -> None:
        for button in self.format_buttons.buttons():
            if button.property("format") == fmt:
                button.setChecked(True)

    def _format_toggled(self, _id: int, checked: bool) -> None:
        """Keeps the folder and name the user typed; only the suffix follows the format."""
        if not checked:
            return
        self._forget_a_failure()
        fmt, ext = self.current_format()
        typed = self.path_edit.text().strip()
        if not typed:
            self._suggest_path()
            return
        path = with_format_suffix(Path(typed), fmt)
        self.path_edit.setText(str(path))
        self._show_snippet()

    def _run_changed(self, _run_dir) -> None:
        if self.task is not None and self.task.running:
            # a run that finished during an export took the step over: "Exporting to model.onnx…" went and the
            # path box named the new run's file while the other run's was written. The export ends first.
            self._run_changed_meanwhile = True
            return
        if self.result.text():  # the last export was another run's: its outcome goes, here and below
            self.session.say("", "Export")
        self.result.setText("")
        self.last_report = None
        self._suggest_path()

    def _suggest_path(self) -> None:
        run_dir = self.session.run_dir
        self.export_button.setEnabled(run_dir is not None)
        self.compare_button.setEnabled(run_dir is not None and not self.comparing)
        if run_dir is None:  # none yet, or its folder was deleted on the Runs step
            self.run_label.setText(NO_RUN)
            self.path_edit.clear()
            self.snippet.clear()
            return
        self.run_label.setText(f"Exporting the best epoch of {run_dir}.")
        fmt, ext = self.current_format()
        self.path_edit.setText(str(Path(run_dir) / f"model{ext}"))
        self._show_snippet()

    def _show_snippet(self) -> None:
        """The snippet for the file the Export button would write (a bare name goes into the run folder)."""
        typed = self.path_edit.text().strip()
        if self.session.run_dir is None or not typed:
            return
        fmt, _ = self.current_format()
        self.snippet.setPlainText(snippet_for(fmt, Path(self.session.run_dir) / Path(typed).expanduser()))

    def _browse(self) -> bool:
        """The save dialog for the path box; whether a path was chosen."""
        fmt, ext = self.current_format()
        dialog_filter = "int8 ONNX model (*.onnx)" if fmt == INT8 else EXPORT_FORMATS[fmt].dialog_filter
        path, _ = QFileDialog.getSaveFileName(self, "Export model", self.path_edit.text(), dialog_filter)
        if path:
            self.path_edit.setText(path if path.endswith(ext) else path + ext)
        return bool(path)

    def export_as(self) -> None:
        """File > Export Model… (Ctrl+E): where to, in the save dialog, then the export; it exported at once
        to whatever the path box held, which the menu's "…" does not promise."""
        exporting = self.task is not None and self.task.running  # its path box is not to change under it
        if self.session.run_dir is not None and not exporting and self._browse():
            self.export()

    def export(self) -> None:
        from tl_studio.gui.processes import export_in_child_process

        if self.session.run_dir is None or (self.task is not None and self.task.running):
            return
        fmt, ext = self.current_format()
        run_dir = self.session.run_dir
        # a bare name typed into the box goes into the run folder, not the folder the app was started from
        out = Path(run_dir) / Path(self.path_edit.text().strip()).expanduser()
        if out.is_dir():  # a folder chosen as where to write: the file goes into it, never "replace the folder?"
            out = out / f"model{ext}"
        self.path_edit.setText(str(out))
        try:  # before "Replace it?": the export refused model.pt2 as a TorchScript file after the user said Yes
            check_suffix_fits(out, EXPORT_FORMATS["onnx" if fmt == INT8 else fmt])
        except UserError as error:
            self._show_failure(str(error))
            self.session.say("Export failed: the file name does not fit the format.", "Export")
            return
        keep = round(self.keep_box.value(), 2)
        own_model_file = fmt == "pt2" and out == Path(run_dir) / run_folder.MODEL_FILE  # the same best epoch again
        overwrite = own_model_file
        change = run_folder.RunFolder(Path(run_dir)).replacing_model_file_changes_it(keep) if own_model_file else None
        if out.exists() and (change or not own_model_file):
            question = f"{change}. Replace it?" if change else f"{out} already exists. Replace it?"
            if QMessageBox.question(self, "Replace file?", as_written(question)) != QMessageBox.Yes:
                return
            overwrite = True
        self.export_started = time.monotonic()  # the wait the result reports: the child process and the check too
        self._exporting(True)
        self.session.say(f"Exporting to {out.name}…")
        # in a child process: torch.export holds the GIL long enough to freeze the window
        if fmt == INT8:
            self.result.setText(f"Quantising to {out.name} and checking it against the full-precision model on the "
                                "validation images…")
            self.task = self.tasks.start(lambda report, cancelled: export_int8_in_child_process(
                run_dir, out, overwrite=overwrite, keep=keep, cancelled=cancelled), "export")
        else:
            self.result.setText(f"Exporting to {out.name} and checking it against the app…")
            self.task = self.tasks.start(lambda report, cancelled: export_in_child_process(
                run_dir, fmt, out, overwrite=overwrite, keep=keep), "export")
        self.task.succeeded.connect(lambda report: self._exported(report, fmt))
        self.task.failed.connect(self._failed)
        self.task.cancelled.connect(lambda: self._failed("Export cancelled.", warn=False))

    def _show_failure(self, message: str) -> None:
        self.result.setText(message)
        self._failure_shown = True

    def _forget_a_failure(self) -> None:
        """A failure's sentence is about the path it was for: it stood under the Export button after the path
        or the format changed (a file written since says so itself)."""
        if self._failure_shown and not (self.task is not None and self.task.running):
            self.result.setText("")
            self._failure_shown = False

    def _exporting(self, busy: bool) -> None:
        """While a file is written, its choices stay as they were: a format picked meanwhile left the
        step naming int8 ONNX and model.int8.onnx over the TorchScript file just written, and its snippet."""
        for widget in (self.export_button, self.format_box, self.path_edit, self.browse_button, self.keep_box):
            widget.setEnabled(not busy)
        if busy:
            self._failure_shown = False  # the line says what this export does now
        self.export_progress.setVisible(busy)

    def _exported(self, report, fmt: str) -> None:
        self.last_report = report
        self._exporting(False)
        size = report.path.stat().st_size / MB
        if fmt == INT8:  # an Int8Export: its check is against the fp32 ONNX file, and the sizes say what it saved
            self.result.setText(f"Wrote {report.path} ({size:.1f} MB; the full-precision ONNX file is "
                                f"{megabytes(report.fp32_bytes)}).\n{report.check.describe()}")
        else:
            waited = time.monotonic() - self.export_started
            self.result.setText(f"Wrote {report.path} ({size:.1f} MB) in {waited:.1f} s.\n"
                                f"{report.check.describe()}")
        self.snippet.setPlainText(snippet_for(fmt, report.path))
        self.session.say(f"Exported {report.path.name}.", "Export")
        self._follow_a_run_changed_meanwhile()
        self.exported.emit(report)

    def _follow_a_run_changed_meanwhile(self) -> None:
        """After an export during which another run became the one the steps use: the step turns to it, and
        the export's outcome stays (it names the file written, in the other run's folder)."""
        if self._run_changed_meanwhile:
            self._run_changed_meanwhile = False
            self.last_report = None
            self._suggest_path()

    def _failed(self, message: str, warn: bool = True) -> None:
        self._exporting(False)
        self._show_failure(message)
        self._follow_a_run_changed_meanwhile()
        if warn:
            QMessageBox.warning(self, "Export failed", as_written(message))  # it may quote a path
        self.session.say("Export failed." if warn else message, "Export")

    # ---- comparing the formats ----------------------------------------------------------------------
    @property
    def comparing(self) -> bool:
        return self.compare_task is not None and self.compare_task.running

    def compare_formats(self) -> None:
        run_dir = self.session.run_dir
        if run_dir is None or self.comparing:
            return
        self.compare_button.setEnabled(False)
        self.compare_cancel.show()
        self.compare_progress.setRange(0, 0)
        self.compare_progress.setFormat("Starting…")
        self.compare_progress.show()
        self.compare_hint.hide()
        self.compare_result.setText("")
        self.session.say("Comparing the export formats…")
        self.compare_task = self.tasks.start(
            lambda report, cancelled: measure_formats_in_child_process(run_dir, report, cancelled), "compare")
        self.compare_task.progress.connect(self._on_compare_progress)
        self.compare_task.succeeded.connect(lambda report: self._on_compared(report, run_dir))
        self.compare_task.failed.connect(lambda message: self._comparison_ended(message))
        self.compare_task.cancelled.connect(lambda: self._comparison_ended("Format comparison cancelled."))

    def cancel_comparison(self) -> None:
        if self.comparing:
            self.compare_task.cancel()
            self.compare_progress.setFormat("Cancelling…")

    def _on_compare_progress(self, payload) -> None:
        message, step, steps = payload
        self.compare_progress.setRange(0, steps)
        self.compare_progress.setValue(step)
        self.compare_progress.setFormat(f"{message} ({step}/{steps})")

    def _on_compared(self, report, run_dir) -> None:
        if run_dir != self.session.run_dir:
            self._comparison_ended("")  # another run was opened meanwhile: these figures are not its
            return
        self.format_report = report
        self.format_table.show_report(report)
        images = max((row.images for row in report.rows), default=0)
        self._comparison_ended(f"Measured on {report.device}, accuracy and agreement on {images} validation images; "
                               "the figures are this machine's.")

    def _comparison_ended(self, message: str) -> None:
        self.compare_button.setEnabled(self.session.run_dir is not None)
        self.compare_cancel.hide()
        self.compare_progress.hide()
        self.compare_hint.show()
        self.compare_result.setText(message)
        self.session.say(message, "Export")
