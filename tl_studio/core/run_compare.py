"""Two runs on the same validation images: each run's model file answers every image of the
validation split the runs share; the accuracy of each, and the images on which they disagree.

Model files are untrusted input: they are opened only through ``load_run_model`` (the project's
model-file loader, in this one place).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tl_studio.core.config import SPLIT_SETTINGS, split_settings
from tl_studio.core.errors import Cancelled, UserError
from tl_studio.core.run_folder import MODEL_FILE, RunFolder
from tl_studio.core.run_history import read_config



@dataclass(frozen=True)
class Disagreement:
    path: str
    true_label: str
    label_a: str
    prob_a: float
    label_b: str
    prob_b: float


@dataclass(frozen=True)
class ValidationComparison:
    images: int  # validation images both models answered
    accuracy_a: float
    accuracy_b: float
    disagreements: tuple[Disagreement, ...]
    note: str = ""  # something the user should know about the images used


def load_run_model(run_dir):
    """The run's model.pt2 through the project's model-file loader (the only call in this module)."""
    from tl_studio.core.model_file import load_model_file

    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{Path(run_dir).name} has no {MODEL_FILE} yet (no finished epoch, or still training); "
                        f"compare runs that have a model file.")
    return load_model_file(path)


def shared_validation_images(run_a, run_b, cancel: Callable[[], bool] | None = None):
    """(records, class names, note): the validation split both runs were trained against."""
    from tl_studio.core.data import scan_dataset

    config_a, config_b = read_config(RunFolder(run_a)), read_config(RunFolder(run_b))
    dir_a, dir_b = config_a.get("data_dir") or "", config_b.get("data_dir") or ""
    if not dir_a or not dir_b or Path(dir_a).resolve() != Path(dir_b).resolve():
        raise UserError(f"The two runs were trained on different data sets ({dir_a or '?'} and {dir_b or '?'}); "
                        f"compare runs of the same data set.")
    note = ""
    if any(config_a.get(key) != config_b.get(key) for key in SPLIT_SETTINGS):
        note = ("The runs split the data differently; run A's validation images are used, so some of them "
                "were training images for run B.")
    scan = scan_dataset(dir_a, cancel=cancel, **split_settings(config_a))
    records = list(scan.split("val"))
    if not records:
        raise UserError(f"{dir_a} has no validation images with these split settings; nothing to compare on.")
    return records, list(scan.classes), note


def compare_on_validation(run_a, run_b, report: Callable[[int, int], None] | None = None,
                          cancel: Callable[[], bool] | None = None) -> ValidationComparison:
    """Runs both model files on the shared validation images. ``report(done, total)`` now and then."""
    from tl_studio.core.predict import predict_paths

    records, classes, note = shared_validation_images(run_a, run_b, cancel)
    models = [load_run_model(run_a), load_run_model(run_b)]
    answers = []
    for number, model in enumerate(models):
        found = []
        for done, prediction in enumerate(predict_paths(model.predict, model.classes, [r.path for r in records],
                                                        top_k=1, cancel=cancel), start=1):
            found.append(prediction)
            if report and done % 8 == 0:
                report(number * len(records) + done, 2 * len(records))
        answers.append(found)
    if cancel and cancel():
        raise Cancelled()
    return _compare(records, classes, answers[0], answers[1], note)


def _compare(records, classes, answers_a, answers_b, note: str) -> ValidationComparison:
    right_a = right_b = both = 0
    disagreements = []
    for record, a, b in zip(records, answers_a, answers_b):
        if not (a.ok and b.ok):
            continue  # an image neither model could read is no evidence either way
        both += 1
        truth = classes[record.label]
        right_a += a.labels[0] == truth
        right_b += b.labels[0] == truth
        if a.labels[0] != b.labels[0]:
            disagreements.append(Disagreement(str(record.path), truth, a.labels[0], a.probs[0], b.labels[0],
                                              b.probs[0]))
    if not both:
        raise UserError("None of the validation images could be read; check the data set folder.")
    return ValidationComparison(both, right_a / both, right_b / both, tuple(disagreements), note)
