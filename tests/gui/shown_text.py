"""What the user reads in a label, tooltip or message box: Qt shows a text as rich text (HTML) when the
widget is told so, or when it is left to guess (Qt.AutoText, every tooltip) and the text looks like
markup; otherwise every character as it is."""

from __future__ import annotations

from PySide6 import QtGui
from PySide6.QtCore import Qt


def shown(text: str, text_format=Qt.AutoText) -> str:
    rich = text_format == Qt.RichText or (text_format == Qt.AutoText and QtGui.Qt.mightBeRichText(text))
    if not rich:
        return text
    document = QtGui.QTextDocument()
    document.setHtml(text)
    return document.toPlainText()  # a <br> as a line break


def label_shows(label) -> str:
    return shown(label.text(), label.textFormat())
