# metrics-pipeline — `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo test test-fast lint format bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev tools

demo: $(STAMP) ## Embedded broker + load + worker + summary on this machine
	$(BIN)/metrics-pipeline demo

test: $(STAMP) ## Every test, slow end-to-end ones included (real broker, no Docker needed)
	$(BIN)/pytest -q

test-fast: $(STAMP) ## Skip the tests marked slow
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP) ## Throughput, memory, delay and accuracy benchmark (load/, ~10 min)
	$(BIN)/python -m load.bench $(BENCH_ARGS)

lint: $(STAMP) ## ruff (lint + format check), mypy --strict, hadolint (Dockerfile)
	$(BIN)/ruff check pipeline tests load
	$(BIN)/ruff format --check pipeline tests load
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix pipeline tests load
	$(BIN)/ruff format pipeline tests load

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
