"""Shared fixtures. Qt must run offscreen, and that has to be set before Qt is imported."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import make_image_folder

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera"
# The suite's longest files (one to three minutes each on a 2-core machine), slowest first. `make test`
# hands whole files to parallel workers in collection order; started first, none of them is what one
# worker is still running at the end while the others wait.
LONGEST_FILES = ("tests/core/test_models.py", "tests/gui/test_close_anytime.py", "tests/gui/test_train_flow.py",
                 "tests/core/test_engine.py", "tests/core/test_export_snippets.py",
                 "tests/cli/test_calibrated_exports.py", "tests/cli/test_cmd_train.py",
                 "tests/cli/test_distributed_train.py", "tests/test_gpu_check.py")


def pytest_collection_modifyitems(items):
    """The longest files first (LONGEST_FILES), every other file in its usual order after them; the
    tests inside a file keep their order."""
    def rank(item) -> int:
        file = item.nodeid.split("::")[0]
        return LONGEST_FILES.index(file) if file in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)


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
