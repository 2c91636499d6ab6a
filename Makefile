# KiwiClaw: `make dev` runs everything on one machine, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: dev test venv lint

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@bash scripts/make-venv.sh $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

test: venv
	$(PY) -m scripts.services run-tests -- $(PY) -m pytest $(PYTEST_ARGS)

dev: venv
	$(PY) -m scripts.services dev

lint: venv
	$(VENV)/bin/ruff check .
