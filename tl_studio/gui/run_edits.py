"""The Runs step's edits of the selected runs: star, note, rename (a name of one's own; the folder keeps
its name), delete to the system trash and undo that delete. The page owns the table and the selection;
this owns the buttons and what they change on disk (core/run_history.annotate_run, core/run_trash)."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QInputDialog, QMessageBox, QPushButton, QWidget

from tl_studio.core.errors import UserError
from tl_studio.core.run_history import with_annotations
from tl_studio.gui.literal_text import as_written


def ask_name(parent: QWidget, name: str) -> tuple[str, bool]:
    """The rename question, wide enough for the name and the title: QInputDialog.getText's own dialog
    showed "icientnet_lite0-20261205-070917" of a run's name, under a title cut to "Rename… L Studio"."""
    dialog = QInputDialog(parent)
    dialog.setWindowTitle("Rename run")
    dialog.setLabelText("Name (empty: the folder's name):")
    dialog.setTextValue(name)
    metrics = dialog.fontMetrics()
    dialog.resize(max(dialog.sizeHint().width(), metrics.horizontalAdvance(name) + 12 * metrics.averageCharWidth(),
                      40 * metrics.averageCharWidth()), dialog.sizeHint().height())
    accepted = dialog.exec() == QDialog.Accepted
    text = dialog.textValue()
    dialog.deleteLater()
    return text, accepted


