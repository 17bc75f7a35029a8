"""The Model step: the zoo table, the freeze-depth slider over the model's stages, live counts."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QAbstractItemView, QSlider

from tl_studio.gui.main_window import MainWindow


def test_the_zoo_table_lists_models_and_the_slider_sets_the_freeze_depth(qtbot, tiny_dataset):
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.open_folder(str(tiny_dataset))
    qtbot.waitUntil(lambda: window.session.scan is not None, timeout=30_000)
    page = window.pages["Model"]
    table = window.findChild(QAbstractItemView, "modelTable")
    qtbot.waitUntil(lambda: table.model().rowCount() > 50, timeout=60_000)
    names = [table.model().index(row, 0).data() for row in range(table.model().rowCount())]
    assert names[0] == "efficientnet_lite0" and "resnet18" in names and "vit_b_16" in names

    slider = window.findChild(QSlider, "freezeDepthSlider")
    qtbot.waitUntil(lambda: page.summary is not None, timeout=60_000)
    assert slider.maximum() == len(page.summary.names)  # the maximum freezes every stage
    assert slider.value() == slider.maximum() and window.session.config.freeze == "all"
    slider.setValue(0)
    assert window.session.config.freeze == "none"
    assert f"{page.summary.total_params:,}</b> of {page.summary.total_params:,}" in page.params_text.text()
    # the published count (4.7 M for lite0) is with ImageNet's head, the count above with this run's: said
    assert "M parameters with ImageNet's 1,000-class head" in page.facts.text()
    assert "1,000-class ImageNet head" in table.model().headerData(1, Qt.Horizontal, Qt.ToolTipRole)
    slider.setValue(2)
    assert window.session.config.freeze == "2"
    assert "Frozen: stem, stage1" in page.freeze_text.text()
    assert "per class" in page.hint.text()
    page.weights_choice.setCurrentIndex(page.weights_choice.findData("none"))  # random weights: nothing to keep
    assert window.session.config.weights == "none"
    assert page.hint.text().startswith("Random starting weights: frozen stages stay random")
    assert page.weights_state.text() == ("Random initialisation needs no weights file. The ImageNet weights: "
                                         "bundled with TL Studio: works offline.")
    slider.setValue(0)
    assert page.hint.text().startswith("Random starting weights: every layer trains from scratch")
    page.weights_choice.setCurrentIndex(page.weights_choice.findData("default"))
    assert "per class" in page.hint.text()
    assert page.weights_state.text() == "Bundled with TL Studio: works offline."
    slider.setValue(2)

    page.filter.setText("resnet1")  # filter, then pick another model: its stages load
    visible = [table.model().index(row, 0).data() for row in range(table.model().rowCount())]
    assert visible == ["resnet18", "resnet101", "resnet152", "wide_resnet101_2"]  # numbers read as numbers
    table.selectRow(0)
    with qtbot.waitSignal(page.stagesShown, timeout=60_000, check_params_cb=lambda name: name == "resnet18"):
        pass
    assert window.session.config.model == "resnet18"
    assert page.summary.names == ("stem", "stage1", "stage2", "stage3", "stage4")
    window.close()


def test_the_advice_and_the_model_table_are_readable_at_the_default_window_size(qtbot, tiny_dataset):
    """At the window's first size the advisor's reasons wrap over the details' full width, and the model
    table keeps room for its columns (they were clipped to a few words and squeezed the table)."""
    from PySide6.QtWidgets import QLabel, QScrollArea

    from tests.core.test_advisor import probe, stats
    from tl_studio.core.advice_rules import recommend

    from tl_studio.gui.main_window import FIRST_SIZE

    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(*FIRST_SIZE)  # a first start on a screen with room for it (the offscreen one is 800 x 800)
    window.show()
    qtbot.waitExposed(window)
    window.steps.go_to("Model")
    page = window.pages["Model"]
    table = window.findChild(QAbstractItemView, "modelTable")
    qtbot.waitUntil(lambda: table.model().rowCount() > 50, timeout=60_000)
    recommendation = recommend(stats(2000), probe(0.3))  # the longest reasons: fine-tuning
    page.advisor.show_recommendation(page.advisor._target(), recommendation)
    details = window.findChild(QScrollArea, "modelDetails")

    def every_reason_fully_shown():
        for setting in ("freeze", "schedule", "lr", "epochs", "img_size", "augment"):
            reason = page.advisor.findChild(QLabel, f"reason_{setting}")
            # wrapped over the details' width, not wider than what is visible, every line shown
            assert 0.8 * details.viewport().width() <= reason.width() <= details.viewport().width(), setting
            assert reason.height() >= reason.heightForWidth(reason.width()), setting

    qtbot.waitUntil(every_reason_fully_shown, timeout=5000)
    widths = sum(table.columnWidth(column) for column in range(table.model().columnCount()))
    assert table.viewport().width() >= widths  # no column squeezed out of view
    window.close()


def test_the_details_are_never_cut_off_in_a_narrower_window(qtbot):
    """The window at its narrowest (about 900 px: a smaller screen, or the user's own size): the table
    gives way, and the details keep at least their narrowest layout in view (they have no horizontal
    scroll bar, and the splitter squeezed them until the weights choice, the freeze labels and the
    advisor's Apply button were cut off on the right)."""
    from PySide6.QtWidgets import QScrollArea

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.steps.go_to("Model")
    window.resize(1, 650)  # Qt keeps a window at least as wide as its minimum
    details = window.findChild(QScrollArea, "modelDetails")
    contents = details.widget()

    def contents_fit():
        assert window.width() <= 1000
        assert contents.width() <= details.viewport().width()
        assert details.viewport().width() >= contents.minimumSizeHint().width()

    qtbot.waitUntil(contents_fit, timeout=5000)
    window.close()


def test_every_family_shows_its_stages_and_a_model_whose_stages_fail_leaves_no_stale_slider(qtbot, monkeypatch):
    """RegNet's builder computes its layer widths with tensors, which the shapes-only build on the meta
    device could not read back: picking any of the 15 RegNets said "Something went wrong" and left the
    previous model's stages on the slider. Now its stages show; and where listing them fails anyway, the
    slider and diagram of the previous model go with one sentence."""
    from tl_studio.core import models
    from tl_studio.core.errors import UserError

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.steps.go_to("Model")
    page = window.pages["Model"]
    slider = window.findChild(QSlider, "freezeDepthSlider")
    table = window.findChild(QAbstractItemView, "modelTable")
    qtbot.waitUntil(lambda: table.model().rowCount() > 50 and page.summary is not None, timeout=60_000)

    with qtbot.waitSignal(page.stagesShown, timeout=60_000, check_params_cb=lambda name: name == "regnet_y_400mf"):
        page.select("regnet_y_400mf")
    assert page.summary.names[0] == "stem" and len(page.summary.names) == 5 and slider.isEnabled()
    assert "Backbone frozen" in page.freeze_text.text() and slider.maximum() == 5

    def refuse(name, num_classes):
        raise UserError(f"{name} cannot be summarised here.")

    monkeypatch.setattr(models, "summarize_stages", refuse)
    page.select("resnet34")
    qtbot.waitUntil(lambda: "could not be listed" in page.freeze_text.text(), timeout=30_000)
    assert page.summary is None and not slider.isEnabled() and page.diagram.stages == []
    assert page.freeze_text.text() == ('The stages of resnet34 could not be listed (resnet34 cannot be summarised '
                                       'here), so the freeze depth cannot be chosen here; training uses freeze "all".')
    slider.setValue(0)  # a disabled slider moved by code changes nothing either
    assert window.session.config.freeze == "all"
    window.close()


def test_a_filter_that_hides_the_chosen_model_highlights_nothing_and_one_click_chooses(qtbot, tiny_dataset):
    """Filtering to "regnet_y_4" left regnet_y_400mf highlighted as current while the details still showed
    efficientnet_lite0; clicking the highlighted row changed nothing."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.open_folder(str(tiny_dataset))
    qtbot.waitUntil(lambda: window.session.scan is not None, timeout=30_000)
    window.steps.go_to("Model")
    page = window.pages["Model"]
    table = window.findChild(QAbstractItemView, "modelTable")
    qtbot.waitUntil(lambda: table.model().rowCount() > 50, timeout=60_000)
    page.filter.setText("regnet_y_4")
    assert table.model().rowCount() == 1 and not table.selectionModel().hasSelection()
    assert window.session.config.model == "efficientnet_lite0"
    QTest.mouseClick(table.viewport(), Qt.LeftButton, pos=table.visualRect(table.model().index(0, 0)).center())
    assert window.session.config.model == "regnet_y_400mf"
    page.filter.setText("regnet")  # the chosen model still listed: it stays highlighted
    assert table.currentIndex().data() == "regnet_y_400mf"
    window.close()


def test_a_download_over_2_gb_shows_its_progress_in_si_megabytes(qtbot):
    """vit_h_14's weights are 2.5 GB: more bytes than the progress bar's 32-bit int holds."""
    window = MainWindow()
    qtbot.addWidget(window)
    page = window.pages["Model"]
    total = 2_530_000_000
    page._download_progress((1_265_000_000, total))
    bar = page.download_progress
    assert bar.format() == "1265 / 2530 MB"
    assert bar.value() * 2 == bar.maximum()
    window.close()


def test_a_failed_download_names_its_model_and_leaves_another_models_weights_line(qtbot, monkeypatch):
    """"Download failed." stood in the status line after the user had gone back to the bundled model."""
    from types import SimpleNamespace

    window = MainWindow()
    qtbot.addWidget(window)
    page = window.pages["Model"]
    said = []
    window.session.statusMessage.connect(said.append)
    resnet = SimpleNamespace(name="resnet18")
    weights_line = page.weights_state.text()
    page._download_failed(resnet, "Cannot download resnet18's weights: no connection.")  # another model shown
    assert said[-1] == "Download of resnet18's weights failed."
    assert page.weights_state.text() == weights_line
    window.close()


def test_the_model_table_sorts_names_as_people_count(qtbot):
    """Sorted as text, the list read resnet101, resnet152, resnet18, resnet34."""
    from tl_studio.core.catalog import DEFAULT_MODEL, list_models
    from tl_studio.gui.model_table import ModelFilter, ModelTableModel, model_table_view

    model = ModelTableModel()
    proxy = ModelFilter()
    proxy.setSourceModel(model)
    view = model_table_view(proxy)
    qtbot.addWidget(view)
    model.set_models(list_models(), {})

    def names() -> list[str]:
        return [proxy.index(row, 0).data() for row in range(proxy.rowCount())]

    def in_order(*expected) -> bool:
        listed = names()
        return [listed.index(name) for name in expected] == sorted(listed.index(name) for name in expected)

    assert names()[0] == DEFAULT_MODEL  # unsorted: the bundled default first, then by name
    assert in_order("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    assert in_order("vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16")
    assert in_order(*(f"efficientnet_b{n}" for n in range(8)), "efficientnet_v2_l", "efficientnet_v2_m")
    view.sortByColumn(0, Qt.AscendingOrder)  # the user clicks the Model header
    assert in_order("efficientnet_b7", "efficientnet_lite0", "efficientnet_v2_s", "resnet18", "resnet101")
    assert names()[0] != DEFAULT_MODEL and in_order("vgg11", "vgg11_bn", "vgg13", "vgg19_bn")
    view.sortByColumn(0, Qt.DescendingOrder)
    assert in_order("resnet152", "resnet101", "resnet50", "resnet34", "resnet18")


def test_all_six_model_columns_are_readable_at_the_smallest_window_size(qtbot):
    """At 1000 x 620 only Model and Parameters were in view: ImageNet top-1, Input, Cost and Weights (which
    says whether a model works offline) needed scrolling sideways. Every header and the cells of its
    column fit their section, and the last column's right edge is in the viewport, sorted or not."""
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.steps.go_to("Model")
    window.resize(1000, 620)
    table = window.findChild(QAbstractItemView, "modelTable")
    qtbot.waitUntil(lambda: table.model().rowCount() > 50, timeout=60_000)
    qtbot.waitUntil(lambda: window.width() == 1000 and window.height() == 620, timeout=5000)
    header, model = table.horizontalHeader(), table.model()
    bold = header.font()
    bold.setBold(True)  # a section of the chosen row's columns is drawn bold
    header_metrics, cell_metrics = QFontMetrics(bold), table.fontMetrics()

    def all_columns_readable():
        assert table.horizontalScrollBar().maximum() == 0
        last = model.columnCount() - 1
        assert header.sectionViewportPosition(last) + header.sectionSize(last) <= table.viewport().width()
        for column in range(model.columnCount()):
            title = model.headerData(column, Qt.Horizontal, Qt.DisplayRole)
            widest_line = max(header_metrics.horizontalAdvance(line) for line in title.split("\n"))
            assert widest_line <= header.sectionSize(column), title
            texts = [model.index(row, column).data() for row in range(model.rowCount())]
            # the figures whole in every row; the name column (it takes the width left) for typical names
            shown = texts if column else ["efficientnet_lite0", "resnet18", "convnext_tiny"]
            widest = max(cell_metrics.horizontalAdvance(text) for text in shown)
            assert widest <= header.sectionSize(column), (title, widest, header.sectionSize(column))

    qtbot.waitUntil(all_columns_readable, timeout=5000)
    assert "offline" in model.headerData(5, Qt.Horizontal, Qt.ToolTipRole)
    assert "ImageNet top-1" in model.headerData(2, Qt.Horizontal, Qt.ToolTipRole)
    for row in range(model.rowCount()):
        tip = model.index(row, 5).data(Qt.ToolTipRole)
        assert "works offline" in tip or "Not downloaded yet" in tip
    table.sortByColumn(2, Qt.DescendingOrder)  # the sorted column also makes room for its arrow
    qtbot.waitUntil(all_columns_readable, timeout=5000)
    window.close()


def test_weights_that_cannot_be_imported_are_said_in_the_status_line_before_the_box(qtbot, monkeypatch, tmp_path):
    """"Checking … against vit_b_16…" stood in the status line after the refusal, on every model."""
    from types import SimpleNamespace

    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from tl_studio.core import weight_import
    from tl_studio.core.errors import UserError
    from tl_studio.gui.pages.model_page import ModelPage
    from tl_studio.gui.session import Session

    session = Session()
    said, boxed = [], []
    session.statusMessage.connect(said.append)
    page = ModelPage(session)
    qtbot.addWidget(page)
    monkeypatch.setattr(page, "current_info", lambda: SimpleNamespace(name="vit_b_16"))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(tmp_path / "wrong.pth"), ""))

    def refuse(name, path, force=False):
        raise UserError("wrong.pth holds another model's weights.")

    monkeypatch.setattr(weight_import, "import_weights", refuse)
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: boxed.append((said[-1], text)))
    page.import_weights()
    qtbot.waitUntil(lambda: bool(boxed), timeout=30_000)
    assert boxed == [("The weights were not imported for vit_b_16; its weights are as they were.",
                      "wrong.pth holds another model's weights.")]
    page.shutdown()


