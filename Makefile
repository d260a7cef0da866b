# Two commands do all set-up on a fresh machine with only Python 3.11+:
#   make run    venv, install, `leadhub serve` (SQLite + embedded Redis, ./plugins.toml)
#   make test   venv, install, ruff + mypy --strict on hub/ + pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint typecheck pytest bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/leadhub serve --config plugins.toml --host $(HOST) --port $(PORT)

lint: $(BIN)/.installed
	$(BIN)/ruff check hub plugins tests bench

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# The tests that start no hub processes (pure units, plugins against their fakes, the
# contract kits), for the edit-test loop. Measured on 2 cores with
# LEADHUB_TEST_DATABASE_URL set: 6.5 minutes while it still held the reconcile stories
# (about 2 of them, now in tests/e2e), against 13.5 for `make test`.
test-fast: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit tests/plugins tests/kits $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
