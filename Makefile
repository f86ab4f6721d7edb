# One Makefile for the whole project. Every target bootstraps .venv on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Stacks are discovered from the tree: one folder with a template.yaml per stack.
STACKS := $(patsubst aws_stacks/%/template.yaml,%,$(wildcard aws_stacks/*/template.yaml))
REGION ?= us-east-1
# `sam build` needs an interpreter matching the Lambda runtime (python3.13).
PY313_PREFIX := $(shell pyenv prefix 3.13 2>/dev/null || pyenv prefix 3.13.0 2>/dev/null)
SAM_PATH := $(if $(PY313_PREFIX),$(PY313_PREFIX)/bin:,)$(abspath $(BIN)):$(PATH)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= $(REGION)
PYTEST_ARGS ?=
BENCH_ARGS ?=
# checkov pins an old boto3, so it lives in its own small environment.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
CHECKOV_VERSION ?= 3.3.30

# The ingest stack first: the others import its topic.
INGEST_STACK := StatusCallbackHandler
DEPLOY_ORDER := $(INGEST_STACK) $(filter-out $(INGEST_STACK),$(STACKS))
SAM_ARGS ?=

.PHONY: help venv lint format templates security unit test build deploy run load bench clean

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv with the project and its dev tools

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $(CHECKOV_STAMP)

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

templates: $(STAMP) ## cfn-lint and sam validate --lint over every stack
	$(BIN)/cfn-lint aws_stacks/*/template.yaml
	@for stack in $(STACKS); do \
		echo "sam validate --lint $$stack"; \
		PATH="$(SAM_PATH)" $(BIN)/sam validate --lint --region $(REGION) \
			--template-file aws_stacks/$$stack/template.yaml || exit 1; \
	done

security: $(CHECKOV_STAMP) ## checkov over every stack: zero failed checks; skips carry reasons in the templates
	$(CHECKOV_VENV)/bin/checkov --directory aws_stacks --framework cloudformation --quiet --compact

unit: $(STAMP) ## pytest only
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint security unit ## Everything CI checks: lint, types, checkov, template checks and all tests

build: $(STAMP) ## sam build every stack into .aws-sam/<stack>
	@for stack in $(STACKS); do \
		echo "sam build $$stack"; \
		PATH="$(SAM_PATH)" $(BIN)/sam build --region $(REGION) \
			--template-file aws_stacks/$$stack/template.yaml \
			--build-dir .aws-sam/$$stack --cache-dir .aws-sam/cache/$$stack || exit 1; \
	done

deploy: build ## sam deploy every stack from samconfig.toml, ingest first (STACK=<Name> for one; SAM_ARGS for more flags)
	@for stack in $(if $(STACK),$(STACK),$(DEPLOY_ORDER)); do \
		echo "sam deploy $$stack"; \
		PATH="$(SAM_PATH)" $(BIN)/sam deploy --config-file samconfig.toml --config-env $$stack $(SAM_ARGS) || exit 1; \
	done

run: $(STAMP) ## Run the whole pipeline on this machine until Ctrl-C (AWS_PORT, PORT, TWILIO_AUTH_TOKEN)
	$(BIN)/twilio-callbacks local

load: $(STAMP) ## Full-size burst (~10,000 callbacks, 32 concurrent) through the local pipeline, reconciled; writes load-report.json
	RELIABILITY_LOAD_LIFECYCLES=3000 RELIABILITY_LOAD_CONCURRENCY=32 RELIABILITY_LOAD_REPORT=load-report.json \
		$(BIN)/pytest tests/reliability/test_load.py -s -p no:cacheprovider

bench: $(STAMP) ## Benchmark the local pipeline, price it per million callbacks; writes bench-results.json
	$(BIN)/twilio-callbacks bench $(BENCH_ARGS)

clean: ## Remove build output and caches (keeps the virtual environments)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
