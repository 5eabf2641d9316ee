# The two commands a newcomer needs: `make run` and `make test`. Everything they need is
# installed from this repository's own files (requirements*.txt, package*.json).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# gcloud-tasks-emulator needs protobuf < 5, so it lives in a venv of its own.
TASKS_VENV := .venv-tasks-emulator
# checkov (the infra/ scanner) pins packages the main venv pins differently: a venv of its own.
CHECKOV_VENV := .venv-checkov
# The PATH before .venv/bin is put first: pip runs from the system's Python (.venv has no pip).
SYSTEM_PATH := $(PATH)
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Independent prerequisites build side by side: the four environments of `setup`, then lint
# and typecheck (about half a minute less from a fresh clone).
MAKEFLAGS += --jobs=4
# Python's bytecode cache stays on even where the environment turns it off: a test run starts
# hundreds of Python processes (every function of every stack), and each would compile this
# tree's modules again (about 0.1 CPU s per function process, 4 s per pytest worker).
unexport PYTHONDONTWRITEBYTECODE

# make run STORE=firestore runs the same job on a local Firestore emulator.
STORE ?= sqlite
# make run CLOUD=emulated runs the deployed shape: every production adapter on Google's
# emulators (Firestore, Cloud Tasks, Pub/Sub, Cloud Storage), with infra/'s environment.
CLOUD ?= local
PORT_BASE ?= 8081
# Where the stack keeps its state and logs; another directory (and PORT_BASE) runs a second stack.
STATE_DIR ?= .local
# make dev ROOTS="~/notes ~/papers": folders of your own the stack may ingest.
ROOTS ?=
ALLOW := $(foreach root,$(ROOTS),--allow $(root))

.PHONY: run dev test pytest lint typecheck bench bench-search soak setup clean

setup: $(VENV)/.installed node_modules/.installed $(TASKS_VENV)/.installed $(CHECKOV_VENV)/.installed

# uv builds the three venvs: from a fresh clone it installs the main venv's ~120 packages in
# about 6 s where pip took 30 s, with the same pinned versions from the same PyPI. uv itself is
# one pinned wheel, put in .uv/ by the system's pip (no venv needed for it).
UV_VERSION := 0.13.10
# The system's certificate store, as pip and npm use: uv's own bundle does not hold the CA
# of a TLS-inspecting proxy, so behind one (as here, unless SSL_CERT_FILE names it) it fails.
export UV_SYSTEM_CERTS := 1
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
UV_STAMP := $(UV_DIR)/.uv-$(UV_VERSION)
$(UV_STAMP):
	rm -rf $(UV_DIR)
	PATH="$(SYSTEM_PATH)" $(PYTHON) -m pip install --quiet --disable-pip-version-check \
		--target $(UV_DIR) uv==$(UV_VERSION)
	touch $@

# A venv is rebuilt from scratch when its requirements change (--clear), like a fresh clone's.
# uv takes the base interpreter behind $(PYTHON), even when PATH finds .venv's first.
define uv_venv
	$(UV) venv --quiet --clear --python $(PYTHON) $(1)
	$(UV) pip install --quiet --python $(1)/bin/python -r $(2)
endef

$(VENV)/.installed: requirements.txt requirements-local.txt requirements-dev.txt pyproject.toml \
		| $(UV_STAMP)
	$(call uv_venv,$(VENV),requirements-dev.txt)
	# The `fanout` command (pyproject.toml's console script), editable: it runs this tree.
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(TASKS_VENV)/.installed: tests/support/requirements-tasks-emulator.txt | $(UV_STAMP)
	$(call uv_venv,$(TASKS_VENV),tests/support/requirements-tasks-emulator.txt)
	touch $@

$(CHECKOV_VENV)/.installed: tests/support/requirements-checkov.txt | $(UV_STAMP)
	$(call uv_venv,$(CHECKOV_VENV),tests/support/requirements-checkov.txt)
	touch $@

# The page tests drive Debian's chromium through Playwright (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq --no-install-recommends chromium

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# The test harness starts (and always stops) the emulators it needs: see tests/support/.
# Two workers, a file each at a time (which keeps a module's shared stack on one worker), the
# longest files first (tests/support/ordering.py). A third gained nothing on 2 cores (6 min 3 s
# of pytest, against 5 min 44 s and 6 min 31 s on two; later, back to back, 5 min 23 s against
# 5 min 6 s on two) for more CPU. Lint and typecheck run beside them.
TEST_WORKERS ?= 2
test: lint typecheck pytest

pytest: setup $(CHROMIUM)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# Start the local stack, ingest the sample corpus with a live progress bar, print the result,
# stop everything.
run: setup
	$(BIN)/python -m functions.cli run --store $(STORE) --cloud $(CLOUD) --port-base $(PORT_BASE) \
		--state-dir $(STATE_DIR) $(ALLOW)

# Start the local stack and keep it up (Ctrl-C, `kill` or a closed terminal stops every
# process it started).
dev: setup
	$(BIN)/python -m functions.cli dev --store $(STORE) --cloud $(CLOUD) --port-base $(PORT_BASE) \
		--state-dir $(STATE_DIR) $(ALLOW)

bench: setup bench-search
	$(BIN)/python -m bench.store
	$(BIN)/python -m bench.e2e
	$(BIN)/python -m bench.logs
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.priority
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.write_memory

# bench.search's corpus is the Python documentation Debian ships (apt, not PyPI).
PYTHON_DOC := /usr/share/doc/python3.11/html
$(PYTHON_DOC):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq --no-install-recommends python3.11-doc

# Search quality (recall@1, recall@5, MRR@5), e.g. BENCH_SEARCH_ARGS="--queries 50".
BENCH_SEARCH_ARGS ?=
bench-search: setup $(PYTHON_DOC)
	$(BIN)/python -m bench.search $(BENCH_SEARCH_ARGS)

# Minutes of load on the local stack with its worker killed every minute (not part of
# `make bench`): exact counts, restarts, peak memory. make soak SOAK_MINUTES=2 for less.
SOAK_MINUTES ?= 5
soak: setup
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) $(TASKS_VENV) $(CHECKOV_VENV) $(UV_DIR) node_modules .local .mypy_cache .ruff_cache .pytest_cache
