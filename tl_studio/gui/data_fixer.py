"""Fixing the dataset: the Evaluate step's moves and the Data step's excludes, and their undo, through
``core.dataset_edit``; one question before the first write into the user's folder, then a background
rescan so every step shows the change.

There is one DataFixer, owned by the session next to the data set it edits: both steps act through it,
so Ctrl+Z and Edit > Undo take back the last change whichever step made it (one history per data set,
the folder's journal). Undo acts on the data set moved in last, or the one the user opened since.

Moving a file is a rename (instant), so it happens in the GUI thread; the rescan runs in the background.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QMessageBox

from tl_studio.core.dataset_edit import EXCLUDED, DatasetEditor, Move, rescan
from tl_studio.core.errors import UserError
from tl_studio.gui.literal_text import as_written


class DataFixer(QObject):
    moved = Signal(object)  # Move: an image went from source to destination (a move or an undo)
    # the folder no longer matches the last scan (images moved, or a file found gone): a rescan follows
    filesChanged = Signal()
    undoAvailable = Signal(bool)
    rescanned = Signal(object)  # the new DatasetScan

    def __init__(self, session, runner):
        super().__init__(session)
        self.session, self.runner = session, runner
        self.scan = None
        self.editor: DatasetEditor | None = None
        self._confirmed_roots: set[Path] = set()
        self._rescan_task = None
        self._opened_root: Path | None = None  # the session's data set folder, last seen
        # How many moves each change of this session made, last last: moving 5 selected images is one
        # change, and one Undo takes all 5 back (the journal keeps single moves; those from before a
        # restart are undone one by one).
        self._batches: list[int] = []
        session.datasetChanged.connect(self._session_dataset_changed)

    def _session_dataset_changed(self, scan) -> None:
        """A folder the user opens becomes the one Undo acts on. The same folder scanned again (a rescan,
        the full check) changes nothing, so a move in another folder (Evaluate's "Another folder") stays
        undoable."""
        root = Path(scan.root) if scan is not None else None
        if root != self._opened_root:
            self._opened_root = root
            self.set_dataset(scan)

    def set_dataset(self, scan) -> None:
        """The dataset whose images are shown; moves happen in its folders."""
        if scan is None:
            self.scan, self.editor, self._batches = None, None, []
        elif self.scan is None or Path(scan.root) != Path(self.scan.root) or scan.presplit != self.scan.presplit:
            self.scan, self.editor = scan, DatasetEditor.for_scan(scan)
            self._batches = []
        else:
            self.scan = scan
        self.undoAvailable.emit(self.can_undo)

    @property
    def can_undo(self) -> bool:
        return self.editor is not None and self.editor.can_undo

    def undo_text(self) -> str:
        """What Undo would do, in a few words (Edit > Undo names it)."""
        if not self.can_undo:
            return "Undo"
        last, count = self.editor.moves[-1], self._last_batch()
        if count > 1:
            if last.destination.parent.name == EXCLUDED:
                return f"Undo: exclude {count} images (back to their folders)"
            return f"Undo: move {count} images back to their folders"
        if last.destination.parent.name == EXCLUDED:
            return f"Undo: exclude {last.destination.name} (back to {last.source.parent.name}/)"
        return f"Undo: move {last.destination.name} back to {last.source.parent.name}/"

    def move(self, paths: list[str], class_name: str, scan=None, errors_in_status: bool = False) -> list[Move]:
        """Moves ``paths`` into ``class_name``'s folder of ``scan``'s data set (the current one when None).
        A move that cannot be done (a read-only folder, a file gone) stops there, in a message box, or with
        ``errors_in_status`` in the status line after what was moved (the Data step's thumbnail menu,
        where a dialog would interrupt sorting images)."""
        if scan is not None:
            self.set_dataset(scan)
        if not paths or not self._ready():
            return []
        moves, problem = [], ""
        try:
            for path in paths:
                move = self.editor.move_to_class(Path(path), class_name)
                moves.append(move)
                self.moved.emit(move)
        except UserError as error:
            if errors_in_status:
                problem = str(error)
            else:
                QMessageBox.warning(_dialog_parent(), "Could not move the image", as_written(str(error)))  # names files
        if moves:
            self._batches.append(len(moves))
        # a rescan follows even when nothing moved: a file gone since the scan then leaves the view
        self._after_change(" ".join(part for part in (self._describe(moves, class_name), problem) if part))
        return moves

    def exclude(self, paths: list[str], scan=None, errors_in_status: bool = False) -> list[Move]:
        return self.move(paths, EXCLUDED, scan, errors_in_status)

    def undo(self) -> Move | None:
        """Takes back the last change (all the images it moved); returns the last move undone."""
        if not self.can_undo:
            return None
        count = self._last_batch()
        if self._batches:
            self._batches.pop()
        undone: list[Move] = []
        try:
            for _ in range(count):
                undone.append(self.editor.undo())
                self.moved.emit(undone[-1])
        except UserError as error:
            if count - len(undone) > 1:  # the rest of that change stays one Undo
                self._batches.append(count - len(undone) - 1)
            QMessageBox.warning(_dialog_parent(), "Could not undo", as_written(str(error)))
            if not undone:
                self.undoAvailable.emit(self.can_undo)
                return None
        move = undone[-1]
        if len(undone) == 1:
            self._after_change(f"Moved {move.destination.name} back to {move.destination.parent.name}/.")
        else:
            self._after_change(f"Moved {len(undone)} images back to their folders.")
        return move

    def _last_batch(self) -> int:
        """How many moves the last change made (1 for moves from before a restart)."""
        return min(self._batches[-1], len(self.editor.moves)) if self._batches and self.editor else 1

    def _ready(self) -> bool:
        """True once the user agreed that TL Studio may move files in this dataset folder."""
        if self.editor is None:
            QMessageBox.information(_dialog_parent(), "No dataset folder",
                                    "These images are not from a dataset folder, so they cannot be moved.")
            return False
        root = self.editor.root
        if root in self._confirmed_roots:
            return True
        answer = QMessageBox.question(
            _dialog_parent(), "Change the dataset folder?",
            as_written(f"TL Studio will move image files inside {root}: into another class folder, or into an "
                       f"{EXCLUDED} folder beside the class folders. Nothing is deleted or overwritten, and every "
                       "move can be undone. Go ahead?"))
        if answer != QMessageBox.Yes:
            return False
        self._confirmed_roots.add(root)
        return True

    def _describe(self, moves: list[Move], class_name: str) -> str:
        if not moves:
            return ""
        where = "out of the dataset (into _excluded/)" if class_name == EXCLUDED else f"to {class_name}/"
        what = moves[0].source.name if len(moves) == 1 else f"{len(moves)} images"
        return f"Moved {what} {where}. Undo with Ctrl+Z."

    def _after_change(self, message: str) -> None:
        self.filesChanged.emit()
        self.undoAvailable.emit(self.can_undo)
        if message:
            self.session.say(message)
        if self.scan is not None:
            self._start_rescan()

    def _start_rescan(self) -> None:
        if self._rescan_task is not None and self._rescan_task.running:
            self._rescan_task.cancel()
        scan = self.scan
        task = self.runner.start(lambda report, cancelled: rescan(scan, cancel=cancelled), "rescan")
        task.succeeded.connect(lambda result: self._on_rescanned(task, result))
        task.failed.connect(self.session.say)
        self._rescan_task = task

    def _on_rescanned(self, task, scan) -> None:
        if task is not self._rescan_task:
            return  # an older rescan, overtaken by a newer move
        self.scan = scan
        current = self.session.scan
        if current is None or Path(current.root) == Path(scan.root):
            self.session.set_dataset(scan)  # the Data step shows the new counts
        self.rescanned.emit(scan)


def _dialog_parent():
    """Questions and warnings open over the window the user is working in (the main window, or an image
    viewer window)."""
    return QApplication.activeWindow()
