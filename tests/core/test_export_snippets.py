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
    answer = f"{model.classes[best]} {confidence:.1%}"
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


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_the_snippet_reads_a_large_turned_phone_photo_as_the_app_does(tmp_path_factory, fmt):
    """A camera JPEG: larger than the model's resize size (TL Studio decodes it at a reduced size) and
    stored sideways with an EXIF orientation. The snippet's probability is the app's and `predict`'s."""
    from PIL import Image

    from tl_studio.core.inference import plan_for
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.predict import predict_paths
    from tl_studio.core.runs import export_run

    model = tiny_model(tmp_path_factory)
    work = tmp_path_factory.mktemp(f"snippet_photo_{fmt}")
    exported = export_run(model.run_dir, fmt, work / f"model{EXPORT_FORMATS[fmt].suffix}").path
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)
    blocks[:, :40] = (220, 30, 30)  # a red half on one side: turning the image changes what is cropped
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    Image.fromarray(blocks).resize((1280, 720), Image.NEAREST).save(work / "photo.jpg", quality=90, exif=exif)
    code = EXPORT_FORMATS[fmt].snippet_for(exported) + "print(int(probabilities.argmax()), float(probabilities.max()))\n"
    completed = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    best, confidence = completed.stdout.split()[-2:]
    loaded = load_model_file(exported)
    app = next(iter(predict_paths(loaded.predict, loaded.classes, [work / "photo.jpg"], plan=plan_for(loaded, 32))))
    assert int(best) == loaded.classes.index(app.labels[0])
    assert float(confidence) == pytest.approx(app.probs[0], abs=2e-5)


def _readme_snippets() -> list[str]:
    """The Python blocks of the README's section on using a model file without TL Studio, as printed."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using the trained model without TL Studio", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _answers_as_the_app(code: str, work, model_file) -> None:
    """Runs ``code`` in ``work`` (beside its model file and photo.jpg), as a user runs a copied snippet,
    and checks it prints the app's label and confidence for the photo."""
    from tl_studio.core.inference import plan_for
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.predict import predict_paths

    completed = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    label, confidence = completed.stdout.split()
    loaded = load_model_file(model_file)
    app = next(iter(predict_paths(loaded.predict, loaded.classes, [work / "photo.jpg"], plan=plan_for(loaded, 32))))
    assert label == app.labels[0] and float(confidence) == pytest.approx(app.probs[0], abs=2e-5)


def test_the_readmes_snippet_runs_as_printed_and_gives_the_apps_answer(tmp_path_factory):
    """The README's first model-file snippet, copied as a user copies it, on a real exported file."""
    from PIL import Image

    model = tiny_model(tmp_path_factory)
    work = tmp_path_factory.mktemp("readme_snippet")
    (work / "model.pt2").write_bytes(model.model_file.read_bytes())
    exif = Image.Exif()
    exif[0x0112] = 8  # sideways
    photo = Image.new("RGB", (900, 500), (40, 60, 200))
    photo.paste((220, 30, 30), (0, 0, 450, 500))
    photo.save(work / "photo.jpg", quality=90, exif=exif)
    _answers_as_the_app(_readme_snippets()[0], work, work / "model.pt2")


def test_the_readmes_onnx_snippet_runs_as_printed_and_gives_the_apps_answer(tmp_path_factory):
    """The README's ONNX snippet, for users of the command line (the app's Export step shows its own)."""
    from PIL import Image

    from tl_studio.core.runs import export_run

    code = next(block for block in _readme_snippets() if "onnxruntime.InferenceSession" in block)
    model = tiny_model(tmp_path_factory)
    work = tmp_path_factory.mktemp("readme_onnx_snippet")
    export_run(model.run_dir, "onnx", work / "model.onnx")
    photo = Image.new("RGB", (1400, 900), (40, 60, 200))  # large enough for the reduced JPEG decode
    photo.paste((220, 30, 30), (0, 0, 700, 900))
    photo.save(work / "photo.jpg", quality=90)
    _answers_as_the_app(code, work, work / "model.onnx")
