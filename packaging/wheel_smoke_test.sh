#!/usr/bin/env bash
# Builds TL Studio's wheel and installs it the way `pip install` / `pipx install` would, into a fresh
# venv, then runs the installed `tl-studio` as a user would: --help, scan, models, and the window
# opened offscreen (torch loaded, a batch through the fork server's loader processes) and closed.
#   packaging/wheel_smoke_test.sh [PYTHON]      (default: .venv/bin/python, what `make setup` builds)
# The fresh venv borrows the dependencies PYTHON's environment already holds (torch alone is GBs)
# through a path line in a .pth file; the wheel itself installs with --no-deps. CI runs this after
# `make test` (.ci/run). Exits 0 when every step holds.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-.venv/bin/python}
# absolute (the script changes folder below), without resolving the venv's symlink to the base interpreter
python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export QT_QPA_PLATFORM=offscreen HOME=$work/home XDG_CONFIG_HOME=$work/config TORCH_HOME=$work/torch_home
mkdir -p "$HOME"
fail() { echo "WHEEL SMOKE TEST FAILED: $*" >&2; exit 1; }

echo "== building the wheel"
rm -rf build/lib  # setuptools' staging folder: a module deleted since the last build must not come back
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheel" .
wheel=$(ls "$work"/wheel/tl_studio-*.whl)
echo "$wheel"

echo "== the wheel holds every module and resource of the source tree"
"$python" - "$wheel" <<'PY'
import sys, zipfile
from pathlib import Path

in_wheel = set(zipfile.ZipFile(sys.argv[1]).namelist())
expected = [str(p) for p in Path("tl_studio").rglob("*.py") if "__pycache__" not in p.parts]
expected += ["tl_studio/resources/" + str(p.relative_to("resources")) for p in Path("resources").rglob("*")
             if p.suffix in {".py", ".svg", ".png", ".qss"}]
missing = sorted(set(expected) - in_wheel)
if missing:
    sys.exit("missing from the wheel: " + ", ".join(missing))
print(f"{len(expected)} files present, icons included")
PY

echo "== installing it into a fresh venv"
"$python" -m venv "$work/venv"
borrowed=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
own=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$borrowed" > "$own/borrowed_dependencies.pth"
"$work/venv/bin/python" -m pip install --quiet --no-deps "$wheel"
tl=$work/venv/bin/tl-studio
cd "$work"  # away from the checkout: only the installed copy can be imported
"$work/venv/bin/python" -c "import tl_studio, sys; assert tl_studio.__file__.startswith('$own'), tl_studio.__file__"

echo "== tl-studio --help, scan, models"
"$tl" --help | grep -q "transfer learning on images" || fail "--help did not print the usage"
"$python" "$OLDPWD/packaging/smoke_images.py" "$work/data"
"$tl" scan "$work/data" | grep -q "3 classes, 48 images" || fail "scan did not count the generated images"
"$tl" models | grep -q "efficientnet_lite0" || fail "models did not list the bundled backbone"

echo "== the window, offscreen: opened, libraries loaded, a batch loaded, closed"
TL_STUDIO_CLOSE_AFTER_START=1 timeout 300 "$tl" gui "$work/data" || fail "the window did not open and close cleanly"
echo "WHEEL SMOKE TEST PASSED"
