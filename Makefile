# cxrkit: `make setup` (idempotent), `make test`, `make demo` (the main job for now).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cxrkit-installed
DATA ?= ../shared/data/kaggle-pneumonia/train
OUT ?= runs/demo

.PHONY: fuzz setup test test-all lint demo clean ship serve

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; torch==2.14.1 comes from the machine's local wheel cache.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

test-all: lint
	$(BIN)/pytest -q -m ""

# The property-based suite at length (Hypothesis decoders and form fields, Schemathesis on every route).
fuzz: setup
	$(BIN)/pytest -q -m slow tests/io/test_decode_properties.py tests/serving/test_form_properties.py tests/serving/test_schema_fuzz.py

demo: setup
	@test -e "$(DATA)" || { echo "No dataset at $(DATA). Download the Kaggle chest X-ray pneumonia set (https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia) and run: make demo DATA=path/to/chest_xray/train"; exit 2; }
	$(BIN)/cxr data summary $(DATA) --out $(OUT)
	$(BIN)/cxr data split $(DATA) --out $(OUT)/manifest.csv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs

# Copy a trained bundle into the package as a shipped model: make ship NAME=pneumonia
ship:
	test -f runs/$(NAME)/bundle/config.json
	rm -rf src/cxrkit/models/shipped/$(NAME).tmp && cp -r runs/$(NAME)/bundle src/cxrkit/models/shipped/$(NAME).tmp
	rm -rf src/cxrkit/models/shipped/$(NAME) && mv src/cxrkit/models/shipped/$(NAME).tmp src/cxrkit/models/shipped/$(NAME)

# The web page and REST API on http://127.0.0.1:8000 (every shipped/installed model; SQLite case store
# under CXRKIT_HOME; the local index at CXRKIT_INDEX or CXRKIT_HOME/index if one is built).
serve: setup
	$(BIN)/cxr serve --host 127.0.0.1 --port 8000
