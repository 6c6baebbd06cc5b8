# One-liners; every target installs what it needs first.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

JS_STAMP := tests/js/node_modules/.installed

.PHONY: install system-deps js-deps run test lint format clean

install: $(STAMP) system-deps js-deps

# Tools the tests run that come from Debian: promtool (package prometheus) checks /metrics;
# chromium is the browser the console tests drive with Playwright (its own download fails here).
system-deps:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# The JavaScript CloudEvents SDK, a second decoder of pushes (tests/conformance/test_js_decoder.py); node and
# npm from Debian where missing. Reinstalled only when the pinned lock file changes.
js-deps: $(JS_STAMP)

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	npm ci --prefix tests/js --no-audit --no-fund --silent && touch $(JS_STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[dev]' && touch $(STAMP)

run: install
	$(VENV)/bin/ce-gateway serve --config config/example.yaml --data-dir ./data

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff format --check gateway tests bench && $(VENV)/bin/ruff check gateway tests bench && $(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format gateway tests bench && $(VENV)/bin/ruff check --fix gateway tests bench

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

# Issue 9's harness (bench/run.py; see bench/README.md). wrk and nats-server from Debian.
# One scenario: make bench BENCH_ARGS='--scenario push'; another engine: BENCH_ARGS='--engine uvicorn'.
.PHONY: bench
bench: install
	@command -v wrk >/dev/null && command -v nats-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk nats-server >/dev/null; }
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py $(BENCH_ARGS)
