"""The Evaluate step's three galleries of evaluated images (a confusion-matrix cell's images, the top
losses, the likely mislabelled), the closer look at one image (with Grad-CAM), and fixing the data from
them: the galleries ask, the session's data fixer moves the files, and this keeps track of where each
evaluated image is now, so captions, tooltips and open closer looks follow a move and its undo."""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import QObject

from tl_studio.core.dataset_edit import EXCLUDED
from tl_studio.core.wording import counted
from tl_studio.gui.gallery import Gallery, GalleryItem
from tl_studio.gui.image_view import CamProvider, ImageDetail, ImageFacts

GALLERY_LIMIT = 300  # top losses and suspects shown; the worst come first, so the rest matter less
CELL_HINT = "Click a cell of the confusion matrix to see its images here."


class EvaluationGalleries(QObject):
    def __init__(self, fixer, tasks, parent_widget):
        super().__init__(parent_widget)
        self.fixer, self.tasks, self.parent_widget = fixer, tasks, parent_widget
        self.cell_gallery = Gallery(CELL_HINT)
        self.loss_gallery = Gallery("The wrong predictions, the most confident first.")
        self.suspect_gallery = Gallery("Images whose label the model doubts most, with the label it suggests.")
        self.galleries = (self.cell_gallery, self.loss_gallery, self.suspect_gallery)
        self.evaluation = None
        self.scan = None  # the data set of the evaluated images (moves happen in its folders)
        self.cams: CamProvider | None = None
        self.current_paths: list[str] = []  # where each evaluated image is now (after moves)
        self.moved_to: dict[int, str] = {}  # evaluation index -> the class folder it was moved to
        self.cell: tuple[int, int] | None = None
        self.details: list[ImageDetail] = []
        for gallery in self.galleries:
            gallery.openRequested.connect(self.open_image)
            gallery.moveRequested.connect(
                lambda indices, name: self.fixer.move(self._paths(indices), name, self.scan))
            gallery.excludeRequested.connect(lambda indices: self.fixer.exclude(self._paths(indices), self.scan))
            gallery.undoRequested.connect(lambda: self.fixer.undo() if self._undo_is_here() else None)
        self.fixer.moved.connect(self._on_moved)
        self.fixer.undoAvailable.connect(self._undo_available)
        self._undo_available(self.fixer.can_undo)

    def show(self, evaluation, scan=None, cams: CamProvider | None = None) -> None:
        """The images of ``evaluation`` (None empties the galleries, captions too: "2 images whose label
        the model doubts" over an empty list read as now)."""
        self.evaluation, self.scan, self.cams = evaluation, scan, cams
        self._undo_available(self.fixer.can_undo)  # the last change may be in another folder than these images
        self.current_paths = list(evaluation.paths) if evaluation else []
        self.moved_to = {}
        self.cell = None
        if evaluation is None:
            for gallery in self.galleries:
                gallery.set_items([], "")
            return
        classes = sorted(set(evaluation.classes) | set(scan.classes if scan else ()))
        for gallery in self.galleries:
            gallery.set_classes(classes)
        self.cell_gallery.set_items([], CELL_HINT)
        self.refresh()

    def show_cell(self, true_class: int, predicted_class: int) -> bool:
        """The cell's images in the cell gallery, its Move offering the predicted class (the likely fix);
        False when nothing is evaluated."""
        if self.evaluation is None:
            return False
        self.cell = (true_class, predicted_class)
        self.refresh()
        self.cell_gallery.class_box.setCurrentText(self.evaluation.classes[predicted_class])
        return True

    def refresh(self) -> None:
        evaluation = self.evaluation
        if evaluation is None:
            return
        if self.cell is not None:
            truth, predicted = (evaluation.classes[i] for i in self.cell)
            indices = evaluation.cell(*self.cell)
            self.cell_gallery.set_items([self._item(i) for i in indices],
                                        f"True <b>{escape(truth)}</b>, predicted <b>{escape(predicted)}</b>: "
                                        f"{counted(len(indices), 'image')}, "
                                        "the highest loss first. Double-click one for a closer look.")
        losses = evaluation.top_losses(GALLERY_LIMIT)
        self.loss_gallery.set_items([self._item(i) for i in losses],
                                    f"{counted(len(losses), 'wrong prediction')}, the most confident first.")
        suspects = evaluation.likely_mislabelled(GALLERY_LIMIT)
        self.suspect_gallery.set_items(
            [self._item(s.index, suggested=s.suggested) for s in suspects],
            f"{counted(len(suspects), 'image')} whose label the model doubts, the least likely label first; the "
            "caption shows the label it suggests.")

    def _item(self, index: int, suggested: int | None = None) -> GalleryItem:
        evaluation = self.evaluation
        truth = evaluation.classes[evaluation.true[index]]
        predicted = int(evaluation.predicted[index])
        confidence = float(evaluation.probabilities[index, predicted])
        if index in self.moved_to:  # short: a thumbnail's caption ("moved → excluded" was cut to "moved …cluded")
            moved = self.moved_to[index]
            caption = "excluded" if moved == "excluded" else f"moved → {moved}"
        elif suggested is not None:  # the label, then the other class: two lines, so that neither is cut
            caption = f"{truth}?\n→ {evaluation.classes[suggested]}"
        else:
            caption = f"{truth}\n→ {evaluation.classes[predicted]} {confidence:.0%}"
        tooltip = (f"{self.current_paths[index]}\nlabel: {truth}\npredicted: {evaluation.classes[predicted]} "
                   f"({confidence:.1%})\nloss: {float(evaluation.losses[index]):.3f}")
        if index in self.moved_to:
            tooltip += f"\nmoved to {self.moved_to[index]}/"
        offered = evaluation.classes[suggested if suggested is not None else predicted]
        return GalleryItem(index, self.current_paths[index], caption, tooltip, offered)

    # ---- image view and data fixing -----------------------------------------------------------------
    def open_image(self, index: int) -> ImageDetail | None:
        evaluation = self.evaluation
        if evaluation is None:
            return None
        facts = ImageFacts(self.current_paths[index], evaluation.classes,
                           tuple(float(p) for p in evaluation.probabilities[index]), int(evaluation.true[index]))
        detail = ImageDetail(facts, self.tasks, self.cams, self.parent_widget)
        detail.destroyed.connect(lambda *_: self.details.remove(detail) if detail in self.details else None)
        self.details.append(detail)
        detail.show()
        return detail

    def _paths(self, indices: list[int]) -> list[str]:
        return [self.current_paths[i] for i in indices]

    def _undo_available(self, available: bool) -> None:
        """The galleries' Undo takes back the last change in the folder of the images shown, whichever step
        made it. A change in another folder is Edit > Undo's: the Undo under a run evaluated on one folder
        moved a file back in another, relabelled on the Data step before."""
        if available and not self._undo_is_here():
            folder = Path(self.fixer.scan.root).name if self.fixer.scan is not None else "another folder"
            for gallery in self.galleries:
                gallery.set_undo_enabled(False, f"The last change is in {folder}, not in these images' folder; "
                                                "Edit > Undo takes it back")
            return
        text = self.fixer.undo_text() if available else "Move the last moved image back"
        for gallery in self.galleries:
            gallery.set_undo_enabled(available, f"{text} (Ctrl+Z, Edit > Undo)")

    def _undo_is_here(self) -> bool:
        fixer = self.fixer
        return (fixer.can_undo and self.scan is not None and fixer.scan is not None
                and Path(fixer.scan.root) == Path(self.scan.root))

    def _on_moved(self, move) -> None:
        source, destination = str(move.source), str(move.destination)
        if source not in self.current_paths:
            return  # an image this evaluation does not show (an older move undone)
        index = self.current_paths.index(source)
        self.current_paths[index] = destination
        folder = move.destination.parent.name
        if self.evaluation is not None and destination == self.evaluation.paths[index]:
            self.moved_to.pop(index, None)  # back where it was evaluated
        else:
            self.moved_to[index] = "excluded" if folder == EXCLUDED else folder
        classes = self.evaluation.classes if self.evaluation is not None else ()
        for detail in self.details:  # a closer look at this image says where it is now
            if detail.facts.path == source:
                detail.relabel(destination, classes.index(folder) if folder in classes else None)
        self.refresh()

    def shutdown(self) -> None:
        for detail in list(self.details):
            detail.close()
        for gallery in self.galleries:
            gallery.shutdown()
