"""Evaluating a trained model file on labelled images: which images, running the model, and the result.

The images come from a dataset scan (its validation or test split, or all of it), matched to the model's
classes by name; images of classes the model does not know are counted and skipped. The images go
through the model file as ``core.predict`` sends them (core/inference.py): each whole and on its own, as a
[0, 1] float RGB tensor, which is what a user with plain torch does, or in batches whose answers are
the file's own (checked when the plan is made), so the figures here are the figures a user reproduces.
A file that cannot be read is reported with its reason and the rest go on.

The :class:`Evaluation` holds every image's class probabilities; the metrics and rankings
(``core.eval_metrics``) are computed from them on demand.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from tl_studio.core import eval_metrics
from tl_studio.core.config import split_settings
from tl_studio.core.errors import Cancelled, UserError
from tl_studio.core.safe_text import csv_cell
from tl_studio.core.wording import counted

SPLIT_CHOICES = ("val", "test", "train", "all")
PROGRESS_INTERVAL_S = 0.1

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EvaluationSet:
    """The images to evaluate, each with its label in the model's class order."""

    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]  # the model's
    unknown: dict[str, int] = field(default_factory=dict)  # class the model does not know -> images skipped
    source: str = ""  # e.g. "the val split of /data/flowers"
    split: str = ""  # val, test, train or all
    root: str = ""  # the dataset's folder, named when none of its images can be read

    def describe_unknown(self) -> str:
        if not self.unknown:
            return ""
        names = ", ".join(f"{name} ({count})" for name, count in sorted(self.unknown.items()))
        return f"Skipped images of classes the model does not know: {names}."


def default_choice(scan, metadata: dict) -> tuple[str, str]:
    """Which images to evaluate when the user did not say, and why in a few words. A folder split into
    train/ and val/: its validation split. The folder the model was trained on (its metadata's
    data_dir): the validation split the run made of it (scan_for_model splits it with the run's seed),
    so that no training image is counted. Any other folder: every image in it."""
    if not any(True for _ in scan.split("val")):
        return "all", "every image, as the folder has no validation images"
    if scan.presplit:
        return "val", "the images in its val/ folder"
    trained_on = (metadata.get("training_config") or {}).get("data_dir")
    if trained_on and _same_folder(scan.root, trained_on):
        return "val", "the val split the run made of the folder it trained on, so that no training image counts"
    if _training_folder_missing(metadata):  # not known to be another folder: the training one, moved?
        return "all", ("every image, as the folder the model was trained on is not here to compare; if this is "
                       "that folder, moved or renamed, its val split holds the images the run did not train on")
    return "all", "every image, as this is not the folder the model was trained on"


