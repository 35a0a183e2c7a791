# The two commands: `make demo` and `make test`. Both create or reuse .venv in this folder.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit integration bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# What the demo needs (producer, CPU runtime, embedded Redis, preview) ...
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

# ... and the test tools on top (pytest, moto's S3 server, ruff, mypy).
$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/posequeue demo

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: $(VENV)/.test-installed
	$(BIN)/pytest -m "not integration"

integration: $(VENV)/.test-installed
	$(BIN)/pytest -m integration

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/spine.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
