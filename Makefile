# The two commands: `make demo` and `make test`. Both create or reuse .venv in this folder.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint chromium api-load unit integration compat bench bench-scale chaos accuracy clean

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
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy

# report.html and the API's page are checked in headless chromium (tests/test_analysis_outputs.py,
# tests/test_api_page.py through Playwright, never Playwright's own browser download), which skip
# without it except in CI: there it is installed (Debian's package) when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$(CI)" = true ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; \
	else echo "note: no chromium: the report's and the API page's browser tests skip (apt-get install -y chromium)"; fi

test: lint chromium
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile
	$(MAKE) compat

# The API's load test (not in `make test`): 50 concurrent uploads, no 5xx, every job done (~2 min);
# figures printed and written to api-load.json (docs/api.md).
api-load: $(VENV)/.test-installed
	POSEQUEUE_LOAD_TEST=1 $(BIN)/pytest -q -s tests/test_api_load.py

# The inf1 worker environment: Python 3.10, TensorFlow 2.10.1 (what the last tensorflow-neuron
# for inf1 is built on) and numpy 1.23 (TensorFlow 2.10 predates numpy 1.24's removals; the Neuron
# image pins the same). What runs there is the tests marked `compat` (pytest -m compat): what can
# differ there. The TensorFlow tests that skip elsewhere (runtimes, users' models, convert,
# compile); the worker's numerics under numpy 1.23 (model stages and their accuracy against
# MediaPipe, detector, regions, keypoints); what leans on the OS and on process start (pinning,
# core claims, worker launch and its refusals, a threaded worker's killed task process, malloc);
# what reads files and settings through libraries that are older on 3.10 (spec files through
# tomli, settings through pydantic-settings, stores, model files, job state); a job end to end
# through a real worker; and an import of every module.
# Not again there: the producer (decode, ingest, backpressure), the fleet commands (plan, up,
# Docker, Flower, metrics) and the pure-Python orchestration and policies (failure handling,
# redelivery, fan-in): the Neuron image has no producer extra (docker/Dockerfile.neuron),
# producers and fleet tools run on Python 3.11 images (Dockerfile.producer, Dockerfile.cpu), and
# pure Python behaves the same on 3.10 except where the standard library differs, which mypy
# checks against 3.10 in `make lint` (python_version = "3.10") and the import test catches at
# module level. Before, the whole suite ran there again: about half of `make test`.
# Two pytest processes (pytest-xdist, a test file per process at a time): the integration tests
# mostly wait (visibility timeouts, redeliveries, worker start-up, jobs crossing queues), so one
# process kept this 2-core machine 39% busy and took 15 min; two keep it ~83% busy and take
# ~7 min. Each process claims its own Redis databases and shared worker (tests/conftest.py).
# TEST_PROCESSES=0 runs the suite in this process, one test at a time.
TEST_PROCESSES ?= 2
COMPAT_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) \
                 $(shell python3.10 -c 'import sys; print(sys.executable)' 2>/dev/null))
COMPAT_VENV ?= .venv-compat

$(COMPAT_VENV)/.installed: pyproject.toml Makefile
	$(COMPAT_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install --quiet -e ".[test]" "tensorflow-cpu==2.10.1" "numpy<1.24"
	touch $@

compat:
	@if [ -z "$(COMPAT_PYTHON)" ]; then \
	  echo "compat: no Python 3.10 found (set COMPAT_PYTHON=/path/to/python3.10): the worker's" \
	       "inf1 environment (TensorFlow 2.10.1, numpy 1.x) and the TensorFlow tests were NOT run"; \
	  test "$(CI)" != true; \
	else \
	  $(MAKE) $(COMPAT_VENV)/.installed && $(COMPAT_VENV)/bin/pytest -m compat -n $(TEST_PROCESSES) --dist loadfile; \
	fi

unit: $(VENV)/.test-installed
	$(BIN)/pytest -m "not integration"

integration: $(VENV)/.test-installed
	$(BIN)/pytest -m integration

# MediaPipe's own Pose solution in a venv of its own (it pins protobuf 4): the accuracy
# references and perf.py's mediapipe_sequential section.
MP_VENV ?= .venv-mediapipe
$(MP_VENV)/.installed:
	test -x $(MP_VENV)/bin/python || $(PYTHON) -m venv $(MP_VENV)
	$(MP_VENV)/bin/python -m pip install --quiet mediapipe==0.10.14 av scikit-image pillow
	touch $@

# Ray for benchmarks/ray_data.py only, never a posequeue dependency (tested: ray 2.60.0, Python 3.11).
BENCH_VENV ?= .venv-bench
BENCH_PYTHON ?= python3.11
RAY_VERSION ?= 2.60.0
$(BENCH_VENV)/.installed: pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e ".[all]" "ray[data]==$(RAY_VERSION)"
	touch $@

# Figures as JSON (perf.py: efficiency on the CPU and with the model off the host, batch sweep,
# producer, latency, layouts, MediaPipe sequential, Redis during a 2-hour job, ~20 min;
# spine.py: raw loops, end to end, Redis peak, accuracy, ~2 min; ray_data.py: posequeue against Ray Data, 3-5 min).
bench: $(VENV)/.test-installed $(MP_VENV)/.installed $(BENCH_VENV)/.installed
	$(BIN)/python benchmarks/perf.py --mediapipe-python $(MP_VENV)/bin/python
	$(BIN)/python benchmarks/spine.py
	$(BENCH_VENV)/bin/python benchmarks/ray_data.py

# Scale: N pinned workers (up to the cores less one), one Redis or payload shards, each payload
# codec, the model real and off the host, 640x360 to 1920x1080; JSON in scale-results.json.
# Bounded by SCALE_TIME_LIMIT seconds; installs nothing (see the script's docstring for a host
# without network).
SCALE_TIME_LIMIT ?= 540
bench-scale: $(VENV)/.test-installed
	$(BIN)/python benchmarks/scale.py --time-limit $(SCALE_TIME_LIMIT)

# The fault campaign: every fault class (workers killed, messages lost or repeated, Redis
# SIGKILLed and restarted on its append-only file, the store unreachable or slow), 10 trials
# each against real workers, Redis and stores; a table of how each job ended
# (docs/reliability.md). Exits 1 if any job was stuck or wrong. `make test` runs a short version.
CHAOS_TRIALS ?= 10
chaos: $(VENV)/.test-installed
	$(BIN)/python benchmarks/chaos.py --trials $(CHAOS_TRIALS) --out chaos.json

# The accuracy references: regenerates the test videos and MediaPipe's outputs for them in
# tests/fixtures/accuracy (committed).
accuracy: $(MP_VENV)/.installed
	$(MP_VENV)/bin/python scripts/make_accuracy_videos.py
	$(MP_VENV)/bin/python scripts/accuracy_reference.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
