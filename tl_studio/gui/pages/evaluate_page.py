"""The Evaluate step: run the model file over labelled images in the background, then the confusion
matrix (click a cell to see its images), per-class metrics, the galleries of images (gui/evaluation_galleries.py:
the top losses, the likely mislabelled, a large view with Grad-CAM, moving images to fix the data), the
reliability diagram, and how the model file's "unknown" answer does on a folder of unfamiliar images."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from tl_studio.core.wording import counted
from tl_studio.gui.capped_text import CappedText
from tl_studio.gui.choice_box import ChoiceBox, offer_splits
from tl_studio.gui.confusion_matrix import ConfusionMatrixView
from tl_studio.gui.evaluation_galleries import EvaluationGalleries
from tl_studio.gui.evaluation_summary import evaluation_summary
from tl_studio.gui.image_view import CamProvider
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.metrics_table import MetricsTable
from tl_studio.gui.reliability_plot import ReliabilityPlot
from tl_studio.gui.runs_folder import model_caption
from tl_studio.gui.tasks import TaskRunner

SPLITS = {"val": "Validation split", "test": "Test split", "train": "Training split"}
SOURCES = (*SPLITS.items(), ("all", "All images of the dataset"), ("folder", "Another folder…"))
CHOSEN_FOLDER = "chosen folder"  # the item of the folder last chosen, kept above "Another folder…"
UNKNOWN_HINT = ("Unfamiliar images…: how often the model answers \"unknown\" on a folder of images it should not "
                "know, and how many of the evaluated images it still answers.")


class EvaluatePage(QWidget):
    evaluated = Signal(object)  # the Evaluation, once shown

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.tasks = TaskRunner(self)
        self.fixer = session.fixer  # shared with the Data step: one undo history
        self.scan = None  # the data set of the evaluated images (moves happen in its folders)
        self.task = None
        self.evaluation = None
        self.metadata: dict | None = None  # the evaluated model file's tl_studio.json
        self.ood_folder: str | None = None
        # (fileio.file_identity, ModelFile, its inference plan as the CLI makes it) of the last model loaded,
        # reused by the next evaluation and the unknown check
        self.loaded: tuple | None = None
        self.other_folder: str | None = None
        self._build()
        self._connect()
        self._model_changed(session.model_file)

    # ---- layout -------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)  # a long run name wraps instead of widening the window
        self.source_box = ChoiceBox()  # a pick starts an evaluation: never on a passing mouse wheel
        for key, text in SOURCES:
            self.source_box.addItem(text, key)
        self._source_index = 0  # the choice evaluated, restored when a folder dialog is cancelled
        # Until the user picks, the images are those `tl-studio evaluate` takes (evaluation.default_choice):
        # a folder the model was not trained on is evaluated whole, not on a split the Data step made of it
        self._source_picked = False
        self.source_box.setToolTip("Which labelled images to evaluate the model on")
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("evaluateButton")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.progress = QProgressBar()
        self.progress.hide()
        top = QHBoxLayout()
        top.addWidget(self.model_label, 1)
        top.addWidget(QLabel("Images:"))
        top.addWidget(self.source_box)
        top.addWidget(self.evaluate_button)
        # Cancel beside the progress it stops, not beside Evaluate: appearing there, it took Evaluate's place,
        # and a click meant for Evaluate after a pick in Images cancelled the evaluation that pick started
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(self._matrix_panel())
        splitter.addWidget(self._tabs())
        splitter.setSizes([460, 640])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(progress_row)
        layout.addWidget(CappedText(self.summary))  # a long summary scrolls; the matrix keeps its room
        layout.addWidget(splitter, 1)

    def _matrix_panel(self) -> QWidget:
        """The matrix and, under it, the per-class metrics: the matrix takes the height its classes need
        (a few classes leave room that the metrics fill, instead of an empty panel), many classes scroll."""
        self.matrix = ConfusionMatrixView()
        self.metrics = MetricsTable()
        hint = QLabel("Rows: true class · columns: predicted class. Click a cell to see its images.")
        hint.setWordWrap(True)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(hint)
        layout.addWidget(self.matrix)
        layout.addWidget(self.metrics, 1)
        return panel

    def _tabs(self) -> QTabWidget:
        self.images = EvaluationGalleries(self.fixer, self.tasks, self)
        self.cell_gallery, self.loss_gallery, self.suspect_gallery = self.images.galleries
        self.tabs = QTabWidget()
        self.tabs.addTab(self.cell_gallery, "Cell images")
        self.tabs.addTab(self.loss_gallery, "Top losses")
        self.tabs.addTab(self.suspect_gallery, "Likely mislabelled")
        self.calibration_tab = self._calibration_panel()
        self.tabs.addTab(self.calibration_tab, "Calibration")
        return self.tabs

    def _calibration_panel(self) -> QWidget:
        self.reliability = ReliabilityPlot()
        self.unknown_button = QPushButton("Unfamiliar images…")
        self.unknown_button.setObjectName("unknownButton")
        self.unknown_button.setToolTip("Choose a folder of images the model should not know (other objects, "
                                       "scenes): see how many it answers \"unknown\" and how many of these "
                                       "evaluated images it still answers")
        self.unknown_button.setEnabled(False)
        self.unknown_result = QLabel(UNKNOWN_HINT)
        self.unknown_result.setObjectName("unknownResult")
        self.unknown_result.setWordWrap(True)
        self.unknown_result.setTextFormat(Qt.PlainText)  # it names the user's folder, never markup
        self.unknown_result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(self.unknown_button)
        row.addWidget(self.unknown_result, 1)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.addWidget(self.reliability, 1)
        layout.addLayout(row)
        return panel

    def _connect(self) -> None:
        self.evaluate_button.clicked.connect(self._evaluate_what_is_shown)
        self.cancel_button.clicked.connect(self.cancel)
        self.unknown_button.clicked.connect(self._choose_unfamiliar_folder)
        self.source_box.activated.connect(self._source_chosen)
        self.matrix.cellChosen.connect(self.show_cell)
        self.session.modelFileChanged.connect(self._model_changed)
        self.session.datasetChanged.connect(self._dataset_changed)
        self._dataset_changed(self.session.scan)

    # ---- evaluating ---------------------------------------------------------------------------------
    def _model_changed(self, path) -> None:
        self.cancel()
        self._show_evaluation(None)
        self._forget_a_folder_that_is_gone()
        self.model_label.setText(model_caption(path) if path else
                                 "No model yet: train one, or open a model.pt2 (File > Open Model File).")
        self.model_label.setToolTip(as_written(str(path or "")))
        self.evaluate_button.setEnabled(path is not None)
        if path is not None and self.isVisible():  # opened while the step is shown: as arriving at it
            self.evaluate()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.session.model_file is not None and self.evaluation is None and not self.running:
            self.evaluate()  # arriving at the step is asking for it

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def _evaluate_what_is_shown(self) -> None:
        self._source_picked = True  # Evaluate under "Images: Validation split" asks for that split
        self.evaluate()

    def _source_chosen(self, _index: int) -> None:
        self._source_picked = True
        if self.source_box.currentData() == "folder":
            near = str(Path(self.session.scan.root).parent) if self.session.scan is not None else str(Path.home())
            folder = QFileDialog.getExistingDirectory(self, "Choose a folder of labelled images (one sub-folder "
                                                            "per class)", self.other_folder or near)
            if not folder:
                self.source_box.setCurrentIndex(self._source_index)  # nothing chosen: the images shown stay
                return
            self.other_folder = folder
            self._show_chosen_folder(folder)
        self._source_index = self.source_box.currentIndex()
        self.evaluate()

    def _forget_a_folder_that_is_gone(self) -> None:
        """A model opened later is evaluated on the folder chosen before, as a comparison wants; but a
        folder moved or deleted since then only failed ("... does not exist") before the user asked for
        anything: the validation split is shown instead, and the folder's item goes."""
        if self.other_folder is None or Path(self.other_folder).is_dir():
            return
        index = self.source_box.findData(CHOSEN_FOLDER)
        if self.source_box.currentIndex() == index:
            self.source_box.setCurrentIndex(self.source_box.findData("val"))
        if index >= 0:
            self.source_box.removeItem(index)
        self._source_index = self.source_box.currentIndex()
        self.other_folder = None

    def _show_chosen_folder(self, folder: str) -> None:
        """The chosen folder gets its own item, and "Another folder…" stays below it for the next one."""
        text = f"Folder: {Path(folder).name}"
        index = self.source_box.findData(CHOSEN_FOLDER)
        if index < 0:
            index = self.source_box.findData("folder")
            self.source_box.insertItem(index, text, CHOSEN_FOLDER)
        self.source_box.setItemText(index, text)
        self.source_box.setItemData(index, as_written(folder), Qt.ToolTipRole)
        self.source_box.setCurrentIndex(index)

    def _dataset_changed(self, scan) -> None:
        from tl_studio.core.evaluation import split_as_trained

        if self.source_box.currentData() != CHOSEN_FOLDER:
            self._source_picked = False  # another data set: its images are chosen as for the command
        # the Data step split otherwise than the evaluated model's run: its splits are not what is evaluated
        if scan is None or self.metadata is None or split_as_trained(scan, self.metadata):
            self._offer_splits(scan)

    def _offer_splits(self, scan) -> None:
        """Splits without images are offered greyed out, saying so (evaluating one only failed)."""
        before = self.source_box.currentIndex()
        offer_splits(self.source_box, lambda split: scan is None or any(True for _ in scan.split(split)), "val")
        if self.source_box.currentIndex() != before:  # an empty split gave way to the validation split
            self._source_index = self.source_box.currentIndex()

    def evaluate(self) -> None:
        model_path = self.session.model_file
        if model_path is None:
            return
        self.cancel()
        source = self.source_box.currentData()
        folder = self.other_folder if source in ("folder", CHOSEN_FOLDER) else None
        scan = None if folder else self.session.scan
        split = None if folder or not self._source_picked else source
        self.progress.setRange(0, 0)
        self.progress.setFormat("Loading the model…")
        self.progress.show()
        self.cancel_button.show()
        self.evaluate_button.setEnabled(False)
        self.unknown_button.setEnabled(False)
        self.session.say(f"Evaluating {Path(model_path).name}…")
        self.task = self.tasks.start(lambda report, cancelled: self._run(model_path, scan, folder, split, report,
                                                                          cancelled), "evaluate")
        self.task.progress.connect(self._on_progress)
        self.task.succeeded.connect(self._on_evaluated)
        self.task.failed.connect(lambda message: self._ended(message, failed=True))
        self.task.cancelled.connect(lambda: self._ended("Evaluation cancelled."))

    def _run(self, model_path: Path, scan, folder: str | None, split: str | None, report, cancelled):
        """Worker thread: load the model (once per file), find the images, classify them."""
        import torch

        from tl_studio.core.evaluation import (default_choice, evaluate, evaluation_set, scan_for_model,
                                               split_as_trained)
        from tl_studio.core.fileio import file_identity
        from tl_studio.core.inference import DEFAULT_BATCH_SIZE, plan_for
        from tl_studio.core.model_file import load_model_file
        from tl_studio.gui.model_trust import is_trusted

        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # leave the GUI thread a core
        identity = file_identity(model_path)  # the same name written again (another keep share) is reloaded
        if self.loaded is None or self.loaded[0] != identity:
            model = load_model_file(model_path, trust_torchscript=is_trusted(self.session, model_path))
            # in batches, decoded as `tl-studio evaluate` decodes: the same figures
            self.loaded = identity, model, plan_for(model, DEFAULT_BATCH_SIZE)
        _, model, plan = self.loaded
        if scan is not None and not split_as_trained(scan, model.metadata):
            # the Data step splits the folder otherwise than the model's run did: its split, as `evaluate`
            scan, folder = None, str(scan.root)
        if scan is None:
            report("Scanning the images…")
            scan = scan_for_model(folder or _training_folder(model), model.metadata, cancel=cancelled)
        chosen = evaluation_set(scan, split or default_choice(scan, model.metadata)[0], model.classes)
        result = evaluate(model.predict, chosen, progress=lambda done, total: report((done, total)),
                          cancel=cancelled, model_path=str(model_path), plan=plan, metadata=model.metadata)
        return result, scan, model.metadata

    def _on_progress(self, payload) -> None:
        if isinstance(payload, str):
            self.progress.setFormat(payload)
            return
        done, total = payload
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"Classifying images: {done}/{total}")

    def _on_evaluated(self, outcome) -> None:
        evaluation, scan, metadata = outcome
        if Path(evaluation.model_path) != self.session.model_file:
            return  # the model changed meanwhile
        self.metadata = metadata
        self.scan = scan
        if self.session.scan is not None and scan.root == self.session.scan.root:
            self._offer_splits(scan)  # the splits offered are the model's split of the Data step's folder
            if not self._source_picked:  # the images the default took, named in the box
                self.source_box.setCurrentIndex(self.source_box.findData(evaluation.split))
                self._source_index = self.source_box.currentIndex()
        self._ended(f"Evaluated {counted(len(evaluation.paths), 'image')}: accuracy {evaluation.accuracy:.3f}, "
                    f"macro-F1 {evaluation.macro_f1:.3f}.")
        self._show_evaluation(evaluation, CamProvider(Path(evaluation.model_path), metadata, self.session.run_dir))
        self.evaluated.emit(evaluation)

    def _ended(self, message: str, failed: bool = False) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.evaluate_button.setEnabled(self.session.model_file is not None)
        self.unknown_button.setEnabled(self.evaluation is not None)
        self.session.say(message, "Evaluate")
        if failed:  # the last results were for other images: they go, so they are not read as these
            self._show_evaluation(None)
            self.summary.setText(as_written(message))  # it may quote a file or folder name

    def cancel(self) -> None:
        if self.running:
            self.task.cancel()

    # ---- the unknown answer on unfamiliar images ----------------------------------------------------
    def _choose_unfamiliar_folder(self) -> None:
        near = str(Path(self.session.scan.root).parent) if self.session.scan is not None else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of images the model should not know",
                                                  self.ood_folder or near)
        if folder:
            self.ood_folder = folder
            self.check_unknown(folder)

    def _model_of(self, evaluation) -> tuple | None:
        """(ModelFile, inference plan) that made ``evaluation``, while it is the one loaded."""
        if evaluation is None or self.loaded is None:
            return None
        identity, model, plan = self.loaded
        return (model, plan) if identity[0] == str(evaluation.model_path) else None

    def check_unknown(self, folder: str) -> None:
        """Runs the model over ``folder`` in the background and shows the unknown rule's figures there,
        against the evaluated images as the known ones (as ``tl-studio evaluate --ood DIR``)."""
        evaluation = self.evaluation
        loaded = self._model_of(evaluation)
        if loaded is None or self.running:
            return
        self.progress.setRange(0, 0)
        self.progress.setFormat("Finding the images…")
        self.progress.show()
        self.cancel_button.show()
        self.evaluate_button.setEnabled(False)
        self.unknown_button.setEnabled(False)
        self.unknown_result.setText(f"Classifying the images of {Path(folder).name}…")
        self.session.say(f"Checking the unknown answer on {Path(folder).name}…")
        model, plan = loaded
        self.task = self.tasks.start(lambda report, cancelled: _unknown_report(model, plan, evaluation, folder, report,
                                                                                cancelled), "unknown")
        self.task.progress.connect(self._on_unknown_progress)
        self.task.succeeded.connect(lambda outcome: self._on_unknown_checked(outcome, evaluation))
        self.task.failed.connect(self._on_unknown_failed)
        self.task.cancelled.connect(lambda: self._ended("Unknown check cancelled."))

    def _on_unknown_progress(self, payload) -> None:
        done, total = payload
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"Classifying unfamiliar images: {done}/{total}")

    def _on_unknown_checked(self, outcome, evaluation) -> None:
        report, note = outcome
        if evaluation is not self.evaluation:
            return  # evaluated again (or another model) meanwhile: the figures were against other images
        self.unknown_result.setText(report.describe() + (f" {note}" if note else ""))
        self._ended(report.describe())

    def _on_unknown_failed(self, message: str) -> None:
        self.unknown_result.setText(message)
        self._ended(message)

    # ---- showing the result -------------------------------------------------------------------------
    def _show_evaluation(self, evaluation, cams: CamProvider | None = None) -> None:
        self.evaluation = evaluation
        self.images.show(evaluation, self.scan, cams)
        self.metrics.set_evaluation(evaluation)
        self.reliability.show_evaluation(evaluation, self.metadata if evaluation is not None else None)
        self.unknown_button.setEnabled(evaluation is not None and not self.running)
        self.unknown_result.setText(UNKNOWN_HINT)
        if evaluation is None:
            self.matrix.set_matrix(_empty(), [])
            self.summary.setText("")
            return
        self.matrix.set_matrix(evaluation.confusion_matrix(), list(evaluation.classes))
        self.summary.setText(evaluation_summary(evaluation, self.scan, self.scan is self.session.scan))

    def show_cell(self, true_class: int, predicted_class: int) -> None:
        if self.images.show_cell(true_class, predicted_class):
            self.tabs.setCurrentWidget(self.cell_gallery)

    def shutdown(self) -> None:
        self.cancel()
        self.images.shutdown()
        self.tasks.shutdown()


def _unknown_report(model, plan, known, folder: str, report, cancelled):
    """Worker thread: the model file's unknown rule (or, for an older export, the one a new export would
    choose, which the note says) on ``folder``."""
    from tl_studio.core.evaluation import evaluate_unknown, unknown_rule_to_check
    from tl_studio.core.predict import collect_image_paths

    rule, note = unknown_rule_to_check(model.metadata, known)
    return evaluate_unknown(model.predict, collect_image_paths([folder]), known, rule, cancel=cancelled,
                            progress=lambda done, total: report((done, total)), plan=plan), note


def _training_folder(model) -> str:
    from tl_studio.core.errors import UserError

    folder = (model.metadata.get("training_config") or {}).get("data_dir") or ""
    if not folder or not Path(folder).is_dir():
        where = f" ({folder})" if folder else ""
        raise UserError(f"The dataset this model was trained on{where} is not here; open a dataset on the Data "
                        "step, or choose Images: Another folder….")
    return folder


def _empty():
    import numpy as np

    return np.zeros((0, 0), dtype=np.int64)
