# Short verbs for a newcomer. Every target bootstraps what it needs:
# a .venv in the repo root (Python deps) and node_modules (the aws-cdk CLI).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FUZZ_STAMP := $(VENV)/.installed-fuzz
NPM_STAMP := node_modules/.installed

# aws-cdk-lib runs on jsii, which runs on Node.js. Node 20 (what many machines
# still have) is past its end of life and jsii says so on every synth; we
# install Node 22 from npm into node_modules and put it first on PATH instead.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: help venv test lint typecheck unit demo synth bench fuzz faults check-cdk-floor clean

help:
	@echo "make demo   local end-to-end run: registry, image, index, verify, synth"
	@echo "make test   lint, type-check and the whole test suite"
	@echo "make synth  cdk synth of the sample app into cdk.out/"
	@echo "make bench  speed and memory benchmarks (ratios against baselines)"
	@echo "make fuzz   long fuzzing pass over the parsers"
	@echo "make faults registry and network faults while indexing: the outcome table"
	@echo "make check-cdk-floor  the CDK tests against the oldest aws-cdk-lib pyproject.toml allows"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

$(NPM_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) $(NPM_STAMP)
	scripts/install-system-deps.sh
	$(VENV)/bin/pytest

test: lint typecheck unit

demo: $(STAMP) $(NPM_STAMP)
	scripts/install-system-deps.sh
	$(PY) scripts/demo.py

synth: $(STAMP) $(NPM_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cdk synth --quiet

bench: $(STAMP)
	$(PY) bench/run.py

$(FUZZ_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,fuzz]'
	touch $@

fuzz: $(FUZZ_STAMP)
	$(PY) bench/fuzz.py

faults: $(STAMP)
	scripts/install-system-deps.sh
	$(PY) bench/faults.py

# Not part of `make test`: it installs another aws-cdk-lib into a throwaway venv.
check-cdk-floor: $(NPM_STAMP)
	scripts/check-cdk-floor.sh

clean:
	rm -rf cdk.out .bench .demo .pytest_cache .mypy_cache .ruff_cache
