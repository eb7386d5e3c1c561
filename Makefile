PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PREFIX ?= /opt/cni/bin
DESTDIR ?=
SYSTEMD_UNITDIR ?= /etc/systemd/system

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' cni/__init__.py)
ARCH := $(shell uname -m | sed -e 's/^x86_64$$/amd64/' -e 's/^aarch64$$/arm64/')
TARBALL := dist/pycni-plugins-linux-$(ARCH)-v$(VERSION).tgz

.PHONY: all demo venv build dev dist install test test-full conformance lint bench bench-cni bench-host-local measure clean

all: build

# The main job: install what a fresh Debian/Ubuntu lacks, build the standalone executables, and
# run the live two-pod flannel demonstration in its own network namespaces (scripts/demo.py).
demo:
	sh scripts/install-deps.sh
	$(MAKE) build PYTHON="$$(sh scripts/install-deps.sh --print-python)"
	python3 scripts/demo.py

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.stamp

# The standalone suite in dist/bin (PyInstaller, build.spec): hard links of one executable,
# Python and libraries in dist/bin/pycni-lib. Needs no Python on the machine that runs it.
# About 10 s; skipped when dist/bin already holds a build of the current sources.
build: venv
	$(PY) scripts/build_standalone.py

# Dev launchers in dist/bin instead: the venv's interpreter running the work tree, so edits
# take effect without rebuilding. `make build` puts the standalone build back.
dev:
	sh scripts/dev-launchers.sh dist/bin

# Release artifacts: $(TARBALL) (extract into /opt/cni/bin), its .sha256, and the sample
# dist/10-flannel.conflist for /etc/cni/net.d. Every entry point must exist.
dist: venv
	$(PY) scripts/build_standalone.py --strict
	$(PY) scripts/make_release.py --bin dist/bin --out dist

# Install the release tarball's contents into $(DESTDIR)$(PREFIX) (default /opt/cni/bin),
# hard links kept. Files of other plugins there are left alone. The resident worker's systemd
# units (from the tarball's pycni-lib/systemd/, ExecStart pointed at $(PREFIX)) go to
# $(DESTDIR)$(SYSTEMD_UNITDIR) (default /etc/systemd/system: a local install, like /usr/local);
# installing onto a machine that systemd runs (no DESTDIR) also enables the socket.
install: dist
	mkdir -p "$(DESTDIR)$(PREFIX)" "$(DESTDIR)$(SYSTEMD_UNITDIR)"
	tar -xzf "$(TARBALL)" -C "$(DESTDIR)$(PREFIX)" --no-same-owner
	for unit in pycni-worker.socket pycni-worker.service; do \
	  sed 's|/opt/cni/bin/|$(PREFIX)/|g' "$(DESTDIR)$(PREFIX)/pycni-lib/systemd/$$unit" \
	    > "$(DESTDIR)$(SYSTEMD_UNITDIR)/$$unit" && chmod 0644 "$(DESTDIR)$(SYSTEMD_UNITDIR)/$$unit" || exit 1; \
	done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  echo "systemctl daemon-reload && systemctl enable --now pycni-worker.socket pycni-worker.service"; \
	  systemctl daemon-reload && systemctl enable --now pycni-worker.socket pycni-worker.service; \
	else \
	  echo "pycni: units installed in $(DESTDIR)$(SYSTEMD_UNITDIR); on a node that systemd runs, enable the resident worker with:"; \
	  echo "  systemctl daemon-reload && systemctl enable --now pycni-worker.socket pycni-worker.service"; \
	  echo "pycni: without systemd, the first plugin call starts the resident worker itself."; \
	fi

# The whole suite. First installs, only when missing, every Debian package the tests drive
# (scripts/install-deps.sh test); a test that still has to skip for a missing package fails the
# run unless PYCNI_ALLOW_SKIPS=1 (tests/conftest.py).
test:
	sh scripts/install-deps.sh test
	$(MAKE) build PYTHON="$$(sh scripts/install-deps.sh --print-python)"
	$(PY) -m pytest

# The reliability tests at full count (10,000 fuzz cases per executable, 200 crash trials, ...).
test-full: build
	PYCNI_FULL=1 $(PY) -m pytest tests/reliability

# The black-box suite against our executables and the reference, with the containerd scenario.
conformance: build
	$(PY) -m conformance --cni-bin dist/bin --reference /usr/lib/cni --runtime

lint: venv
	$(PY) -m ruff check .

# Start-up cost of dist/bin (VERSION and loopback ADD in a throwaway netns).
bench: build
	$(PY) conformance/bench/bench_startup.py --baseline "dist/bin=dist/bin"

# Ours against the reference: B1 pod cycle, B2 bursts, B3 host-local at scale, B4 footprint.
bench-cni: build
	$(PY) conformance/bench/bench_cni.py

bench-host-local: build
	$(PY) conformance/bench/bench_host_local.py

# Rebuild every candidate layout in build/measure and time them (docs/startup.md).
measure: venv
	$(PY) scripts/measure_layouts.py

clean:
	rm -rf build dist
