# mlgate: the two commands a new user needs are `make demo` and `make test`.
# Every target installs what it needs itself (venv, pip, npm, Debian packages).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.PHONY: demo test test-fast bench schemas system node venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Demo: mlgate with full MLflow (extras local + evaluate: the embedded store, validate.evaluation)
# and scikit-learn; `pip install mlgate` alone is the small set for a tracking server.
$(VENV)/.demo: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

# Tests need the dev extras too (linters, CI runners, bot libraries).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.demo

venv: $(STAMP)

node_modules/.stamp: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

node: node_modules/.stamp

# Debian packages the tests run for real: rsync (gitlab-ci-local), wrk (bench),
# prometheus (canary analysis), prometheus-alertmanager (alert retrains), postgresql (bot store),
# chromium (the dashboard's browser test), libpq5 (psycopg loads it: mlgate[bot] has no
# psycopg-binary). Installed only when missing.
SYSTEM_TOOLS := rsync wrk prometheus prometheus-alertmanager chromium
system:
	@missing=""; \
	for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q 'libpq\.so\.5 ' || missing="$$missing libpq5"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(VENV)/.demo
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/wine/demo.sh

# The suite runs in parallel (pytest-xdist): one test at a time to the next free worker, the
# slowest first, modules with process-starting module fixtures kept on one worker (see
# tests/conftest.py). MLflow and PostgreSQL start once per run and are shared by the workers.
# pytest prints the wall time and the slowest tests. PYTEST_ARGS adds to or overrides these
# (`make test PYTEST_ARGS="-k canary"`); PYTEST_XDIST="-n 0" runs serially. Three workers on two
# cores: the tests wait on servers and subprocesses often enough that a third one is faster
# (measured: 304 s with -n 3, 340 s with -n 2, 504 s serially, with the machine about equally loaded).
PYTEST_WORKERS ?= 3
PYTEST_XDIST   ?= -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder
PYTEST_ARGS    ?=

test: $(STAMP) node system
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$$PATH" $(BIN)/python -m pytest $(PYTEST_XDIST) --durations=25 $(PYTEST_ARGS)

# The pure core only: seconds, no servers (serial: starting workers costs more than it saves).
test-fast: $(STAMP) node
	$(BIN)/python -m pytest tests/core $(PYTEST_ARGS)

bench: $(STAMP) node system
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$$PATH" $(BIN)/python bench/cli_startup.py
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$$PATH" $(BIN)/python bench/webhook_intake.py
	$(BIN)/python bench/promotion_api_calls.py
	$(BIN)/python bench/claim_latency.py
	$(BIN)/python bench/install_footprint.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/alert_retrain.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/canary_decision.py
	$(BIN)/python bench/ui_render.py

schemas: $(STAMP)
	$(BIN)/mlgate schema > schemas/mlgate.schema.json
	$(BIN)/mlgate schema --bot > schemas/bot.schema.json
	$(BIN)/mlgate schema --explain-facts > schemas/explain-facts.schema.json

# Removes the demo's state (MLflow store, GitOps repository, artifacts) and test caches.
clean:
	rm -rf examples/wine/.mlgate .pytest_cache
