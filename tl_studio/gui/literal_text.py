"""Names from the user's disk and from model files, shown as written. Qt guesses whether a text is
markup wherever nobody said otherwise (a QLabel left at Qt.AutoText, every tooltip, a message box):
a file named ``<b>x.jpg`` was shown as a bold "x.jpg", a class named ``bees<br>x`` on two lines.
Labels that never use markup are set to Qt.PlainText instead; labels that do escape each name."""

from __future__ import annotations

from PySide6.QtGui import Qt
from PySide6.QtWidgets import QLabel


def as_written(text: str) -> str:
    """``text`` for a widget that guesses: the same string when Qt shows it as plain text anyway (so an
    ordinary name looks as before), else rich text that shows every character of it, line breaks kept
    (WhiteSpaceNormal: a long sentence in a message box still wraps between its words)."""
    return Qt.convertFromPlainText(text, Qt.WhiteSpaceNormal) if Qt.mightBeRichText(text) else text


def never_wider_than_its_room(label: QLabel) -> QLabel:
    """A word-wrapped label that quotes the user's names asks for at least its longest word's width: a
    class folder named with 200 letters and no space widened the window to 1954 px on a 1400 px screen,
    hiding the panels on its right. Such a word is cut at the label's edge instead (its tooltip or the
    Problems tab has it whole)."""
    label.setMinimumWidth(1)
    return label
