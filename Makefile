# Conveyor's everyday commands; CI runs the same ones (.ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Third-party tools the tests run against the local AWS, kept out of Conveyor's own venv
# (ecs-deploy pins its own boto3 and click).
TOOLS := .venv-tools
export ECS_DEPLOY_BIN := $(CURDIR)/$(TOOLS)/bin/ecs

.PHONY: help install redis packages tools test test-fast lint typecheck format demo bench chaos clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml localaws/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The local AWS is a distribution of its own (the dev extra asks for it): from this tree.
	$(BIN)/pip install -q -e ./localaws -e '.[dev]'
	touch $@

install: $(BIN)/.installed ## Create the virtualenv and install Conveyor with its dev tools

redis: ## Install redis-server when missing (tests start their own on free ports)
	@scripts/ensure-redis

packages: ## Install Chromium and systemd-analyze when missing (tests drive them)
	@scripts/ensure-test-packages

$(TOOLS)/bin/ecs:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q ecs-deploy

tools: $(TOOLS)/bin/ecs ## Install third-party tools the compatibility tests drive (ecs-deploy)

test: install redis packages tools ## Run every test: the fast suites, then the slow ones
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)
	$(BIN)/pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: install redis ## Unit and service tests only (no processes)
	$(BIN)/pytest tests/unit tests/service $(PYTEST_ARGS)

lint: install ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install ## mypy --strict
	$(BIN)/mypy
	$(BIN)/mypy deploy/flowerconfig.py docs/examples

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: install redis ## Local Redis + local AWS + a worker: one good deployment, one rolled back
	$(BIN)/python -m scripts.demo

FLEET ?= 200
bench: install redis tools ## Deploy FLEET services with Conveyor and its peers; docs/bench/latest.json
	$(BIN)/python -m scripts.bench --fleet $(FLEET)

SEED ?= 1
MINUTES ?= 5
CHAOS_ARGS ?=
chaos: install redis ## A seeded fault campaign (SEED=N MINUTES=M); prints each invariant's result
	$(BIN)/python -m scripts.chaos --seed $(SEED) --minutes $(MINUTES) $(CHAOS_ARGS)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
