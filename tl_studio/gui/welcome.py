"""What the Data step shows before any data set is open: how to begin, the recent folders, and what a
data set folder looks like (instead of an empty chart with meaningless axes)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

from tl_studio.gui import recent
from tl_studio.gui.literal_text import never_wider_than_its_room

EXAMPLE_LAYOUT = """hymenoptera/            one sub-folder per class
    ants/
        0013035.jpg
        …
    bees/
        1092977343.jpg
        …

or, already split:
hymenoptera/train/ants/ …   hymenoptera/train/bees/ …
hymenoptera/val/ants/ …     hymenoptera/val/bees/ …"""


class Welcome(QWidget):
    chooseFolder = Signal()
    openFolder = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("welcome")
        title = QLabel("<h2>Train an image classifier from a folder of labelled images</h2>")
        title.setWordWrap(True)
        self.choose_button = QPushButton("Choose a folder…")
        self.choose_button.setObjectName("welcomeChooseButton")
        self.choose_button.setToolTip("A folder with one sub-folder per class (Ctrl+O); you can also drop it here")
        # why the folder just chosen cannot be used: on the page, where the user looks (the status bar cut it)
        self.problem = never_wider_than_its_room(QLabel())
        self.problem.setObjectName("welcomeProblem")
        self.problem.setWordWrap(True)
        self.problem.setTextFormat(Qt.PlainText)  # it quotes the user's folder and file names
        self.problem.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.problem.setStyleSheet("QLabel { background: #fdecea; color: #842029; padding: 6px; border-radius: 4px; }")
        self.problem.hide()
        self.choose_button.clicked.connect(self.chooseFolder)
        self.recent_title = QLabel("<b>Recent folders</b> (click to open)")
        self.recent_list = QListWidget()
        self.recent_list.setObjectName("welcomeRecent")
        self.recent_list.setMaximumHeight(140)
        self.recent_list.itemActivated.connect(lambda item: self.openFolder.emit(item.text()))
        self.recent_list.itemClicked.connect(lambda item: self.openFolder.emit(item.text()))
        example_title = QLabel("<b>What a data set folder looks like</b>")
        example = QLabel(EXAMPLE_LAYOUT)
        example.setObjectName("welcomeExample")
        example.setTextInteractionFlags(Qt.TextSelectableByMouse)
        example.setStyleSheet("QLabel { font-family: monospace; }")
        hint = QLabel("JPEG, PNG, GIF, BMP, TIFF, WebP and AVIF images work; broken or duplicate files are found "
                      "and named. Folders without train/ and val/ are split for you (20 % for validation by default).")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 24)
        layout.addWidget(title)
        layout.addWidget(self.choose_button, 0, Qt.AlignLeft)
        layout.addWidget(self.problem)
        layout.addSpacing(12)
        layout.addWidget(self.recent_title)
        layout.addWidget(self.recent_list)
        layout.addSpacing(12)
        layout.addWidget(example_title)
        layout.addWidget(example)
        layout.addWidget(hint)
        layout.addStretch(1)
        self.refresh()

    def show_problem(self, message: str | None) -> None:
        """``message``: why the folder chosen last cannot be used; None hides it (another folder is opening)."""
        self.problem.setText(message or "")
        self.problem.setVisible(bool(message))

    def refresh(self) -> None:
        folders = recent.recent_folders()
        self.recent_list.clear()
        self.recent_list.addItems(folders)
        self.recent_title.setVisible(bool(folders))
        self.recent_list.setVisible(bool(folders))
