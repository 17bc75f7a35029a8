"""Shared fixtures. Qt must run offscreen, and that has to be set before Qt is imported."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import tempfile
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


@pytest.fixture(scope="session")
def _catalog_seed(tmp_path_factory) -> Path:
    """The model catalogue, built once per session (seconds), for every test's private cache."""
    from tl_studio.core import catalog

    path = tmp_path_factory.mktemp("catalog_seed") / catalog.CACHE_FILE_NAME
    catalog._write_cache(path, catalog.catalog_key(), catalog.build_catalog_entries())
    return path


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path_factory, _catalog_seed, monkeypatch) -> Path:
    """Every test gets its own TL Studio cache folder (the persistent feature cache lives there): no test
    writes to the user's real cache, and none finds features another test computed."""
    cache = Path(tempfile.mkdtemp(prefix="tl_cache_", dir=tmp_path_factory.getbasetemp()))
    shutil.copyfile(_catalog_seed, cache / _catalog_seed.name)
    monkeypatch.setenv("TL_STUDIO_CACHE_DIR", str(cache))
    return cache
