"""The step bar: Data -> Model -> Train -> Evaluate -> Export, each unlocked when the previous one is
ready."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem

STEPS = ("Data", "Model", "Train", "Evaluate", "Export", "Predict", "Runs")
HINTS = {
    "Data": "Choose a folder of labelled images",
    "Model": "Pick a pretrained model and how much to freeze",
    "Train": "Train in the background and watch it learn",
    "Evaluate": "Inspect the mistakes and fix the data",
    "Export": "Save a model file that runs anywhere",
    "Predict": "Classify new images with the trained model",
    "Runs": "Every run so far: compare them and carry the best one on",
}
ALWAYS_ENABLED = {"Runs"}  # earlier runs are there before any data set is chosen
# what a greyed-out step waits for: the step to do, not "the previous step" (Export waits for Train)
WAITS_FOR = {
    "Model": "open a data folder first",
    "Train": "open a data folder first",
    "Evaluate": "train a model or open a model file first",
    "Export": "train a model first",
    "Predict": "train a model or open a model file first",
}


class StepBar(QListWidget):
    stepChosen = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("stepBar")
        self.setFixedWidth(150)
        self.setIconSize(QSize(20, 20))
        self.setSpacing(2)
        for number, name in enumerate(STEPS, start=1):
            item = QListWidgetItem(f"{number}  {name}")
            item.setToolTip(HINTS[name])
            item.setSizeHint(QSize(140, 40))
            self.addItem(item)
        self.currentRowChanged.connect(self.stepChosen)

    def set_enabled_steps(self, enabled: set[str]) -> None:
        for row, name in enumerate(STEPS):
            item = self.item(row)
            flags = item.flags()
            on = name in enabled or name in ALWAYS_ENABLED
            item.setFlags(flags | Qt.ItemIsEnabled if on else flags & ~Qt.ItemIsEnabled)
            item.setToolTip(HINTS[name] if on else f"{HINTS[name]} ({WAITS_FOR[name]})")

    def go_to(self, name: str) -> None:
        self.setCurrentRow(STEPS.index(name))