class RunEdits(QObject):
    undoChanged = Signal()  # a delete that can be undone came or went (Edit > Undo follows it)

    def __init__(self, page: QWidget, model, selected_runs: Callable[[], list], say: Callable[[str], None],
                 changed: Callable[[], None], let_go: Callable[[list], bool] = lambda folders: False,
                 take_back: Callable[[list], None] = lambda folders: None):
        """``model``: the page's RunsModel; ``changed``: called after rows changed (counts, best run);
        ``let_go(folders)``: the runs were deleted, True when the other steps used one's model and no longer
        do; ``take_back(folders)``: an undo put them back."""
        super().__init__(page)
        self.page, self.model, self.selected_runs, self.say, self.changed = page, model, selected_runs, say, changed
        self.let_go, self.take_back = let_go, take_back
        # every delete of this session, for undo, the last one last: each a list of (the run's name as the
        # table showed it, run_trash's record); one Undo puts the last delete back (a second delete
        # dropped the first one's undo)
        self.deletes: list[list] = []
        self.star_button = QPushButton("★ Star")
        self.note_button = QPushButton("Note…")
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("Give the run a name of your own (the folder keeps its name)")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Move the selected runs to the system trash (Delete)")
        self.undo_button = QPushButton("Undo delete")
        self.undo_button.setEnabled(False)
        self.buttons = (self.star_button, self.note_button, self.rename_button, self.delete_button, self.undo_button)
        self.star_button.clicked.connect(self.toggle_star)
        self.note_button.clicked.connect(self.edit_note)
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.undo_button.clicked.connect(self.undo_delete)

    def update(self, runs: list) -> None:
        """The buttons for the selected ``runs``: star any, note and rename one, delete none that trains."""
        self.star_button.setEnabled(bool(runs))
        self.note_button.setEnabled(len(runs) == 1)
        self.rename_button.setEnabled(len(runs) == 1)
        self.delete_button.setEnabled(bool(runs) and all(run.status != "running" for run in runs))
        self.star_button.setText("☆ Unstar" if runs and all(run.starred for run in runs) else "★ Star")

    def _annotate(self, run, **changes) -> bool:
        from tl_studio.core.run_history import annotate_run

        try:
            annotate_run(run.path, **changes)
        except UserError as error:
            QMessageBox.warning(self.page, "Could not save", as_written(str(error)))  # it may quote the run folder
            return False
        self.model.update_run(with_annotations(run))
        return True

    def toggle_star(self) -> None:
        runs = self.selected_runs()
        star = not all(run.starred for run in runs)
        done = [run.name for run in runs if self._annotate(run, starred=star)]
        if done:  # the last action's line ("Renamed to baseline.") stood instead
            self.say(f"{'Starred' if star else 'Unstarred'} {', '.join(done)}.")
        self.changed()

    def edit_note(self) -> None:
        runs = self.selected_runs()
        if len(runs) != 1:
            return
        text, ok = QInputDialog.getMultiLineText(self.page, "Note", as_written(f"A note for {runs[0].name}:"),
                                                 runs[0].note)
        if ok:
            if self._annotate(runs[0], note=text.strip()):
                self.say(f"{'Saved' if text.strip() else 'Removed'} the note of {runs[0].name}.")
            self.changed()

    def rename_selected(self) -> None:
        runs = self.selected_runs()
        if len(runs) != 1:
            return
        text, ok = ask_name(self.page, runs[0].name)
        name = text.strip()
        # two rows of one name cannot be told apart here, in the best-run line or in `tl-studio runs`
        taken = next((run for run in self.model.runs if run.path != runs[0].path and name and run.name == name), None)
        if ok and taken is not None:
            self.say(f"Another run is named {name} ({taken.path}); choose another name.")
        elif ok:
            self._annotate(runs[0], name=name)
            self.changed()
            # a refusal said before must not stand after a rename that worked
            self.say(f"Renamed to {name}." if name else "The run is shown by its folder's name again.")

    def delete_selected(self) -> None:
        from tl_studio.core.run_trash import trash_run

        runs = self.selected_runs()
        if not runs:
            return
        trashed, problems, folders = [], [], []
        for run in runs:
            try:
                trashed.append((run.name, trash_run(run.path)))  # named as the table shows it, not by its folder
            except UserError as error:
                problems.append(str(error))
                continue
            self.model.remove_run(run.path)
            folders.append(run.path)
        if trashed:
            self.deletes.append(trashed)
        self.undo_button.setEnabled(bool(self.deletes))
        self.undoChanged.emit()
        if trashed:
            names = ", ".join(name for name, _ in trashed)
            it = "it" if len(trashed) == 1 else "them"
            # the steps kept naming a deleted run, and answered "No model file at …/model.pt2" about it
            released = ("; Evaluate, Export and Predict no longer use its model" if self.let_go(folders) else "")
            self.say(f"Moved {names} to the trash{released}. Undo delete puts {it} back.")
        if problems:
            QMessageBox.warning(self.page, "Not deleted", as_written("\n".join(problems)))
        self.changed()

    @property
    def trashed(self) -> list:
        """The runs the next Undo puts back (the last delete); empty when there is nothing to undo."""
        return self.deletes[-1] if self.deletes else []

    def undo_text(self) -> str:
        """What undoing the last delete would do, in a few words (Edit > Undo names it)."""
        if len(self.trashed) == 1:
            return f"Undo: put {self.trashed[0][0]} back from the trash"
        return f"Undo: put {len(self.trashed)} runs back from the trash" if self.trashed else "Undo"

    def undo_delete(self) -> None:
        from tl_studio.core.run_history import summarize_run
        from tl_studio.core.run_trash import restore_run

        if not self.deletes:
            return
        problems, restored, folders = [], [], []
        for name, trashed in self.deletes.pop():
            try:
                folder = restore_run(trashed)
                self.model.add_runs([summarize_run(folder)])
                restored.append(name)
                folders.append(str(folder))
            except UserError as error:
                problems.append(str(error))
        self.undo_button.setEnabled(bool(self.deletes))
        self.undoChanged.emit()
        # "Moved ... to the trash. Undo delete puts it back." stood after the runs were back
        self.say(f"Put {', '.join(restored)} back." if restored else "Nothing was put back.")
        if folders:
            self.take_back(folders)
        if problems:
            QMessageBox.warning(self.page, "Not restored", as_written("\n".join(problems)))
        self.changed()
