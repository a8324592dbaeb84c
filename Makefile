# Errand's two commands: `make run` starts it, `make test` checks it.
# Both make the virtual environment in .venv first if it is missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test bench

run: $(VENV)/.installed
	$(BIN)/python scripts/run.py

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Throughput and latency figures: make bench ARGS="--jobs 2000 --workers 4"
bench: $(VENV)/.installed-test
	$(BIN)/python bench/throughput.py $(ARGS)

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Errand needs Python 3.11 or later on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The stamps make an install happen again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@
