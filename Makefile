# The two commands: `make demo` and `make test`. Both create or reuse .venv in this folder.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit integration bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/posequeue demo

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: $(BIN)/.installed
	$(BIN)/pytest -m "not integration"

integration: $(BIN)/.installed
	$(BIN)/pytest -m integration

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/spine.py
