# Conveyor's everyday commands; CI runs the same ones (.ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes for the tiers that mostly wait (on rollouts, workers, subprocesses): each has
# its own redis-server and local AWS. The more a tier waits, the more processes it gets
# (docs/development.md has the measurements); JOBS=N sets them all, and JOBS=0 runs every tier
# in this process.
JOBS ?=
AWS_JOBS ?= $(or $(JOBS),4)
E2E_JOBS ?= $(or $(JOBS),6)
SLOW_JOBS ?= $(or $(JOBS),4)
# `make test` runs the end-to-end and slow tiers as one session: the slow tier's tests fill the
# processes while the chaos campaign, the longest test, runs.
E2E_SLOW_JOBS ?= $(or $(JOBS),7)
xdist = $(if $(filter 0,$(1)),,-n $(1))
# pytest's "no tests ran" (5) is no failure for a tier that PYTEST_ARGS filtered down to nothing.
NO_TESTS_OK := || [ $$? -eq 5 ]
# Third-party tools the tests run against the local AWS, kept out of Conveyor's own venv
# (ecs-deploy pins its own boto3 and click).
TOOLS := .venv-tools
export ECS_DEPLOY_BIN := $(CURDIR)/$(TOOLS)/bin/ecs

.PHONY: help install lock redis packages tools test test-fast test-aws test-e2e test-slow lint typecheck format demo bench chaos clean

help: ## Show the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# Every third-party package comes from requirements.lock, pinned with its hashes (`make lock`
# refreshes it); the two packages of this tree are installed editable on top, without
# dependencies, so nothing unpinned gets in. A changed lock or pyproject reinstalls.
$(BIN)/.installed: requirements.lock pyproject.toml localaws/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.lock
	# Remove what the lock no longer lists (pip-sync comes from the lock).
	$(BIN)/pip-sync -q requirements.lock
	# The local AWS is a distribution of its own (the dev extra asks for it): from this tree.
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e ./localaws -e .
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed ## Create the virtualenv and install Conveyor with its dev tools

LOCK_UPGRADE ?= --upgrade
lock: ## Refresh requirements.lock: the newest versions pyproject.toml allows (LOCK_UPGRADE= keeps pins)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$$(grep -E '^pip-tools==' requirements.lock | cut -d' ' -f1)"
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile -q $(LOCK_UPGRADE) --generate-hashes --strip-extras \
		--no-emit-find-links --no-emit-index-url \
		--unsafe-package conveyor --unsafe-package conveyor-localaws \
		-o requirements.lock requirements.in
	rm -f $(BIN)/.installed

redis: ## Install redis-server when missing (tests start their own on free ports)
	@scripts/ensure-redis

packages: ## Install Chromium and systemd-analyze when missing (tests drive them)
	@scripts/ensure-test-packages

$(TOOLS)/bin/ecs:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q ecs-deploy

tools: $(TOOLS)/bin/ecs ## Install third-party tools the compatibility tests drive (ecs-deploy)

# The tiers (docs/development.md); tests/conftest.py marks each test with its tier.
test: install redis packages tools ## Run every tier, as CI does: fast, aws, then e2e and slow together
	$(MAKE) --no-print-directory test-fast test-aws
	$(BIN)/pytest tests -m "e2e or slow" $(call xdist,$(E2E_SLOW_JOBS)) $(PYTEST_ARGS) $(NO_TESTS_OK)

test-fast: install redis ## The everyday loop: unit, service, store, the fake gateway (one Redis)
	$(BIN)/pytest tests/unit tests/service tests/store tests/gateway -m "fast and not slow" $(PYTEST_ARGS) $(NO_TESTS_OK)

test-aws: install redis tools ## The local-AWS tier: tests/localaws and the boto gateway
	$(BIN)/pytest tests/localaws tests/gateway -m "aws and not slow" $(call xdist,$(AWS_JOBS)) $(PYTEST_ARGS) $(NO_TESTS_OK)

test-e2e: install redis packages tools ## The end-to-end tier: workers, the CLI, Redis, the local AWS
	$(BIN)/pytest tests/integration -m "e2e and not slow" $(call xdist,$(E2E_JOBS)) $(PYTEST_ARGS) $(NO_TESTS_OK)

test-slow: install redis packages tools ## The long fault-injection and fleet suites
	$(BIN)/pytest tests -m slow $(call xdist,$(SLOW_JOBS)) $(PYTEST_ARGS) $(NO_TESTS_OK)

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
REPEAT ?= 1
BENCH_ARGS ?=
bench: install redis tools ## Deploy FLEET services with Conveyor and its peers (REPEAT=N runs each N times)
	$(BIN)/python -m scripts.bench --fleet $(FLEET) --repeat $(REPEAT) $(BENCH_ARGS)

SEED ?= 1
MINUTES ?= 5
CHAOS_ARGS ?=
chaos: install redis ## A seeded fault campaign (SEED=N MINUTES=M); prints each invariant's result
	$(BIN)/python -m scripts.chaos --seed $(SEED) --minutes $(MINUTES) $(CHAOS_ARGS)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
