# The two commands of the README: `make run` and `make test`. Both create the virtual
# environment on first use and reinstall the project when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup clean screenshots bench package wheel install-desktop uninstall-desktop

run: $(STAMP)
	$(BIN)/tl-studio

# The suite runs as parallel workers (pytest-xdist, one per core, at most 4), each test file whole on one
# worker (so a file's module fixtures are built once), every test on one torch thread: on this project's
# 2-core machine about half the wall time of one process on both cores (667-816 s in five runs against
# 1,423 s), which spent much of its time importing, starting processes and waiting with a core idle. Files
# go out in collection order (--no-loadscope-reorder; xdist would otherwise send those with the most tests
# first), which tests/conftest.py starts with the longest files. A worker that dies (a crash in native
# code) ends the suite at once, naming the test it was running (--max-worker-restart=0): pytest-xdist 3.8
# restarting a worker under --dist=loadfile can wait forever (pytest-xdist issues 784 and 1323).
test: $(STAMP)
	QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --numprocesses=auto \
		--maxprocesses=4 --dist=loadfile --no-loadscope-reorder --max-worker-restart=0 --durations=15

setup: $(STAMP)

# torch and torchvision are pinned to releases this project is tested with; pip installs
# them first so the rest of the dependencies resolve against them.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python packaging/render_screenshots.py docs/screenshots

# ---- installers ---------------------------------------------------------------------------------
# `make package` builds the one-folder app dist/tl-studio/ with PyInstaller in its own build venv
# (build/package-venv), so the app bundles the CPU build of torch (about 1 GB in all) rather than the
# CUDA build the development venv holds (about 6 GB). TORCH_VARIANT=cuda bundles the CUDA build instead
# (torch and torchvision as `make setup` pins them, with the nvidia-* libraries).
TORCH_VARIANT ?= cpu
PACKAGE_VENV := build/package-venv
PACKAGE_BIN := $(PACKAGE_VENV)/bin
PACKAGE_STAMP := $(PACKAGE_VENV)/.installed-$(TORCH_VARIANT)
ifeq ($(TORCH_VARIANT),cuda)
PACKAGE_TORCH := "torch==2.14.1" "torchvision==0.29.1"
PACKAGE_TORCH_INDEX :=
else ifeq ($(TORCH_VARIANT),cpu)
# The newest CPU build at hand offline here is 2.13.0 (a wheel in pip's find-links); online, pip takes
# torch and torchvision "+cpu" from PyTorch's CPU index.
PACKAGE_TORCH := "torch==2.13.0+cpu" "torchvision==0.28.0"
PACKAGE_TORCH_INDEX := --extra-index-url https://download.pytorch.org/whl/cpu
else
$(error TORCH_VARIANT must be cpu or cuda, not $(TORCH_VARIANT))
endif

$(PACKAGE_STAMP): pyproject.toml packaging/torchvision_shim.py
	test -x $(PACKAGE_BIN)/python || $(PYTHON) -m venv $(PACKAGE_VENV)
	$(PACKAGE_BIN)/python -m pip install --quiet $(PACKAGE_TORCH_INDEX) $(PACKAGE_TORCH)
	$(PACKAGE_BIN)/python -m pip install --quiet . pyinstaller pyinstaller-hooks-contrib build
	$(PACKAGE_BIN)/python packaging/torchvision_shim.py build/torchvision-shim
	rm -f $(PACKAGE_VENV)/.installed-* && touch $@

package: $(PACKAGE_STAMP)
	rm -rf build/lib && $(PACKAGE_BIN)/python -m pip install --quiet --no-deps --force-reinstall .
	@start=$$(date +%s); \
	nice -n 10 $(PACKAGE_BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist \
		--workpath build/pyinstaller packaging/tl_studio.spec && \
	echo "Built dist/tl-studio/ ($(TORCH_VARIANT) torch) in $$(( $$(date +%s) - start )) s; its size: $$(du -sh dist/tl-studio | cut -f1)"

# The wheel and sdist that `pip install` / `pipx install` take (dist/tl_studio-*.whl).
wheel: $(PACKAGE_STAMP)
	rm -rf build/lib && $(PACKAGE_BIN)/python -m build --outdir dist .

# Menu entry, icons and .pt2/.onnx file associations for the current user (XDG dirs, no root).
# The command the menu runs: the packaged app when built, else the venv's tl-studio; TL_STUDIO=... overrides.
TL_STUDIO ?= $(firstword $(wildcard $(CURDIR)/dist/tl-studio/tl-studio) $(CURDIR)/$(BIN)/tl-studio)
install-desktop:
	packaging/linux/install_desktop.sh "$(TL_STUDIO)"

uninstall-desktop:
	packaging/linux/install_desktop.sh --uninstall

clean:
	rm -rf $(VENV) build dist *.egg-info
