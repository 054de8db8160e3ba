# Two commands a newcomer needs: `make run` (everything locally) and `make test` (the whole suite).
# Both install what they need from this repository's own files.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
PORT ?= 7071
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install lint format test run bench bench-quick check-infra clean

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

run: install
	$(BIN)/python -m devhost up --port $(PORT)

bench: install
	$(BIN)/python -m bench --mode full

bench-quick: install
	$(BIN)/python -m bench --mode quick

# Offline checks of infra/, the workflow, the deployment package and the runbook; the settings check imports
# shared/settings.py, so it needs the app's .venv as well as its own .venv-infra.
check-infra: $(PY_STAMP)
	bash scripts/check_infra.sh

clean:
	rm -rf $(VENV) .venv-infra node_modules .local .pytest_cache .ruff_cache
