# The two commands of the README: `make run` and `make test`. Both create the virtual
# environment on first use and reinstall the project when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup clean screenshots bench

run: $(STAMP)
	$(BIN)/tl-studio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

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

clean:
	rm -rf $(VENV) build dist *.egg-info
