"""The Data step's class chart: with many classes the names under the bars would print over each other
("c1c10c11c12…" with 30 classes); it names every class that fits, evenly spaced, and all of a few."""

from __future__ import annotations

from PySide6.QtGui import QFontMetrics

from tl_studio.gui.class_chart import ClassChart


def _chart(qtbot, classes, width):
    chart = ClassChart()
    qtbot.addWidget(chart)
    chart.resize(width, 300)
    chart.show()
    qtbot.waitExposed(chart)
    chart.show_counts(classes, {"train": {name: 10 for name in classes}, "val": {name: 3 for name in classes}})
    return chart


def test_many_class_names_do_not_overlap(qtbot):
    classes = [f"class{i:02d}" for i in range(30)]
    chart = _chart(qtbot, classes, 380)
    axis = chart.getPlotItem().getAxis("bottom")
    metrics = QFontMetrics(axis.style.get("tickFont") or chart.font())
    shown = _ticks(chart)
    per_bar = axis.width() / len(classes)
    assert 1 < len(shown) < len(classes)
    for (left, name), (right, _) in zip(shown, shown[1:]):
        # the space between two named bars holds a name (labels are centred on their bars)
        assert (right - left) * per_bar >= metrics.horizontalAdvance(name), (name, right - left)


def test_a_few_classes_are_all_named(qtbot):
    chart = _chart(qtbot, ["ants", "bees", "wasps"], 380)
    assert _ticks(chart) == [(0, "ants"), (1, "bees"), (2, "wasps")]


def _ticks(chart):
    """The names under the bars as pyqtgraph draws them (what setTicks stored)."""
    levels = chart.getPlotItem().getAxis("bottom")._tickLevels
    return [(int(value), name) for value, name in levels[0]] if levels else []
