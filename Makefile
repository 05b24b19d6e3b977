# Two commands set up and run everything on a fresh machine:
#   make demo   install what the demo needs, then run it
#   make test   install that and what only the tests need (chromium), then check the import floors and run
#               the whole test suite (what CI runs: .ci/run)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps test-system-deps demo test lint-imports screenshot bench clean

system-deps:
	bash scripts/install-system-deps.sh demo

test-system-deps:
	bash scripts/install-system-deps.sh test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(VENV)/bin/snapsight demo

# The layers contract in pyproject.toml: an import that points up a floor fails here, before any test runs.
lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

test: test-system-deps $(STAMP) lint-imports
	$(PY) -m pytest -q

# Refreshes docs/screenshot.png (README, docs/demo.md) from the browser test on the offline default model;
# a plain test run writes its screenshot to a temporary folder only.
screenshot: test-system-deps $(STAMP)
	SNAPSIGHT_SCREENSHOT_TO=$(CURDIR)/docs/screenshot.png $(PY) -m pytest -q -p no:cacheprovider \
		tests/demo/test_browser.py -k ranking

bench: install
	$(PY) -m pip install -q -e '.[bench]'

clean:
	rm -rf $(VENV) .pytest_cache .import_linter_cache
