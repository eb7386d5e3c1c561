"""The test suite's pytest wiring: the shared fixtures, and a run that skipped tests for a
missing package fails.

The namespace fixtures (`node_ns`, `make_pod`, `state_dir`) and the root-namespace leak audit
are the plugin conformance/fixtures.py, shared with the conformance suite; the helpers behind
them are conformance/harness.py.
"""

from __future__ import annotations

import os

import pytest

from conformance import harness

pytest_plugins = ["pytester", "conformance.fixtures"]  # pytester: inner sessions in tests

# (test id, what is missing) of every test skipped for a package missing on this machine
_MISSING: list[tuple[str, str]] = []


def _note_missing(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if harness.MISSING_PREFIX in reason:
            _MISSING.append((report.nodeid, reason.split(harness.MISSING_PREFIX, 1)[1]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember a test skipped for a missing package."""
    _note_missing(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Remember a module skipped for a missing package."""
    _note_missing(report)


def _allow_skips() -> bool:
    return os.environ.get("PYCNI_ALLOW_SKIPS", "") == "1"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that skipped tests for missing packages fails unless PYCNI_ALLOW_SKIPS=1: a green
    `make test` must mean every test ran (`make test` installs them all first)."""
    if _MISSING and not _allow_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    """List the tests skipped for missing packages, what is missing, and whether that fails."""
    if not _MISSING:
        return
    by_what: dict[str, list[str]] = {}
    for nodeid, what in _MISSING:
        by_what.setdefault(what, []).append(nodeid)
    terminalreporter.section("skipped for missing packages")
    for what, ids in sorted(by_what.items()):
        terminalreporter.write_line(f"{what}: {len(ids)} skipped: {', '.join(ids[:5])}"
                                    + (" ..." if len(ids) > 5 else ""))
    verdict = ("allowed by PYCNI_ALLOW_SKIPS=1" if _allow_skips() else
               "the run FAILS (install them: sh scripts/install-deps.sh test; "
               "or set PYCNI_ALLOW_SKIPS=1)")
    terminalreporter.write_line(
        f"{len(_MISSING)} tests skipped for missing packages "
        f"({', '.join(sorted(by_what))}): {verdict}", red=not _allow_skips(), bold=True)


