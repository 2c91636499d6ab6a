# KiwiClaw: `make dev` runs everything on one machine, `make test` runs the whole suite.
# Both start Postgres and Redis embedded under ./var/ unless DATABASE_URL / REDIS_URL are set.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test venv browser lint

venv: $(STAMP)

# Reinstalls only when the dependencies or the venv script change, so an unchanged tree goes straight on.
$(STAMP): pyproject.toml scripts/make-venv.sh
	@PYTHON="$(PYTHON)" bash scripts/make-venv.sh $(VENV)
	@# uv installs what pip would (same resolver inputs, same versions), in parallel: seconds instead of minutes.
	@# --compile-bytecode: pip's default, not uv's. Without it, where PYTHONDONTWRITEBYTECODE is set every new
	@# process compiles the libraries it imports from source (seconds per server start for the smart router's).
	$(PY) -m pip install --quiet --disable-pip-version-check 'uv>=0.9,<1'
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]'
	@touch $@

# DEV_ARGS passes options on, e.g. make dev DEV_ARGS="--port 8001".
dev: venv
	$(PY) -m scripts.services dev $(DEV_ARGS)

browser:
	@bash scripts/install-browser.sh

# PYTEST_ARGS passes options on, e.g. make test PYTEST_ARGS="tests/ops -x".
test: venv browser
	$(PY) -m scripts.services run-tests -- $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
