"""pytest wiring of the conformance suite: options, the `cni` fixture, the run summary.

Options: ``--cni-bin DIR`` (the directory under test), ``--reference-bin DIR`` (compare with
it), ``--conformance-summary FILE`` (JSON counts for the runner), ``--runtime`` (also run the
real container runtime scenario). The namespace fixtures and the root-namespace leak audit
are the plugin conformance/fixtures.py, shared with tests/.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import deviations, harness
from conformance.bindir import CniDir, same_dir
from conformance.sandbox import Sandbox

pytest_plugins = ["conformance.fixtures"]  # the namespace fixtures and the leak audit


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("conformance")
    g.addoption("--cni-bin", default=None, help="directory of CNI executables under test")
    g.addoption("--reference-bin", default=None,
                help="reference directory to compare results and state with")
    g.addoption("--conformance-summary", default=None, help="write JSON counts to this file")
    g.addoption("--runtime", action="store_true", default=False,
                help="also run the real container runtime scenario (containerd)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "runtime: drives a real container runtime (containerd)")
    config.addinivalue_line("markers", "twonode: the two-node flannel overlay scenario")


def _label(path: str, reference: str | None) -> str:
    if reference and same_dir(path, reference):
        return "reference"
    if same_dir(path, harness.REFERENCE_BIN):
        return "reference"
    return "ours"


@pytest.fixture(scope="session")
def cni(request: pytest.FixtureRequest) -> CniDir:
    """The directory under test (with `.ref` set when a distinct reference was given)."""
    path = request.config.getoption("--cni-bin")
    if not path:
        pytest.skip("no --cni-bin given")
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    ref_path = request.config.getoption("--reference-bin")
    d = CniDir(Path(path).resolve(), _label(path, ref_path))
    if ref_path and not same_dir(path, ref_path):
        d.ref = CniDir(Path(ref_path).resolve(), "reference")
    return d


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    """A sandbox (namespaces + temp state, built on the harness) removed after the case."""
    with Sandbox() as s:
        yield s


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # noqa: ANN001
    stats = terminalreporter.stats
    counts = {k: len(stats.get(k, [])) for k in
              ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
    skipped: Counter[str] = Counter()
    for rep in stats.get("skipped", []):
        if isinstance(rep.longrepr, tuple):
            skipped[rep.longrepr[2].removeprefix("Skipped: ")] += 1
    failed = [rep.nodeid for k in ("failed", "error") for rep in stats.get(k, [])]
    if deviations.USED:
        terminalreporter.write_line(
            "expected deviations exercised: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(deviations.USED.items()))
        )
    path = config.getoption("--conformance-summary")
    if path:
        Path(path).write_text(json.dumps({
            "counts": counts,
            "failed": failed,
            "skipped": dict(skipped),
            "deviations": dict(deviations.USED),
            "pid": os.getpid(),
        }, indent=2))
