# The two commands a newcomer needs: `make dev` and `make test`. Both create .venv when missing and
# reinstall only when pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install

.PHONY: install dev test lint unit integration e2e chaos bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: install
	$(BIN)/condense dev $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -p no:cacheprovider --durations=15 --ignore=tests/chaos -m "not drill" $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

e2e: install
	$(BIN)/pytest -q tests/e2e

# Drills that kill and restart each part of a stack under load, and API fuzzing (minutes; PostgreSQL
# and tansu needed). Not part of `make test`.
chaos: install
	$(BIN)/pytest -q -p no:cacheprovider -m drill tests/e2e
	RUN_CHAOS=1 $(BIN)/pytest -q -s -p no:cacheprovider tests/chaos $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
