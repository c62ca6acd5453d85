# Everything a newcomer or CI needs, from the project's own files: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2
LOCK_VENV := .venv-lock
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

.PHONY: install demo serve test lint lint-infra format bench bench-smoke lock clean

install: $(PY_STAMP) $(NODE_STAMP)

# requirements-dev.txt locks every package (runtime ones included) with its hashes: see `make lock`.
$(PY_STAMP): requirements.txt requirements-dev.txt
	@echo "Installing the pinned Python packages into $(VENV) (Azure SDKs, MSAL, pytest, ruff, mypy, schemathesis):"
	@echo "  about 45 s the first time; later runs skip this until requirements*.txt change."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
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

## Everything CI checks: lint (code and infra) and the whole test suite, with the coverage floor of shared/
## (branch coverage; fail_under in pyproject.toml). The suite runs in parallel (pytest-xdist, one worker per
## core, each with its own Azurite and stand-ins on free ports; a module's tests stay on one worker so its
## shared fixtures start once; the longest modules first, as tests/conftest.py orders them) and says how
## long it took. TEST_WORKERS=0 runs it in this process alone.
TEST_WORKERS ?= auto
test: install lint
	@started=$$(date +%s); \
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --cov --cov-report=term-missing:skip-covered; \
	status=$$?; elapsed=$$(( $$(date +%s) - started )); \
	echo "make test: the test suite took $$((elapsed / 60)) min $$((elapsed % 60)) s ($(TEST_WORKERS) workers)"; \
	exit $$status

lint: install lint-infra
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) .ci/sizes.py shared function_app.py --max 60 --file-max 400
	$(PY) .ci/sizes.py tests --max 0 --file-max 800
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

lint-infra:
	bash infra/check.sh

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Performance figures (not part of CI; see docs/performance.md), about 10 minutes on 2 cores.
## Options: make bench ARGS="--quick" or ARGS="--only events" (ARGS=--help lists them).
bench: install
	$(PY) -m bench $(ARGS)

## Recompiles requirements.txt, requirements-dev.txt and requirements-infra.txt from requirements*.in: every package pinned and
## hashed (docs/development.md "Dependencies"). Upgrades nothing that the .in files do not name with a new version.
lock:
	[ -x $(LOCK_VENV)/bin/pip-compile ] || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip-tools==$(PIP_TOOLS_VERSION)
	$(PIP_COMPILE) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in
	$(PIP_COMPILE) --output-file requirements-infra.txt requirements-infra.in

clean:
	rm -rf $(VENV) $(LOCK_VENV) node_modules .pytest_cache .ruff_cache .mypy_cache .coverage .demo .venv-infra