def _same_folder(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # the training folder is not here (another machine, moved or deleted)
        return False


def records_of(scan, split: str) -> list:
    if split not in SPLIT_CHOICES:
        raise UserError(f"Unknown split '{split}'; choose one of {', '.join(SPLIT_CHOICES)}.")
    records = list(scan.records) if split == "all" else list(scan.split(split))
    if not records:
        raise UserError(f"The {split} split of {scan.root} has no images; choose the validation split or every "
                        f"image instead.")
    return records


def evaluation_set(scan, split: str, model_classes: list[str] | tuple[str, ...]) -> EvaluationSet:
    """The scan's images of ``split``, labelled by the model's classes (matched by name)."""
    index_of = {name: label for label, name in enumerate(model_classes)}
    paths, labels, unknown = [], [], Counter()
    for record in records_of(scan, split):
        name = scan.classes[record.label]
        if name in index_of:
            paths.append(Path(record.path))
            labels.append(index_of[name])
        else:
            unknown[name] += 1
    if not paths:
        by_case = {name.casefold(): name for name in model_classes}
        renames = [f"{name} to {by_case[name.casefold()]}" for name in scan.classes if name.casefold() in by_case]
        # names match as written: Ants/ is not ants/ on most file systems, but say so when that is all it is
        remedy = (f"the folder names differ from them only in case, so rename {', '.join(renames)}" if renames else
                  "give a folder with the model's class folders")
        raise UserError(f"None of the classes in {scan.root} ({', '.join(scan.classes)}) is one the model "
                        f"knows ({', '.join(model_classes)}); {remedy}.")
    where = "every image" if split == "all" else f"the {split} split"
    return EvaluationSet(tuple(paths), tuple(labels), tuple(model_classes), dict(unknown), f"{where} of {scan.root}",
                         split, str(scan.root))


def problems_of_split(scan, split: str) -> tuple:
    """The scan's problems an evaluation of ``split`` should name: in a pre-split folder, not those inside
    another split's folder (evaluating val/ listed train/ants/empty.jpg as "left out of the evaluation").
    Duplicates are kept wherever they are (one across train and val is what skews the scores), and so is
    everything of a folder the scan splits itself: a file it could not read would have been in any split."""
    from tl_studio.core.data import SPLIT_FOLDER_NAMES

    if not scan.presplit or split == "all":
        return tuple(scan.problems)
    return tuple(problem for problem in scan.problems
                 if problem.kind == "duplicate"
                 or SPLIT_FOLDER_NAMES.get(problem.path.split("/")[0].casefold(), split) == split)


def split_as_trained(scan, metadata: dict) -> bool:
    """Whether ``scan`` splits its folder as the model's run did (a pre-split folder always does): a scan
    made with other settings (the window's Data step set to 30 % or another seed) calls some of the
    model's training images "val" or "test", and its scores would count them."""
    if scan.presplit:
        return True
    trained = split_settings(metadata.get("training_config") or {})
    return (scan.val_fraction, scan.test_fraction, scan.seed) == (
        trained["val_fraction"], trained["test_fraction"], trained["seed"])


def scan_for_model(data_dir: Path | str, metadata: dict, progress=None, cancel=None):
    """Scans ``data_dir`` with the split settings the model was trained with, so that its "val" split
    is the one it was validated on (a pre-split folder keeps its own split anyway). One class folder is
    enough: a folder of new bee photos tests a bees-vs-ants model."""
    from tl_studio.core.data import scan_dataset

    return scan_dataset(data_dir, **split_settings(metadata.get("training_config") or {}), progress=progress,
                        cancel=cancel, min_classes=1)  # new photos of one class are a test too


@dataclass(frozen=True, eq=False)
class Evaluation:
    classes: tuple[str, ...]
    paths: tuple[str, ...]  # the images that were classified
    true: np.ndarray  # N labels, in the model's class order
    probabilities: np.ndarray  # N x C, as the model file returned them
    failed: tuple[tuple[str, str], ...] = ()  # (path, reason) of files that could not be read
    unknown: dict[str, int] = field(default_factory=dict)
    source: str = ""
    model_path: str = ""
    split: str = ""  # which images: val, test, train or all
    seen_in_training: int | None = None  # of ``paths``, the run's training images (None: not known here)
    copies_of_training: tuple[str, ...] = ()  # of those, the ones at another path than the training image
    training_folder_missing: str = ""  # the folder the run trained on, when it is not here to compare with

    @cached_property  # galleries ask for it once per image shown
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @cached_property  # galleries ask for it once per image shown
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @cached_property  # galleries ask for it once per image shown
    def losses(self) -> np.ndarray:
        return eval_metrics.losses(self.probabilities, self.true)

    def confusion_matrix(self) -> np.ndarray:
        return eval_metrics.confusion_matrix(self.true, self.predicted, len(self.classes))

    def per_class(self) -> list[eval_metrics.ClassMetrics]:
        return eval_metrics.per_class_metrics(self.confusion_matrix(), self.classes)

    @property
    def accuracy(self) -> float:
        return eval_metrics.accuracy(self.confusion_matrix())

    @property
    def macro_f1(self) -> float:
        return eval_metrics.macro_f1(self.confusion_matrix(), self.per_class())

    def macro_f1_note(self) -> str:
        """What the macro-F1 leaves out, when it does: "(over the 2 classes these images have; not flowers)"."""
        absent = eval_metrics.absent_classes(self.per_class())
        if not absent:
            return ""
        kept = len(self.classes) - len(absent)
        return f"(over the {counted(kept, 'class', 'classes')} these images have; not {', '.join(absent)})"

    def training_note(self) -> str:
        """A warning when some of the images are ones the model's run trained on, a note when that could
        not be told, else empty."""
        if self.seen_in_training is None and self.training_folder_missing:
            # a training folder moved or renamed: every image of it was evaluated (187 of 249 trained on)
            # and read as new data, accuracy 0.988 against the run's 0.952
            return (f"Not checked for training images: the folder this model was trained on, "
                    f"{self.training_folder_missing}, is not here. If these images include it (moved or "
                    "renamed), the figures overstate how the model does on new images.")
        if not self.seen_in_training:
            return ""
        seen, total = self.seen_in_training, len(self.paths)
        if seen == total:
            which = "The image evaluated here is" if total == 1 else f"All {total} images evaluated here are"
        else:
            which = f"{seen} of the {total} images evaluated here {'is' if seen == 1 else 'are'}"
        if len(self.copies_of_training) == seen:  # e.g. a duplicate that landed in the validation split
            copies = self.copies_of_training
            names = ", ".join(Path(path).name for path in copies[:3]) + (" …" if len(copies) > 3 else "")
            what = "a copy of an image" if seen == 1 else "copies of images"
            return (f"{which} {what} this model was trained on ({names}), so these figures overstate how it does "
                    "on new images; remove the copies from the images you evaluate, or from the training images "
                    "and train again.")
        return (f"{which} among the images this model was trained on, so these figures overstate how it does on new "
                "images; evaluate it on the validation split of the folder it was trained on, or on photos it has not "
                "seen.")

    def cell(self, true_class: int, predicted_class: int) -> list[int]:
        return eval_metrics.cell_indices(self.probabilities, self.true, true_class, predicted_class)

    def top_losses(self, limit: int | None = None) -> list[int]:
        return eval_metrics.top_losses(self.probabilities, self.true, limit)

    def likely_mislabelled(self, limit: int | None = None) -> list[eval_metrics.Suspect]:
        return eval_metrics.likely_mislabelled(self.probabilities, self.true, limit)

    @property
    def ece(self) -> float:
        """Expected calibration error of the probabilities as the file returned them (15 bins)."""
        from tl_studio.core.calibration import expected_calibration_error

        return expected_calibration_error(self.probabilities, self.true) if len(self.true) else float("nan")

    def reliability(self) -> list:
        """The reliability diagram's bins: confidence against accuracy (core/calibration.py)."""
        from tl_studio.core.calibration import reliability_bins

        return list(reliability_bins(self.probabilities, self.true)) if len(self.true) else []

    def to_dict(self) -> dict:
        """The JSON object of ``tl-studio evaluate --json``."""
        from dataclasses import asdict

        return {
            "model_file": self.model_path, "source": self.source, "split": self.split, "classes": list(self.classes),
            "num_images": len(self.paths), "accuracy": self.accuracy, "macro_f1": self.macro_f1,
            "ece": self.ece, "reliability": [asdict(b) for b in self.reliability()],
            "per_class": [metrics.to_dict() for metrics in self.per_class()],
            "macro_f1_leaves_out": eval_metrics.absent_classes(self.per_class()),  # no image of them here
            "confusion_matrix": self.confusion_matrix().tolist(),
            "failed": [{"path": path, "reason": reason} for path, reason in self.failed],
            "skipped_classes": dict(sorted(self.unknown.items())),
            "seen_in_training": self.seen_in_training,  # null: the training folder is not here to compare
            "training_folder_missing": self.training_folder_missing or None,
            "copies_of_training_images": list(self.copies_of_training),
        }

    def metrics_csv(self) -> str:
        """Per-class metrics, then the overall figures, as CSV text (for the clipboard or a file)."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for m in self.per_class():
            writer.writerow([csv_cell(m.name), f"{m.precision:.4f}", f"{m.recall:.4f}", f"{m.f1:.4f}", m.support])
        writer.writerow(["accuracy", "", "", f"{self.accuracy:.4f}", len(self.paths)])
        writer.writerow(["macro avg", "", "", f"{self.macro_f1:.4f}", len(self.paths)])
        return buffer.getvalue()


def evaluate(predict: Callable, chosen: EvaluationSet, *, progress: ProgressCallback | None = None,
             cancel: Callable[[], bool] | None = None, model_path: str = "", plan=None,
             workers: int = 0, metadata: dict | None = None) -> Evaluation:
    """Runs ``predict`` (a ModelFile's) on every image of ``chosen``: one image at a time and whole, or
    in batches with ``plan`` (``inference.plan_for``) and ``workers`` loader processes (core/inference.py).
    ``metadata``: the model file's; with it, the images are looked for among its run's training images
    (core/training_overlap.py)."""
    from tl_studio.core import inference

    rows, paths, true, failed = [], [], [], []
    last_report, total, done = 0.0, len(chosen.paths), 0
    try:
        for results in inference.run(predict, chosen.paths, plan or inference.ONE_AT_A_TIME, workers=workers,
                                     cancel=cancel):
            for result in results:
                path = str(chosen.paths[result.index])
                if result.error is not None:
                    failed.append((path, result.error))
                else:
                    rows.append(result.probabilities.numpy())
                    paths.append(path)
                    true.append(chosen.labels[result.index])
            done += len(results)
            if progress is not None and (time.monotonic() - last_report >= PROGRESS_INTERVAL_S or done == total):
                last_report = time.monotonic()
                progress(done, total)
    except Cancelled:
        raise Cancelled("The evaluation was cancelled.") from None
    if failed and not rows:  # "Accuracy 0.0%, 0 images" read as a model that gets everything wrong
        # the dataset's folder (a pre-split one's val/ is not the folder the user chose and moved)
        folder = chosen.root or (os.path.commonpath([path for path, _ in failed]) if len(failed) > 1
                                 else failed[0][0])
        raise UserError(f"None of the {counted(len(failed), 'image')} could be read (the first: {failed[0][1]}); "
                        f"has {folder} moved or changed? Open the dataset again on the Data step, or give its "
                        "folder where it is now.")
    probabilities = np.stack(rows) if rows else np.zeros((0, len(chosen.classes)), dtype=np.float32)
    seen, missing = None, ""
    if metadata is not None:
        from tl_studio.core.training_overlap import seen_in_training

        seen = seen_in_training(paths, metadata, cancel)
        missing = _training_folder_missing(metadata)
    return Evaluation(chosen.classes, tuple(paths), np.asarray(true, dtype=np.int64), probabilities,
                      tuple(failed), dict(chosen.unknown), chosen.source, model_path, chosen.split,
                      seen.seen if seen else None, seen.copies if seen else (), missing)


def _training_folder_missing(metadata: dict) -> str:
    """The folder the model's run trained on, when the metadata names one that is not on this machine."""
    folder = (metadata.get("training_config") or {}).get("data_dir")
    return folder if folder and not Path(folder).is_dir() else ""


MATRIX_NAME_CHARS = 12  # the widest column heading of the text confusion matrix


def format_report(evaluation: Evaluation) -> str:
    """The plain-text report of ``tl-studio evaluate``: overall figures, per-class table, confusion matrix."""
    lines = [f"Evaluated {counted(len(evaluation.paths), 'image')} ({evaluation.source}).",
             f"Accuracy {evaluation.accuracy:.4f}   macro-F1 {evaluation.macro_f1:.4f} {evaluation.macro_f1_note()}"
             .rstrip(), ""]
    if note := evaluation.training_note():
        # a folder's path stays whole, to be copied: it was cut at its hyphens ("/tmp/pytest-of- root/…")
        lines += [*textwrap.wrap(note, width=100, break_on_hyphens=False, break_long_words=False), ""]
    width = max([len(name) for name in evaluation.classes] + [5])
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for m in evaluation.per_class():  # a class no image has: no recall or F1 ("0.0000" read as missed)
        recall, f1 = (f"{m.recall:6.4f}", f"{m.f1:.4f}") if m.support else (f"{'-':>6}", f"{'-':>6}")
        precision = f"{m.precision:9.4f}" if m.predicted else f"{'-':>9}"  # nothing answered as it
        lines.append(f"{m.name:<{width}}  {precision}  {recall}  {f1}  {m.support:7d}")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):"]
    matrix = evaluation.confusion_matrix()
    # as wide as the longest class name up to 12 characters ("flowe" read as no class at all), longer
    # names shortened with "…"; the rows' names are whole
    cell = max(len(str(int(matrix.max()))) if matrix.size else 1, min(width, MATRIX_NAME_CHARS))
    short = [name if len(name) <= cell else name[:cell - 1] + "…" for name in evaluation.classes]
    lines.append(" " * width + "  " + " ".join(f"{name:>{cell}}" for name in short))
    for name, row in zip(evaluation.classes, matrix):
        lines.append(f"{name:<{width}}  " + " ".join(f"{int(count):>{cell}}" for count in row))
    return "\n".join(lines)


def evaluate_unknown(predict: Callable, ood_paths: list, known: Evaluation, rule, *,
                     progress: ProgressCallback | None = None, cancel: Callable[[], bool] | None = None,
                     plan=None, workers: int = 0):
    """How the model file's unknown rule does on images it should not know (``--ood DIR``): the share of
    them rejected, the share of ``known``'s images kept, and the AUROC of the score (core/unknown.py)."""
    from tl_studio.core.predict import predict_paths
    from tl_studio.core.unknown import unknown_report

    if not ood_paths:
        raise UserError("The folder of unfamiliar images holds no files; give a folder with images the model "
                        "was not trained on.")
    rows, unreadable, evaluated = [], 0, {os.path.realpath(path) for path in known.paths}
    also_evaluated = sum(os.path.realpath(path) in evaluated for path in ood_paths)
    for done, prediction in enumerate(predict_paths(predict, list(known.classes), ood_paths,
                                                    top_k=1, cancel=cancel, plan=plan, workers=workers), 1):
        if prediction.ok:
            rows.append(prediction.probabilities)
        else:
            unreadable += 1
        if progress:
            progress(done, len(ood_paths))
    if not rows:
        raise UserError("None of the unfamiliar images could be read; check the folder.")
    report = unknown_report(rule, known.probabilities, np.asarray(rows))
    return dataclasses.replace(report, unreadable=unreadable, also_evaluated=also_evaluated)


def unknown_rule_to_check(metadata: dict, known: Evaluation):
    """(rule, note): the model file's unknown rule; a file written before it had one gets the rule a new
    export would choose (95 % of ``known``'s images kept), and the note says so (else it is "")."""
    from tl_studio.core.predict import unknown_rule_of
    from tl_studio.core.unknown import rule_for

    rule = unknown_rule_of(metadata)
    if rule is not None:
        return rule, ""
    return rule_for(known.probabilities), ("This model file has no unknown rule (an older export); using one that "
                                           "keeps 95 % of the evaluated images.")
