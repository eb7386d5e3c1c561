"""The namespace fixtures and the root-namespace leak audit, as a pytest plugin.

Shared by both suites: tests/conftest.py and conformance/cases/conftest.py load it through
``pytest_plugins``. The helpers themselves are in conformance/harness.py (no pytest there).
House rule: nothing is created in the root network namespace; the `leak_audit` fixture checks
that after every test module.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance import harness
from conformance.harness import Netns, StateDirs

# Plugin calls that inherit this process's environment run in-process, as harness.plugin_env's do.
os.environ.update(harness.IN_PROCESS_ENV)

_NS_FIXTURES = ("node_ns", "make_pod")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests using namespace fixtures `netns`; skip all `netns` tests when not possible."""
    reason = harness.netns_unavailable_reason()
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in _NS_FIXTURES):
            item.add_marker(pytest.mark.netns)
        if reason and item.get_closest_marker("netns") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


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

    Compares `harness.root_state()` before and after the module (links, `ip netns list`, CNI-*
    iptables/ip6tables chains and rules, nft tables), plus `harness.host_state()` (addresses,
    routes, rules, files under the default state paths /var/lib/cni, /etc/cni, /run/flannel), with
    `harness.audit_diff`. Leftover namespaces of this run are deleted after being reported; nothing
    in the root namespace is removed automatically.
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
