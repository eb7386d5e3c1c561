"""The module-scoped leak audit (conformance/fixtures.py leak_audit) covers what
docs/reliability.md lists:
namespaces, links, addresses, routes, rules and files a module created in the root namespace /
filesystem.
"""

from __future__ import annotations

import inspect

from conformance import fixtures, harness


def _state(**extra: frozenset[str]) -> dict[str, frozenset[str]]:
    base = {
        "links": frozenset({"lo", "eth0"}),
        "netns": frozenset(),
        "addresses": frozenset({"1: lo inet 127.0.0.1/8 scope host lo"}),
        "routes": frozenset({"default via 192.0.2.1 dev eth0"}),
        "routes6": frozenset(),
        "rules": frozenset({"0: from all lookup local"}),
        "rules6": frozenset(),
        "state_files": frozenset(),
    }
    base.update(extra)
    return base


def test_audit_reports_new_addresses_routes_rules_and_state_files() -> None:
    """Each new item of the categories added for the reliability tests is reported by name."""
    before = _state()
    after = _state(
        addresses=before["addresses"] | {"4: eth0 inet 10.99.0.1/24 scope global eth0"},
        routes=before["routes"] | {"10.99.0.0/24 dev eth0 proto kernel scope link"},
        rules=before["rules"] | {"100: from 10.99.0.0/24 lookup 7"},
        state_files=frozenset({"/var/lib/cni", "/var/lib/cni/networks/x/10.99.0.2"}),
    )
    problems = harness.audit_diff(before, after)
    text = "\n".join(problems)
    assert "new addresses entry '4: eth0 inet 10.99.0.1/24" in text
    assert "new routes entry '10.99.0.0/24 dev eth0" in text
    assert "new rules entry '100: from 10.99.0.0/24 lookup 7'" in text
    assert "new state_files entry '/var/lib/cni/networks/x/10.99.0.2'" in text
    assert harness.audit_diff(before, before) == []


def test_host_state_reads_the_new_categories() -> None:
    """On this machine every category of host_state() is readable (not <unavailable>) and
    stable, and the conftest audit compares it."""
    first, second = harness.host_state(), harness.host_state()
    for key in ("addresses", "routes", "routes6", "rules", "rules6", "state_files"):
        assert key in first
        assert harness.UNAVAILABLE not in first[key], key
    assert any("lo" in a for a in first["addresses"]), first["addresses"]
    assert any("lookup main" in r for r in first["rules"]), first["rules"]
    assert harness.audit_diff(first, second) == []
    assert "host_state()" in inspect.getsource(fixtures.leak_audit)


def test_state_files_lists_everything_under_the_given_paths(tmp_path) -> None:
    """state_files walks the default state locations recursively (here: a stand-in)."""
    top = tmp_path / "cni"
    (top / "networks" / "n").mkdir(parents=True)
    (top / "networks" / "n" / "10.0.0.2").write_text("c\r\neth0")
    got = harness.state_files([str(top), str(tmp_path / "absent")])
    assert got == {str(top), str(top / "networks"), str(top / "networks" / "n"),
                   str(top / "networks" / "n" / "10.0.0.2")}
