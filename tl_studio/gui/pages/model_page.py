"""The Model step: pick a pretrained model from the zoo and how much of it to freeze; download or
import its weights. The catalogue and each model's stages load in the background."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QMessageBox, QProgressBar, QPushButton, QScrollArea, QSlider, QSplitter, QVBoxLayout,
                               QWidget)

from tl_studio.core.wording import megabytes
from tl_studio.gui.literal_text import as_written
from tl_studio.gui.model_table import ModelFilter, ModelTableModel, model_table_view
from tl_studio.gui.stage_diagram import StageDiagram
from tl_studio.gui.tasks import TaskRunner


def depth_to_setting(value: int, num_stages: int) -> str:
    return "all" if value >= num_stages else "none" if value == 0 else str(value)


def setting_to_depth(setting: str, num_stages: int) -> int:
    if setting == "all":
        return num_stages
    if setting == "none":
        return 0
    return min(int(setting), num_stages)


class ModelPage(QWidget):
    stagesShown = Signal(str)  # the model whose stages the freeze controls now show

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.tasks = TaskRunner(self)
        self.summaries: dict[tuple[str, int], object] = {}
        self.summary = None
        self.download_task = None
        self._build()
        session.configChanged.connect(self._config_changed)
        session.datasetChanged.connect(lambda _: self._show_stages())

    # ---- layout -------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.table_model = ModelTableModel(self)
        self.proxy = ModelFilter(self)
        self.proxy.setSourceModel(self.table_model)
        self.filter = QLineEdit(placeholderText="Filter models (e.g. resnet, vit, mobile)…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter_changed)
        self.table = model_table_view(self.proxy)
        self.table.selectionModel().currentRowChanged.connect(self._row_chosen)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        # the page's own margins frame it already: the table, six columns at 1000 px, keeps these pixels
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.filter)
        left_layout.addWidget(self.table, 1)
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self._details())
        splitter.setStretchFactor(0, 3)  # the table needs room for full model names
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([760, 480])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _details(self) -> QWidget:
        self.title = QLabel("<h3>efficientnet_lite0</h3>")
        self.facts = QLabel()
        self.facts.setWordWrap(True)
        self.facts.setTextFormat(Qt.PlainText)  # a failure to list the models may quote a path
        weights_box = QGroupBox("Pretrained weights")
        self.weights_choice = QComboBox()
        self.weights_choice.addItem("ImageNet weights (transfer learning)", "default")
        self.weights_choice.addItem("Random initialisation (no pretraining)", "none")
        self.weights_choice.currentIndexChanged.connect(
            lambda: self.session.update_config(weights=self.weights_choice.currentData()))
        self.weights_state = QLabel()
        self.weights_state.setWordWrap(True)
        self.weights_state.setTextFormat(Qt.PlainText)  # a failed download may quote a path
        self.weights_state.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.download)
        self.import_button = QPushButton("Import weights…")
        self.import_button.setToolTip("A .pth file of this model's ImageNet weights, downloaded elsewhere")
        self.import_button.clicked.connect(self.import_weights)
        self.download_progress = QProgressBar()
        self.download_progress.hide()
        self.cancel_download = QPushButton("Cancel")
        self.cancel_download.hide()
        self.cancel_download.clicked.connect(lambda: self.download_task and self.download_task.cancel())
        buttons = QHBoxLayout()
        for widget in (self.download_button, self.import_button, self.download_progress, self.cancel_download):
            buttons.addWidget(widget)
        weights_form = QFormLayout(weights_box)
        weights_form.addRow("Start from", self.weights_choice)
        weights_form.addRow(self.weights_state)
        weights_form.addRow(buttons)
        layout_widget = QWidget()
        layout = QVBoxLayout(layout_widget)
        layout.addWidget(self.title)
        layout.addWidget(self.facts)
        layout.addWidget(weights_box)
        layout.addWidget(self._freeze_box())
        from tl_studio.gui.advisor_panel import AdvisorPanel

        self.advisor = AdvisorPanel(self.session)
        layout.addWidget(self.advisor)
        layout.addStretch(1)
        # The details scroll rather than squeeze: the advisor's reasons can be long, and the model
        # table beside them keeps its width.
        scroll = QScrollArea()
        scroll.setObjectName("modelDetails")
        scroll.setWidget(layout_widget)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.NoFrame)
        # Never narrower than the details' narrowest layout: a scroll area's own minimum is a few pixels,
        # so the splitter squeezed them and, with no horizontal scroll bar, cut off their right side (the
        # weights choice, the freeze labels, the advisor's Apply). The model table, which scrolls
        # sideways, gives way instead. Set once: what is shown later (the advisor's reasons) wraps.
        scroll.setMinimumWidth(layout_widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        return scroll

    def _freeze_box(self) -> QGroupBox:
        box = QGroupBox("How much to freeze")
        self.freeze_slider = QSlider(Qt.Horizontal)
        self.freeze_slider.setObjectName("freezeDepthSlider")
        self.freeze_slider.setTickPosition(QSlider.TicksBelow)
        self.freeze_slider.setPageStep(1)
        self.freeze_slider.setToolTip("Left: fine-tune everything. Right: freeze the whole backbone and train "
                                      "only the new head (feature extraction).")
        self.freeze_slider.valueChanged.connect(self._slider_moved)
        ends = QHBoxLayout()
        ends.addWidget(QLabel("fine-tune everything"))
        ends.addStretch(1)
        ends.addWidget(QLabel("train only the new head"))
        self.diagram = StageDiagram()
        self.freeze_text = QLabel("Loading the model's stages…")
        self.freeze_text.setWordWrap(True)
        self.freeze_text.setTextFormat(Qt.PlainText)  # a failure to list the stages may quote a path
        self.params_text = QLabel()
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("QLabel { color: palette(text); font-style: italic; }")
        layout = QVBoxLayout(box)
        layout.addWidget(self.freeze_slider)
        layout.addLayout(ends)
        layout.addWidget(self.diagram)
        layout.addWidget(self.freeze_text)
        layout.addWidget(self.params_text)
        layout.addWidget(self.hint)
        return box

    def _filter_changed(self, text: str) -> None:
        """Filtering hides rows; it must not choose another model for the user. Nor may it leave another
        row highlighted: when the chosen model's row is hidden, Qt makes a visible one current, which
        looked chosen, and a click on it then changed nothing."""
        self._filtering = True
        try:
            self.proxy.set_text(text)
            self.table.selectionModel().clear()
            self.select(self.session.config.model)  # highlighted again where still visible
        finally:
            self._filtering = False

    # ---- the catalogue ------------------------------------------------------------------------------
    def after_window_shown(self) -> None:
        def load(report, cancelled):
            from tl_studio.core.catalog import list_models, weights_status

            models = list_models()
            return models, {m.name: weights_status(m) for m in models}

        task = self.tasks.start(load, "model-catalogue")
        task.succeeded.connect(lambda result: self._catalogue_loaded(*result))
        task.failed.connect(lambda message: self.facts.setText(message))

    def _catalogue_loaded(self, models, status) -> None:
        self.table_model.set_models(models, status)
        self.table.resizeColumnsToContents()
        self.select(self.session.config.model)

    def select(self, name: str) -> None:
        row = self.table_model.row_of(name)
        if row < 0:
            return
        index = self.proxy.mapFromSource(self.table_model.index(row, 0))
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.ClearAndSelect | QItemSelectionModel.Rows)
        self.table.scrollTo(index)

    def _row_chosen(self, current, _previous) -> None:
        if not current.isValid() or getattr(self, "_filtering", False):
            return
        info = self.table_model.models[self.proxy.mapToSource(current).row()]
        self.session.update_config(model=info.name)
        self._show_model(info)

    def current_info(self):
        name = self.session.config.model
        return next((m for m in self.table_model.models if m.name == name), None)

    def _show_model(self, info) -> None:
        acc = f"{info.acc1:.1f} % ImageNet top-1" if info.acc1 is not None else "ImageNet top-1 not published"
        cost = f", {info.gflops:.2f} GFLOPS" if info.gflops else ""
        self.title.setText(f"<h3>{info.name}</h3>")
        # "with ImageNet's head": the count below the stages is this model with the run's head
        # torchvision's smallest input size: 1 px for most convnets ("minimum 1 px" read oddly), 224 for a ViT
        smallest = f", smallest input {info.min_size} px" if info.min_size and info.min_size > 32 else ""
        self.facts.setText(f"{info.num_params / 1e6:.1f} M parameters with ImageNet's 1,000-class head, {acc}{cost}; "
                           f"trained at {info.crop_size} px ({info.interpolation} resize{smallest}).")
        self._show_weights_state(info)
        self._show_stages()

    def _show_weights_state(self, info) -> None:
        status = self.table_model.status.get(info.name, "missing")
        texts = {"bundled": "Bundled with TL Studio: works offline.",
                 "cached": "In the torch hub cache (downloaded or imported): works offline."}
        size = f" ({megabytes(info.file_bytes, 0)})" if info.file_bytes else ""
        text = texts.get(status, f"Not downloaded yet{size}. Download now, or import a file downloaded elsewhere.")
        if not self.session.config.pretrained:  # the state said is the ImageNet weights', not this choice's
            text = f"Random initialisation needs no weights file. The ImageNet weights: {text[0].lower()}{text[1:]}"
        self.weights_state.setText(text)
        self.download_button.setVisible(status == "missing")
        self.import_button.setVisible(not info.bundled)

    # ---- stages and freeze depth ----------------------------------------------------------------------
    def _num_classes(self) -> int:
        scan = self.session.scan
        return len(scan.classes) if scan is not None else 2

    def _show_stages(self) -> None:
        key = (self.session.config.model, self._num_classes())
        if key in self.summaries:
            self._stages_ready(key, self.summaries[key])
            return
        self.freeze_text.setText("Loading the model's stages…")
        self.freeze_slider.setEnabled(False)  # its stops are still the previous model's stages

        def summarise(report, cancelled, key=key):
            from tl_studio.core.models import summarize_stages

            return key, summarize_stages(*key)

        task = self.tasks.start(summarise, "model-stages")
        task.succeeded.connect(lambda result: self._stages_ready(*result))
        task.failed.connect(lambda message, key=key: self._stages_failed(key, message))

    def _is_current(self, key) -> bool:
        """False once the user has moved on to another model (or data set) while its stages loaded."""
        return key == (self.session.config.model, self._num_classes())

    def _stages_failed(self, key, message: str) -> None:
        if not self._is_current(key):
            return
        self.summary = None  # the slider and the diagram described another model: neither stays
        self.diagram.set_stages([], 0)
        self.params_text.setText("")
        self.freeze_text.setText(f"The stages of {key[0]} could not be listed ({message.rstrip('.')}), so the "
                                 f"freeze depth cannot be chosen here; training uses "
                                 f"freeze \"{self.session.config.freeze}\".")

    def _stages_ready(self, key, summary) -> None:
        self.summaries[key] = summary
        if not self._is_current(key):
            return
        self.summary = summary
        self.freeze_slider.setEnabled(True)
        stages = len(summary.names)
        self.diagram.set_stages(list(zip(summary.names, summary.params)), summary.head_params)
        self.freeze_slider.blockSignals(True)
        self.freeze_slider.setRange(0, stages)  # the maximum: every stage frozen (only the head trains)
        self.freeze_slider.setValue(setting_to_depth(self.session.config.freeze, stages))
        self.freeze_slider.blockSignals(False)
        self._describe_depth(self.freeze_slider.value())
        self.stagesShown.emit(key[0])

    def _slider_moved(self, value: int) -> None:
        if self.summary is None:
            return
        self.session.update_config(freeze=depth_to_setting(value, len(self.summary.names)))
        self._describe_depth(value)

    def _describe_depth(self, value: int) -> None:
        from tl_studio.core.advice_rules import images_per_class
        from tl_studio.core.diagnostics import freeze_hint

        summary, stages = self.summary, len(self.summary.names)
        self.diagram.set_frozen(value)
        if value >= stages:
            what = "Backbone frozen: only the new head trains (feature extraction, fastest; features are cached)."
        elif value == 0:
            what = "Nothing frozen: the whole network is fine-tuned (slowest, needs the most data)."
        else:
            what = f"Frozen: {', '.join(summary.names[:value])}. Fine-tuned: {', '.join(summary.names[value:])} + head."
        trainable = summary.trainable(value)
        self.freeze_text.setText(what)
        share = trainable / summary.total_params
        # a ViT's head is 1,538 of 85.8 M: "(0.0%)" read as nothing at all training
        share_text = "&lt;0.1%" if 0 < share < 0.001 else f"{share:.1%}"  # rich text: "<" escaped
        self.params_text.setText(f"<b>{trainable:,}</b> of {summary.total_params:,} parameters train ({share_text}).")
        scan = self.session.scan
        if scan is not None:
            per_class = images_per_class(scan.counts()["train"].values())
            self.hint.setText(freeze_hint(per_class, value, stages, pretrained=self.session.config.pretrained,
                                          trainable_share=share))

    def _config_changed(self, config) -> None:
        index = self.weights_choice.findData(config.weights if config.weights in ("default", "none") else "default")
        self.weights_choice.blockSignals(True)
        self.weights_choice.setCurrentIndex(index)
        self.weights_choice.blockSignals(False)
        current = self.current_info()
        if current is not None and self.title.text() != f"<h3>{current.name}</h3>":
            self.select(current.name)  # changed elsewhere (a resumed run, the advisor)
        elif self.summary is not None and config.freeze != depth_to_setting(self.freeze_slider.value(),
                                                                            len(self.summary.names)):
            self.freeze_slider.setValue(setting_to_depth(config.freeze, len(self.summary.names)))
        elif self.summary is not None:
            self._describe_depth(self.freeze_slider.value())  # the hint depends on the weights chosen
        if current is not None:
            self._show_weights_state(current)

    # ---- weights ------------------------------------------------------------------------------------
    def download(self) -> None:
        from tl_studio.core.weights import download_weights

        info = self.current_info()
        if info is None or (self.download_task is not None and self.download_task.running):
            return
        self.download_progress.setRange(0, 0)
        self.download_progress.show()
        self.cancel_download.show()
        self.download_button.setEnabled(False)
        self.download_task = self.tasks.start(
            lambda report, cancelled: download_weights(info, progress=lambda d, t: report((d, t)), cancel=cancelled),
            "download")
        self.download_task.progress.connect(self._download_progress)
        self.download_task.succeeded.connect(lambda path: self._weights_ready(info, f"Downloaded {path.name}."))
        # named: "Download failed." stood after the user had gone back to a bundled model
        self.download_task.failed.connect(lambda message: self._download_failed(info, message))
        self.download_task.cancelled.connect(lambda: self._download_ended(f"Download of {info.name}'s weights "
                                                                          "cancelled."))

    def _download_progress(self, progress) -> None:
        done, total = progress
        if total:
            # in kilobytes: a QProgressBar holds a 32-bit int, and vit_h_14's weights are 2.5 GB
            self.download_progress.setRange(0, total // 1000)
            self.download_progress.setValue(done // 1000)
            self.download_progress.setFormat(f"{done / 1e6:.0f} / {megabytes(total, 0)}")

    def _download_failed(self, info, message: str) -> None:
        self._download_ended(f"Download of {info.name}'s weights failed.")
        if self.current_info() is info:  # the weights line is the model shown's
            self.weights_state.setText(message)

    def _download_ended(self, message: str) -> None:
        self.download_progress.hide()
        self.cancel_download.hide()
        self.download_button.setEnabled(True)
        self.session.say(message)

    def _weights_ready(self, info, message: str) -> None:
        self._download_ended(message)
        self.table_model.set_status(info.name, "cached")
        self._show_weights_state(info)

    def import_weights(self) -> None:
        """Checks the file against the architecture in the background (large models take seconds)."""
        info = self.current_info()
        if info is None:
            return
        downloads = Path.home() / "Downloads"  # where a browser puts the weights file, else the home folder
        start = str(downloads if downloads.is_dir() else Path.home())
        path, _ = QFileDialog.getOpenFileName(self, f"Import weights for {info.name}", start, "Weights (*.pth *.pt)")
        if not path:
            return
        self._start_import(info, path, force=False)

    def _start_import(self, info, path: str, force: bool) -> None:
        from tl_studio.core.weight_import import OtherWeightsInUse, import_weights

        def work(report, cancelled):
            try:
                return import_weights(info.name, path, force=force)
            except OtherWeightsInUse as other:  # asked in the window: "--force" means nothing here
                return other

        self.session.say(f"Checking {path} against {info.name}…")
        task = self.tasks.start(work, "import-weights")
        task.succeeded.connect(lambda result: self._imported(info, path, result))
        task.failed.connect(lambda message: self._import_failed(info, message))

    def _imported(self, info, path: str, result) -> None:
        from tl_studio.core.weight_import import OtherWeightsInUse, published_hash_note

        if isinstance(result, OtherWeightsInUse):
            self.session.say(f"Other weights for {info.name} are in use; replace them?", "Model")
            answer = QMessageBox.question(self, "Replace the weights in use?", as_written(
                f"{result.destination} already holds other weights for {info.name}, and runs use them. Replace "
                f"them with {path}?"))
            if answer == QMessageBox.Yes:
                self._start_import(info, path, force=True)
            else:
                self.session.say(f"The weights were not imported for {info.name}; its weights are as they were.",
                                 "Model")
            return
        self._weights_ready(info, f"Imported weights for {info.name} ({result.action}).")
        if note := published_hash_note(result):  # maybe not the ImageNet weights the panel names
            QMessageBox.warning(self, "Not the published weights", as_written(f"{Path(path).name}: {note}"))

    def _import_failed(self, info, message: str) -> None:
        # said before the box, which holds the window: "Checking … against vit_b_16…" stood on after it
        self.session.say(f"The weights were not imported for {info.name}; its weights are as they were.", "Model")
        QMessageBox.warning(self, "Cannot import these weights", as_written(message))  # it quotes the file

    def shutdown(self) -> None:
        self.advisor.shutdown()
        self.tasks.shutdown()
