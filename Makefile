# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
JS := tests/js

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

$(JS)/node_modules/.installed: $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Start the gateway: `make run` on its embedded defaults (SQLite store in the per-user data
## directory, the mock model, a first key printed once), or `make run PORT=8081 CONFIG=tollway.yaml`.
PORT ?=
CONFIG ?=
run: $(VENV)/.runtime
	$(BIN)/tollway serve $(if $(CONFIG),--config '$(CONFIG)') $(if $(PORT),--port $(PORT))

## Lint, type-check and run the whole test suite. Files run in 3 parallel workers (each file in
## one worker, so module fixtures are shared as written): the suite waits on subprocesses far
## more than it computes. Bytecode writing is on for the run even where the environment turns it
## off: pytest caches its assertion rewriting in __pycache__ only then, and each worker otherwise
## rewrites ~350 modules again (~8 s of CPU per worker).
test: $(VENV)/.test $(JS)/node_modules/.installed lint
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n 3 --dist loadfile

lint: $(VENV)/.test
	$(BIN)/ruff check tollway tests bench tools
	$(BIN)/python tools/check_layout.py
	$(BIN)/mypy

## The benchmark (not part of the tests): direct vs through Tollway, same run.
bench: $(VENV)/.test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(JS)/node_modules .pytest_cache .mypy_cache .ruff_cache
