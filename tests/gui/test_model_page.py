"""The Model step: the zoo table, the freeze-depth slider over the model's stages, live counts."""

from __future__ import annotations

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
    slider.setValue(2)
    assert window.session.config.freeze == "2"
    assert "Frozen: stem, stage1" in page.freeze_text.text()

    page.filter.setText("resnet1")  # filter, then pick another model: its stages load
    visible = [table.model().index(row, 0).data() for row in range(table.model().rowCount())]
    assert visible == ["resnet101", "resnet152", "resnet18", "wide_resnet101_2"]
    table.selectRow(2)
    with qtbot.waitSignal(page.stagesShown, timeout=60_000, check_params_cb=lambda name: name == "resnet18"):
        pass
    assert window.session.config.model == "resnet18"
    assert page.summary.names == ("stem", "stage1", "stage2", "stage3", "stage4")
    window.close()
