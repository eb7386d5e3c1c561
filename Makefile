PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PREFIX ?= /opt/cni/bin

.PHONY: all venv build dev-build test test-full lint bench clean

all: build

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.stamp

# One executable per type in dist/bin (dev launchers until the standalone build lands).
build: venv
	sh scripts/dev-launchers.sh dist/bin

test: build
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .

clean:
	rm -rf build dist
