"""The snippet the Export step shows runs as printed, outside the app, on a real exported file, and gives the
app's answer with the file's unknown rule: the class and confidence, or "unknown (closest: ...)"."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.evaluation_helpers import CLASSES, tiny_model
from tests.helpers import make_image
from tl_studio.core.export_formats import EXPORT_FORMATS


def _app_answer(model_file, photo, threshold: float) -> str:
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.predict import predict_paths

    model = load_model_file(model_file)
    probabilities = np.asarray(next(iter(predict_paths(model.predict, model.classes, [photo]))).probabilities)
    best, confidence = int(probabilities.argmax()), float(probabilities.max())
    answer = f"{model.classes[best]} {confidence:.0%}"
    return f"unknown (closest: {answer})" if confidence < threshold else answer


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_the_snippet_prints_the_apps_answer_with_the_unknown_rule(tmp_path_factory, fmt):
    from tl_studio.core.runs import export_run

    model = tiny_model(tmp_path_factory)
    work = tmp_path_factory.mktemp(f"snippet_{fmt}")
    # keep half of the validation images: a high threshold, so the grey image is answered "unknown"
    exported = export_run(model.run_dir, fmt, work / f"model{EXPORT_FORMATS[fmt].suffix}", keep=0.5).path
    threshold = exported_threshold(exported)
    answers = []
    for photo_colour in ((220, 30, 30), (128, 128, 128)):  # a red like the training images, and a grey none knows
        make_image(work / "photo.jpg", photo_colour, seed=3)
        completed = subprocess.run([sys.executable, "-c", EXPORT_FORMATS[fmt].snippet_for(exported)], cwd=work,
                                   capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr
        printed = completed.stdout.strip()
        assert printed == _app_answer(exported, work / "photo.jpg", threshold)
        answers.append(printed)
    assert answers[0].split()[0] in CLASSES
    assert any(answer.startswith("unknown (closest: ") for answer in answers), answers


def exported_threshold(path) -> float:
    from tl_studio.core.model_file import load_model_file

    return float(load_model_file(path).metadata["unknown"]["threshold"])
