# The two commands a newcomer needs: `make run` and `make test`. Everything they need is
# installed from this repository's own files (requirements*.txt, package*.json).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# gcloud-tasks-emulator needs protobuf < 5, so it lives in a venv of its own.
TASKS_VENV := .venv-tasks-emulator
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: test lint typecheck unit contract bench setup clean

setup: $(VENV)/.installed node_modules/.installed $(TASKS_VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(TASKS_VENV)/.installed: tests/support/requirements-tasks-emulator.txt
	$(PYTHON) -m venv $(TASKS_VENV)
	$(TASKS_VENV)/bin/pip install --quiet --upgrade pip
	$(TASKS_VENV)/bin/pip install --quiet -r tests/support/requirements-tasks-emulator.txt
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
	rm -rf $(VENV) $(TASKS_VENV) node_modules .local .mypy_cache .ruff_cache .pytest_cache
