# cim: the two commands a new machine needs are `make demo` and `make test`.
# Both are idempotent: stamps under .venv/ skip work already done.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
HOST   ?= 127.0.0.1
PORT   ?= 8000
PRESET ?= city

.PHONY: demo test install test-deps viewer-deps threejs-deps viewer-check chromium lint sample build serve bench clean

demo: install viewer-deps build serve

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "cim needs Python >= 3.11 ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

test-deps: $(VENV)/.test-installed viewer-deps threejs-deps chromium

viewer/node_modules/.package-lock.json: viewer/package.json viewer/package-lock.json
	cd viewer && npm ci --no-audit --no-fund
	@touch $@

viewer-deps: viewer/node_modules/.package-lock.json

# The second 3D Tiles client of the browser tests (3DTilesRendererJS on three.js, tests/tools/threejs).
tests/tools/threejs/node_modules/.package-lock.json: tests/tools/threejs/package.json tests/tools/threejs/package-lock.json
	cd tests/tools/threejs && npm ci --no-audit --no-fund
	@touch $@

threejs-deps: tests/tools/threejs/node_modules/.package-lock.json

# Type-check the viewer's JSDoc-typed ES modules (nothing is built: the browser loads them as-is).
viewer-check: viewer-deps
	cd viewer && npx --no-install tsc --noEmit -p tsconfig.json

# Debian's chromium for the browser tests (Playwright cannot download its own here).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "note: /usr/bin/chromium is missing and this is not root: browser tests will be skipped"; fi

sample_city/city.toml: $(VENV)/.installed
	$(VENV)/bin/cim sample --preset $(PRESET) sample_city

tiles/tianshui/city.json: sample_city/city.toml
	$(VENV)/bin/cim build sample_city/city.toml --out tiles/tianshui

sample: sample_city/city.toml
build: tiles/tianshui/city.json

serve: build viewer-deps
	@echo "cim: open http://$(HOST):$(PORT)/"
	$(VENV)/bin/cim serve tiles/tianshui --host $(HOST) --port $(PORT)

# ruff (lint and format) and mypy, configured in pyproject.toml
lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check cim tests benchmarks setup.py
	$(VENV)/bin/ruff format --check cim tests benchmarks setup.py
	$(VENV)/bin/mypy

# two workers (the CI machine's cores); the browser tests stay together on one (tests/conftest.py)
PYTEST_ARGS ?= -n 2 --dist loadgroup
test: test-deps viewer-check lint
	$(VENV)/bin/pytest -q --durations=15 $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_buildings.py

clean:
	rm -rf tiles/tianshui sample_city/data sample_city/city.toml

# The independent I3S reader of the export tests (loaders.gl in Node, tests/tools/loadersgl).
tests/tools/loadersgl/node_modules/.package-lock.json: tests/tools/loadersgl/package.json tests/tools/loadersgl/package-lock.json
	cd tests/tools/loadersgl && npm ci --no-audit --no-fund
	@touch $@

.PHONY: loadersgl-deps
loadersgl-deps: tests/tools/loadersgl/node_modules/.package-lock.json
test-deps: loadersgl-deps

# The CesiumGS 3d-tiles-validator (../shared/tools) builds itself on first use: do it once here,
# not in two test workers at the same moment.
.PHONY: validator
validator:
	@if [ -x ../shared/tools/validate-3dtiles ]; then ../shared/tools/validate-3dtiles >/dev/null 2>&1 || true; fi
test-deps: validator
