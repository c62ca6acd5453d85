# Everything a newcomer or CI needs, from the project's own files: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install demo serve test lint lint-infra format bench bench-smoke clean

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	@echo "Installing the pinned Python packages into $(VENV) (Azure SDKs, MSAL, pytest, ruff, schemathesis):"
	@echo "  about 45 s the first time; later runs skip this until requirements*.txt change."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Azurite, the Blob Storage emulator (pinned in package.json / package-lock.json).
$(NODE_STAMP): package.json package-lock.json
	@echo "Installing Azurite, the Blob Storage emulator, into node_modules (pinned, about 30 s the first time)."
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Runs the timer function once against the local stand-ins and a simulated partner.
## Options: make demo ARGS="--customers 10000 --page-size 200 --latency 0.05" (ARGS=--help lists them).
demo: install
	@$(PY) -m devstack.demo $(ARGS)

## Keeps the stand-ins and the local Functions host running (Ctrl+C stops them).
## Options: make serve ARGS="--customers 10000 --port 0 --quiet" (ARGS=--help lists them).
serve: install
	@$(PY) -m devstack.serve $(ARGS)

## Everything CI checks: lint (code and infra) and the whole test suite.
test: install lint
	$(PY) -m pytest -q

lint: install lint-infra
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint-infra:
	bash infra/check.sh

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Performance figures (not part of CI; see README "Performance").
bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .demo .venv-infra
