"""The Export step: write model.pt2 (default), ONNX or TorchScript, see the export check, and copy a
snippet that runs the file with plain PyTorch or ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QButtonGroup, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QMessageBox, QPlainTextEdit, QPushButton, QRadioButton, QVBoxLayout, QWidget)

from tl_studio.core.export_formats import EXPORT_FORMATS
from tl_studio.core import run_folder
from tl_studio.gui.tasks import TaskRunner

def snippet_for(fmt: str, path: Path) -> str:
    return EXPORT_FORMATS[fmt].snippet_for(path)


class ExportPage(QWidget):
    exported = Signal(object)  # ExportReport

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.tasks = TaskRunner(self)
        self.task = None
        self.last_report = None
        self._build()
        session.runDirChanged.connect(lambda _: self._suggest_path())
        self._suggest_path()

    def _build(self) -> None:
        self.run_label = QLabel("Train a model first; its best epoch is exported.")
        self.run_label.setWordWrap(True)
        self.format_buttons = QButtonGroup(self)
        format_box = QGroupBox("Format")
        format_layout = QVBoxLayout(format_box)
        for index, export_format in enumerate(EXPORT_FORMATS.values()):
            button = QRadioButton(export_format.label)
            button.setProperty("format", export_format.name)
            self.format_buttons.addButton(button, index)
            format_layout.addWidget(button)
        self.format_buttons.button(0).setChecked(True)
        self.format_buttons.idToggled.connect(self._format_toggled)
        self.path_edit = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Save as", path_row)
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("exportButton")
        self.export_button.setToolTip("Write the file and check it answers like the app (Ctrl+E)")
        self.export_button.clicked.connect(self.export)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.snippet = QPlainTextEdit(readOnly=True)
        self.snippet.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.snippet.setPlaceholderText("After the export, a snippet that loads and runs the file appears here.")
        copy = QPushButton("Copy snippet")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.snippet.toPlainText()))
        layout = QVBoxLayout(self)
        layout.addWidget(self.run_label)
        layout.addWidget(format_box)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.result)
        layout.addWidget(QLabel("Use it without TL Studio:"))
        layout.addWidget(self.snippet, 1)
        layout.addWidget(copy)

    def shutdown(self) -> None:
        self.tasks.shutdown()

    def current_format(self) -> tuple[str, str]:
        button = self.format_buttons.checkedButton()
        fmt = button.property("format")
        return fmt, EXPORT_FORMATS[fmt].suffix

    def _format_toggled(self, _id: int, checked: bool) -> None:
        """Keeps the folder and name the user typed; only the suffix follows the format."""
        if not checked:
            return
        fmt, ext = self.current_format()
        typed = self.path_edit.text().strip()
        if not typed:
            self._suggest_path()
            return
        path = Path(typed)
        known = {f.suffix for f in EXPORT_FORMATS.values()}
        path = path.with_suffix(ext) if path.suffix.lower() in known else path.with_name(path.name + ext)
        self.path_edit.setText(str(path))
        self.snippet.setPlainText(snippet_for(fmt, path))

    def _suggest_path(self) -> None:
        run_dir = self.session.run_dir
        self.export_button.setEnabled(run_dir is not None)
        if run_dir is None:
            return
        self.run_label.setText(f"Exporting the best epoch of {run_dir}.")
        fmt, ext = self.current_format()
        self.path_edit.setText(str(Path(run_dir) / f"model{ext}"))
        self.snippet.setPlainText(snippet_for(fmt, Path(self.path_edit.text())))

    def _browse(self) -> None:
        fmt, ext = self.current_format()
        path, _ = QFileDialog.getSaveFileName(self, "Export model", self.path_edit.text(),
                                              EXPORT_FORMATS[fmt].dialog_filter)
        if path:
            self.path_edit.setText(path if path.endswith(ext) else path + ext)

    def export(self) -> None:
        from tl_studio.gui.processes import export_in_child_process

        if self.session.run_dir is None or (self.task is not None and self.task.running):
            return
        fmt, _ = self.current_format()
        out = Path(self.path_edit.text()).expanduser()
        run_dir = self.session.run_dir
        own_model_file = fmt == "pt2" and out == Path(run_dir) / run_folder.MODEL_FILE  # the same best epoch again
        overwrite = own_model_file
        if out.exists() and not own_model_file:
            answer = QMessageBox.question(self, "Replace file?", f"{out} already exists. Replace it?")
            if answer != QMessageBox.Yes:
                return
            overwrite = True
        self.export_button.setEnabled(False)
        self.result.setText(f"Exporting to {out.name} and checking it against the app…")
        self.session.say(f"Exporting {fmt}…")
        # in a child process: torch.export holds the GIL long enough to freeze the window
        self.task = self.tasks.start(
            lambda report, cancelled: export_in_child_process(run_dir, fmt, out, overwrite=overwrite), "export")
        self.task.succeeded.connect(lambda report: self._exported(report, fmt))
        self.task.failed.connect(self._failed)

    def _exported(self, report, fmt: str) -> None:
        self.last_report = report
        self.export_button.setEnabled(True)
        size = report.path.stat().st_size / 2**20
        self.result.setText(f"Wrote {report.path} ({size:.1f} MB) in {report.seconds:.1f} s.\n{report.check.describe()}")
        self.snippet.setPlainText(snippet_for(fmt, report.path))
        self.session.say(f"Exported {report.path.name}.")
        self.exported.emit(report)

    def _failed(self, message: str) -> None:
        self.export_button.setEnabled(True)
        self.result.setText(message)
        QMessageBox.warning(self, "Export failed", message)
        self.session.say("Export failed.")
