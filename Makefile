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

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check toolkit tests benchmarks scripts
	$(BIN)/ruff format --check toolkit tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) dist .bentoml
