"""The files tests/conftest.py starts the suite with exist: a renamed one would silently run in its
usual place again, and `make test` end with one worker running it while the other waits."""

from pathlib import Path

from tests.conftest import LONGEST_FILES

ROOT = Path(__file__).resolve().parents[1]


def test_the_longest_files_listed_first_exist():
    missing = [name for name in LONGEST_FILES if not (ROOT / name).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FILES names files that do not exist: {missing}"
