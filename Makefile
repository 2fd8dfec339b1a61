# openfaas-iam: `make run` and `make test` do all their own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
IDP := tests/idp/node_modules/.package-lock.json
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run token test unit lint format fuzz soak scale bench clean browser

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> setting up $(VENV) (Python $$($(PYTHON) -c 'import sys;print(sys.version.split()[0])'))"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

$(IDP): tests/idp/package.json tests/idp/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 20+) is needed for the test OpenID Provider"; exit 1; }
	@echo "==> installing the test OpenID Provider (npm ci)"
	@cd tests/idp && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

browser: # headless Chromium for the sign-in page test (Debian packages; skipped with a reason when not installable)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "==> installing Chromium for the browser test" && \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)); } || \
	  echo "(Chromium is not installed and could not be: the browser test will be skipped)"

run: $(STAMP) ## run the bundle locally behind a gateway on 127.0.0.1 (PORT, default 8080)
	@$(BIN)/openfaas-iam-gateway

token: $(STAMP) ## an API token for trying make run without an IdP (CLAIMS='{"sub": ..., "groups": [...]}')
	@$(BIN)/python scripts/local_token.py

test: $(STAMP) $(IDP) browser ## the whole test suite, end-to-end tests against real peers included
	@$(BIN)/ruff check .
	@$(BIN)/mypy --no-error-summary
	@out=$$($(BIN)/lint-imports --no-cache 2>&1) || { echo "$$out"; exit 1; }; echo "import contracts: $$(echo "$$out" | grep -o '[0-9]* kept, [0-9]* broken')"
	@$(BIN)/openfaas-iam lint -q examples/
	@$(BIN)/openfaas-iam test examples/iam.test.yaml --config examples/iam.yaml
	@$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP) ## only the fast unit tests
	@$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (check and format), mypy on the core, the import layers, and the example IAM documents
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/openfaas-iam lint examples/

format: $(STAMP) ## format the code
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

bench: $(STAMP) ## speed vs floor and peers, side by side; writes docs/performance.md (a few minutes)
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1)); } || \
	  echo "(wrk not available: using the built-in Python load client)"
	@$(BIN)/python scripts/bench.py

fuzz: $(STAMP) $(IDP) ## 100,000+ generated requests against every function; writes docs/reliability.md
	@FUZZ_EXAMPLES=2000 $(BIN)/pytest -q tests/fuzz/test_properties.py
	@$(BIN)/python scripts/http_fuzz.py --requests $${FUZZ_REQUESTS:-100000}

soak: $(STAMP) $(IDP) ## fixed-rate mixed load on loopback (SOAK_SECONDS, SOAK_RATE); writes docs/reliability.md
	@$(BIN)/python scripts/soak.py --seconds $${SOAK_SECONDS:-300} --rate $${SOAK_RATE:-60}

scale: $(STAMP) $(IDP) ## 3+3 replicas under load, every key rotating, Redis restarted (SCALE_SECONDS, SCALE_RATE)
	@$(BIN)/python scripts/scale.py --seconds $${SCALE_SECONDS:-60} --rate $${SCALE_RATE:-50} --write

clean: ## remove the build contexts and local state (keeps .venv)
	rm -rf build .local .pytest_cache
