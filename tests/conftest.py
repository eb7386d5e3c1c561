"""Shared fixtures: throwaway namespaces, private state dirs, and the root-namespace leak audit.

The helpers themselves live in tests/harness.py (importable without pytest, for
conformance/ too). House rule: nothing is created in the root network namespace; the
`leak_audit` fixture checks that after every test module.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
for _p in (str(_TESTS_DIR.parent), str(_TESTS_DIR)):  # the repo (for `cni`) and tests/
    if _p not in sys.path:
        sys.path.insert(0, _p)

import harness  # noqa: E402
from harness import Netns, StateDirs  # noqa: E402

# Plugin calls that inherit this process's environment run in-process, as harness.plugin_env's do.
os.environ.update(harness.IN_PROCESS_ENV)

pytest_plugins = ["pytester"]  # tests/test_netns.py runs inner sessions to test the fixtures

_NS_FIXTURES = ("node_ns", "make_pod")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests using namespace fixtures `netns`; skip all `netns` tests when not possible."""
    reason = harness.netns_unavailable_reason()
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in _NS_FIXTURES):
            item.add_marker(pytest.mark.netns)
        if reason and item.get_closest_marker("netns") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


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


@pytest.fixture(scope="session", autouse=True)
def _report_stale_netns() -> None:
    """Before the session: warn about harness-style namespaces whose creator has died.

    They are not deleted automatically (another session may have made them by hand);
    `harness.sweep_stale_netns()` removes them when that is wanted.
    """
    if harness.netns_unavailable_reason() is None:
        stale = harness.stale_netns()
        if stale:
            warnings.warn(
                f"stale test namespaces (creator gone): {stale}; "
                "remove with harness.sweep_stale_netns()",
                stacklevel=1,
            )


@pytest.fixture(scope="module", autouse=True)
def leak_audit() -> Iterator[None]:
    """Fail the module if the root namespace gained anything while it ran.

    Compares `harness.root_state()` before and after the module (links, `ip netns
    list`, CNI-* iptables/ip6tables chains and rules, nft tables), plus
    `harness.host_state()` (addresses, routes, rules, files under the default state
    paths /var/lib/cni, /etc/cni, /run/flannel), with `harness.audit_diff`. Leftover namespaces of this run are deleted after being
    reported; nothing in the root namespace is removed automatically.
    """
    before = {**harness.root_state(), **harness.host_state()}
    yield
    after = {**harness.root_state(), **harness.host_state()}
    problems = harness.audit_diff(before, after)
    if problems:
        removed = harness.delete_own_netns() if harness.is_root() else []
        note = f"\n(deleted leftover test namespaces: {removed})" if removed else ""
        pytest.fail("leak audit failed:\n  " + "\n  ".join(problems) + note, pytrace=False)


@pytest.fixture
def node_ns() -> Iterator[Netns]:
    """A fresh namespace standing in for the node ("host"), `lo` up; always deleted.

    Yields a `harness.Netns` (`.name`, `.path` = /run/netns/<name>). Skips the test when
    namespaces cannot be made here (not root).
    """
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    ns = harness.create_netns("node", lo_up=True)
    try:
        yield ns
    finally:
        harness.delete_netns(ns)


@pytest.fixture
def make_pod() -> Iterator[Callable[..., Netns]]:
    """Factory for pod namespaces: ``make_pod(role="pod", *, lo_up=False) -> Netns``.

    `lo` stays down by default, as a runtime leaves it (the loopback plugin's job). Every
    namespace it made is deleted at teardown, whatever happened. Skips when namespaces
    cannot be made here.
    """
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    made: list[Netns] = []

    def factory(role: str = "pod", *, lo_up: bool = False) -> Netns:
        ns = harness.create_netns(role, lo_up=lo_up)
        made.append(ns)
        return ns

    try:
        yield factory
    finally:
        errors = []
        for ns in reversed(made):
            try:
                harness.delete_netns(ns)
            except Exception as exc:  # keep deleting the others
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def state_dir(tmp_path: Path) -> StateDirs:
    """Private state locations (host-local/flannel dataDir, libcni cache, net.d, subnet.env).

    A `harness.StateDirs` under the test's tmp_path, so no test touches /var/lib/cni,
    /etc/cni or /run/flannel.
    """
    return harness.make_state_dirs(tmp_path / "state")
