# The two commands a newcomer needs: `make run` and `make test`. Everything they need is
# installed from this repository's own files (requirements*.txt, package*.json).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: test lint typecheck unit contract bench setup clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# The test harness starts (and always stops) the emulators it needs: see tests/support/.
test: lint typecheck
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m bench.store

clean:
	rm -rf $(VENV) node_modules .local .mypy_cache .ruff_cache .pytest_cache
