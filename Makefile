# Two commands set up and run everything on a fresh machine:
#   make demo   install, then run the main job
#   make test   install, then run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test bench clean

system-deps:
	bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(VENV)/bin/snapsight demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m pip install -q -e '.[bench]'

clean:
	rm -rf $(VENV) .pytest_cache