def test_a_head_of_a_tiny_share_of_the_parameters_is_not_called_none(qtbot):
    """vit_b_16's head is 1,538 of 85,800,194 parameters: "(0.0%)" read as nothing training."""
    from types import SimpleNamespace

    from tl_studio.gui.pages.model_page import ModelPage
    from tl_studio.gui.session import Session

    page = ModelPage(Session())
    qtbot.addWidget(page)
    page.summary = SimpleNamespace(names=("stem", "blocks"), total_params=85_800_194,
                                   trainable=lambda depth: 1_538 if depth == 2 else 85_800_194)
    page._describe_depth(2)
    assert page.params_text.text().endswith("parameters train (&lt;0.1%).")
    page._describe_depth(0)
    assert page.params_text.text().endswith("parameters train (100.0%).")
    page.shutdown()


@pytest.mark.parametrize("replace", [True, False])
def test_importing_over_other_weights_asks_and_a_file_unlike_the_published_one_is_warned(qtbot, tmp_path,
                                                                                         monkeypatch, replace):
    """The app said "import with --force to replace them", a flag it has no place for; and it took a file
    whose hash is not the published one's as "Downloaded", with no word that it may be random weights."""
    from types import SimpleNamespace

    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from tl_studio.core import weight_import
    from tl_studio.core.weight_import import ImportResult, OtherWeightsInUse
    from tl_studio.gui.pages.model_page import ModelPage
    from tl_studio.gui.session import Session

    session = Session()
    said, asked, warned, calls = [], [], [], []
    session.statusMessage.connect(said.append)
    page = ModelPage(session)
    qtbot.addWidget(page)
    cached = tmp_path / "resnet18-f37072fd.pth"
    monkeypatch.setattr(page, "current_info", lambda: SimpleNamespace(name="resnet18"))
    monkeypatch.setattr(page, "_weights_ready", lambda info, message: said.append(message))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(tmp_path / "mine.pth"), ""))

    def fake_import(name, path, force=False):
        calls.append(force)
        if not force:
            raise OtherWeightsInUse(cached, name)
        return ImportResult(cached, "replaced", False)

    monkeypatch.setattr(weight_import, "import_weights", fake_import)
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args: asked.append(args[2]) or (QMessageBox.Yes if replace else QMessageBox.No))
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warned.append(text))
    page.import_weights()
    qtbot.waitUntil(lambda: bool(asked), timeout=30_000)
    assert "--force" not in asked[0] and f"{cached} already holds other weights for resnet18" in asked[0]
    if replace:
        qtbot.waitUntil(lambda: bool(warned), timeout=30_000)
        assert calls == [False, True] and said[-1] == "Imported weights for resnet18 (replaced)."
        assert "may not hold the pretrained ImageNet weights" in warned[0]
    else:
        assert calls == [False] and not warned
        assert said[-1] == "The weights were not imported for resnet18; its weights are as they were."
    page.shutdown()



