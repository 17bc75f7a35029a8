"""A tiny trained model for the evaluate/predict tests, trained once per test session and shared, and the
plain-torch reference that the app's figures must equal."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.helpers import make_image_folder

CLASSES = ("blue", "green", "red")  # the model's class order (sorted folder names)
_trained: dict[str, "TinyModel"] = {}


@dataclass(frozen=True)
class TinyModel:
    data_dir: Path  # the dataset it was trained on (never modify it: copy it with copy_dataset)
    run_dir: Path
    model_file: Path


def one_torch_thread():
    """For a module-scoped autouse fixture (``yield from one_torch_thread()``): torch on one thread.

    On a small machine shared with other work, torch's worker threads wait on each other for a core and a
    64 px forward pass takes a second instead of 10 ms; one thread is fast and steady. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(tmp_path_factory) -> TinyModel:
    """efficientnet_lite0 (bundled weights, frozen backbone), 64 px, one epoch on 3 x 10 images."""
    if "model" not in _trained:
        from tl_studio.core.config import TrainConfig
        from tl_studio.core.engine import Trainer

        root = tmp_path_factory.mktemp("tiny_model")
        data = make_image_folder(root / "data", classes=CLASSES, per_class=10, size=64)
        config = TrainConfig(data_dir=str(data), epochs=1, batch_size=8, workers=0, img_size=64)
        finished = Trainer(config, root / "run").fit()
        assert finished.model_file, finished.message
        _trained["model"] = TinyModel(data, root / "run", Path(finished.model_file))
    return _trained["model"]


def copy_dataset(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def plain_torch_probabilities(model_file: Path, paths: list) -> np.ndarray:
    """What a user with plain torch and Pillow gets: each image on its own, [0, 1] float RGB, N x C."""
    import torch
    from PIL import Image

    module = torch.export.load(str(model_file)).module()
    rows = []
    with torch.no_grad():
        for path in paths:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
            rows.append(module(tensor)[0].numpy())
    return np.stack(rows)


def hand_metrics(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro-F1 and the confusion matrix, by counting."""
    matrix = [[sum(1 for t, p in zip(true, predicted) if t == i and p == j) for j in range(num_classes)]
              for i in range(num_classes)]
    per_class = []
    for c in range(num_classes):
        tp = matrix[c][c]
        predicted_c = sum(matrix[r][c] for r in range(num_classes))
        actual_c = sum(matrix[c])
        precision = tp / predicted_c if predicted_c else 0.0
        recall = tp / actual_c if actual_c else None  # no image of the class: no recall, no F1 (null in --json)
        f1 = (2 * precision * recall / (precision + recall) if precision + recall else 0.0) if actual_c else None
        per_class.append({"precision": precision, "recall": recall, "f1": f1, "support": actual_c})
    present = [c for c in range(num_classes) if sum(matrix[c])]  # the classes the images have
    return {"accuracy": sum(matrix[c][c] for c in range(num_classes)) / len(true), "matrix": matrix,
            "per_class": per_class, "macro_f1": sum(per_class[c]["f1"] for c in present) / len(present)}
