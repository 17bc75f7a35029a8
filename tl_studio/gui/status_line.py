"""The window's status line, one per step: each step shows the last sentence said while it was shown,
not the one another step said last ("Choose a folder of labelled images to begin" stood on the Runs
step, which needs no folder). A sentence said by the action that changes the step (a run opened on the
Runs step says what the Evaluate step it opens is doing) goes with it to that step."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStackedWidget

# A sentence said this shortly before the step changes was said by what changed it (the same click,
# the same chain of signals), so it belongs to the step shown next.
SAME_ACTION_SECONDS = 1.0


class StepStatusLine(QLabel):
    def __init__(self, steps: QStackedWidget, first: str):
        super().__init__(first)
        self.setTextFormat(Qt.PlainText)  # its sentences name the user's files and folders, never markup
        self.steps = steps
        self._said_on = {steps.currentIndex(): first}  # step index -> its last sentence
        self._said_at = -math.inf
        self._shown = steps.currentIndex()
        self._before = ""  # the shown step's sentence before the last one said on it
        steps.currentChanged.connect(self._on_step_shown)

    def say(self, text: str, step: int | None = None) -> None:
        """``step``: the index of the step the sentence is about, when it is not the one shown: it waits there."""
        if step is not None and step != self.steps.currentIndex():
            self._said_on[step] = text
            return
        self._before = self._said_on.get(self.steps.currentIndex(), "")
        self.setText(text)
        self._said_on[self.steps.currentIndex()] = text
        # only an action's own sentence goes with it to the step it opens: work that names its step (an
        # evaluation ending as the user went to the Runs step) stayed on the Runs step, about another run
        self._said_at = time.monotonic() if step is None else -math.inf

    def _on_step_shown(self, index: int) -> None:
        left, self._shown = self._shown, index
        if time.monotonic() - self._said_at < SAME_ACTION_SECONDS:
            self._said_on[index] = self.text()
            # it went with the action to this step; the step left keeps what it said before ("Training
            # efficientnet_lite0…", said by Resume on the Runs step, stood there after the run had ended)
            self._said_on[left] = self._before
        else:
            self.setText(self._said_on.get(index, ""))
