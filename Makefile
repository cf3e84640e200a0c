# Everything a fresh Debian 12 + Python 3.11 machine needs goes through these targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Keep demo and test state out of the user's real BentoML home.
export BENTOML_DO_NOT_TRACK := true

.PHONY: venv demo test lint clean

$(BIN)/nb2prod: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/nb2prod

demo: venv
	BENTOML_HOME=$(CURDIR)/.bentoml $(BIN)/python scripts/demo.py

# Two pytest-xdist workers (PYTEST_WORKERS=0: one process). Each test file runs on one worker, the
# podman files on the same one (tests/conftest.py SHARED_WORKER); the longest work is sent first.
PYTEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check toolkit tests benchmarks scripts
	$(BIN)/ruff format --check toolkit tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) dist .bentoml
