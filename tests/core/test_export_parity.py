"""ONNX and TorchScript files answer like the app, checked here without the app's own export check: the
files are run with onnxruntime and plain torch.jit on the images a user would give them, and compared
with the probabilities the app shows for the same images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.evaluation_helpers import one_torch_thread, tiny_model
from tests.helpers import make_image


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    sizes = [(64, 64), (97, 41), (41, 97), (300, 200), (17, 23)]
    colours = [(200, 30, 30), (30, 180, 40), (30, 40, 200), (120, 120, 20), (90, 10, 150)]
    return [make_image(folder / f"{i}.png", colour, size=size[0], seed=i) if size[0] == size[1] else
            _save(folder / f"{i}.png", colour, size) for i, (size, colour) in enumerate(zip(sizes, colours))]


def _save(path, colour, size):
    rng = np.random.default_rng(size[0])
    array = np.clip(np.array(colour) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def _pixels(path) -> np.ndarray:
    """1 x 3 x H x W float32 in [0, 1], the way the snippets in the README read an image."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return array.transpose(2, 0, 1)[None].copy()


def _app_probabilities(model_file, paths) -> np.ndarray:
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.predict import predict_paths

    model = load_model_file(model_file)
    return np.array([p.probabilities for p in predict_paths(model.predict, model.classes, paths)])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_exported_file_run_without_the_app_gives_the_apps_probabilities(tmp_path_factory, images, fmt):
    import onnxruntime
    import torch

    from tl_studio.core.export_formats import get_format
    from tl_studio.core.runs import export_run

    model = tiny_model(tmp_path_factory)
    out = get_format(fmt).default_file(tmp_path_factory.mktemp(fmt))  # model.onnx, model.ts
    export_run(model.run_dir, fmt, out)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        theirs = np.stack([session.run(None, {"images": _pixels(path)})[0][0] for path in images])
    else:
        module = torch.jit.load(str(out))
        with torch.no_grad():
            theirs = np.stack([module(torch.from_numpy(_pixels(path)))[0].numpy() for path in images])
    ours = _app_probabilities(model.model_file, images)
    assert theirs.shape == ours.shape == (len(images), 3)
    np.testing.assert_array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
