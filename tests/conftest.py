"""Shared fixtures. Qt must run offscreen, and that has to be set before Qt is imported."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import pytest

from tests.helpers import make_image_folder

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """Three classes of 64 px images, 12 each, unsplit: distinct colours so a model can learn them."""
    return make_image_folder(tmp_path / "tiny", classes=("red", "green", "blue"), per_class=12, size=64)


@pytest.fixture
def hymenoptera() -> Path:
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"the real dataset is not at {HYMENOPTERA}")
    return HYMENOPTERA


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty, private torch hub cache, so tests never touch the user's real one."""
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home
