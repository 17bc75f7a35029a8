"""Help > Getting started: one short page a new user can read in two minutes (what a data set folder
looks like, what freezing means, what to do when accuracy stalls) and the keyboard shortcuts, listed
from the window's own menus so the list never goes stale."""

from __future__ import annotations

from html import escape

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

GUIDE = """
<h2>Getting started</h2>
<p>TL Studio turns a folder of labelled images into an image classifier, in the steps on the left:
<b>Data</b>, <b>Model</b>, <b>Train</b>, <b>Evaluate</b>, <b>Export</b>, then <b>Predict</b> on new images and
<b>Runs</b>, every run you trained, to compare and go back to.</p>

<h3>1. A data set folder</h3>
<p>One sub-folder per class, named after the class; the images inside it are that class:</p>
<pre>hymenoptera/ants/0013035.jpg
hymenoptera/ants/…
hymenoptera/bees/1092977343.jpg
hymenoptera/bees/…</pre>
<p>If the folder already holds <code>train/</code> and <code>val/</code> (each with the class folders), that
split is kept; otherwise TL Studio holds back 20% of each class for validation. A few dozen images per
class is enough to start; broken and duplicate files are found and listed under <i>Problems</i>.</p>

<h3>2. Freezing: how much of the pretrained model to keep</h3>
<p>The model starts from a network pretrained on ImageNet. <b>Frozen</b> layers keep what they learnt;
only the rest trains on your images.</p>
<ul>
<li><b>Train only the new head</b> (the default): fastest, works with little data, and runs well on a
laptop CPU.</li>
<li><b>Fine-tune more stages</b>: slower and needs more images per class, but adapts the network to images
unlike ImageNet's (medical scans, microscopy, drawings).</li>
</ul>
<p>The Model step's recommendation says what fits your data set, and why.</p>

<h3>3. When accuracy stalls</h3>
<ul>
<li>Look at <b>Evaluate</b> first: the confusion matrix and <i>Likely mislabelled</i> often show wrong labels
or classes that are truly alike. Move or exclude those images, then train again.</li>
<li>Validation accuracy far below training accuracy: the model memorises. Add images, keep augmentation
on, or freeze more.</li>
<li>Both low and flat: unfreeze a stage or two, train more epochs, or try <b>Find learning rate…</b> on the
Train step.</li>
<li>A run can be continued later: <b>Train &gt; Resume a Run…</b> picks up from its last finished epoch.</li>
</ul>
"""


def shortcut_rows(menu_bar) -> list[tuple[str, str, str]]:
    """(menu, action, shortcut) for every menu action that has a shortcut, in menu order."""
    rows = []
    for menu_action in menu_bar.actions():
        menu = menu_action.menu()
        if menu is None:
            continue
        for action in menu.actions():
            if not action.shortcut().isEmpty():
                rows.append((menu.title().replace("&", ""), action.text().replace("&", ""),
                             action.shortcut().toString(QKeySequence.NativeText)))
    return rows


def guide_html(menu_bar) -> str:
    rows = "".join(f"<tr><td>{escape(menu)} &gt; {escape(action)}</td><td><b>{escape(keys)}</b></td></tr>"
                   for menu, action, keys in shortcut_rows(menu_bar))
    return GUIDE + f"<h3>Keyboard shortcuts</h3><table cellpadding='3'>{rows}</table>"


class GettingStartedDialog(QDialog):
    def __init__(self, menu_bar, parent=None):
        super().__init__(parent)
        self.setObjectName("gettingStarted")
        self.setWindowTitle("Getting started with TL Studio")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(guide_html(menu_bar))
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(640, 720)