@pytest.mark.parametrize("min_size, said", [(1, ""), (224, ", smallest input 224 px")])
def test_the_facts_name_the_smallest_input_only_where_it_limits(qtbot, min_size, said):
    """"minimum 1 px" stood in every EfficientNet's facts; a ViT's 224 px is worth saying."""
    from types import SimpleNamespace

    from tl_studio.gui.pages.model_page import ModelPage
    from tl_studio.gui.session import Session

    page = ModelPage(Session())
    qtbot.addWidget(page)
    info = SimpleNamespace(acc1=77.7, gflops=0.39, name="m", num_params=3_400_000, crop_size=224,
                           interpolation="bicubic", min_size=min_size, bundled=True, file_bytes=0)
    page._show_model(info)
    assert page.facts.text().endswith(f"trained at 224 px (bicubic resize{said}).")
    page.shutdown()


def test_a_stage_box_names_its_stage_on_hover_whatever_its_width(qtbot):
    """A narrow box shows "s" or "s1" of "stem" and "stage1"; hovering it gave nothing more."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    from tl_studio.gui.stage_diagram import StageDiagram

    diagram = StageDiagram()
    qtbot.addWidget(diagram)
    diagram.set_stages([("stem", 928), ("stage1", 5_000), ("stage2", 2_000_000)], head_params=2_562)
    diagram.set_frozen(2)
    diagram.resize(300, 78)
    diagram.show()
    qtbot.waitExposed(diagram)
    boxes = diagram._boxes()
    for (rect, *_), expected in zip(boxes, ["stem: 928 parameters, frozen", "stage1: 5,000 parameters, frozen",
                                            "stage2: 2,000,000 parameters, trained",
                                            "head: 2,562 parameters, the new head, trained"]):
        point = rect.center().toPoint()
        QApplication.sendEvent(diagram, QHelpEvent(QEvent.ToolTip, point, diagram.mapToGlobal(point)))
        assert QToolTip.text() == expected
    assert boxes[0][0].width() < diagram.fontMetrics().horizontalAdvance("stem")  # the case it is for
