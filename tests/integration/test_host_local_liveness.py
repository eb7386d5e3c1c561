"""host-local frees provably dead leases when a range set is exhausted (docs/self-healing.md).

Real pod namespaces (harness), dist/bin/host-local (and the reference) through the CNI
protocol inside a throwaway node namespace; data directories in tmp_path. A reboot is
simulated by pointing PYCNI_BOOT_ID_FILE at a file holding another boot ID.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conformance import harness
from ipam.liveness import DEAD, LIVE, UNKNOWN, lease_states
from tests.host_local_testlib import (
    HAVE_REF,
    NET,
    OURS,
    REF,
    exhaustion_hint,
    leases,
    netconf,
    node_namespace,
)


@pytest.fixture(scope="module")
def node():
    yield from node_namespace()


def add(node, conf, cid: str, netns: str, exe: str = OURS, env=None) -> harness.PluginRun:
    return harness.run_plugin(exe, "ADD", conf, containerid=cid, netns=netns, in_netns=node,
                              extra_env=env)


def address(run: harness.PluginRun) -> str:
    assert run.returncode == 0, (run.stdout, run.stderr)
    return run.result["ips"][0]["address"].split("/")[0]


def other_boot(tmp_path: Path) -> dict[str, str]:
    boot = tmp_path / "boot_id.after"
    boot.write_text("0badb007-0000-4000-8000-000000000017\n")
    return {"PYCNI_BOOT_ID_FILE": str(boot)}


def test_after_a_reboot_new_pods_get_addresses_without_a_manual_step(tmp_path, node, make_pod):
    conf = netconf(tmp_path, {"subnet": "10.252.1.0/29"})  # .2 .. .6: five addresses
    pods = [make_pod() for _ in range(5)]
    before = {}
    for i, pod in enumerate(pods[:4]):
        before[f"old{i}"] = address(add(node, conf, f"old{i}", pod.path))
    # The fifth lease is the reference's: it carries no record and must survive.
    ref_exe = REF if HAVE_REF else OURS
    ref_ip = address(add(node, conf, "goref", pods[4].path, exe=ref_exe))
    netdir = tmp_path / NET
    kept = leases(netdir)
    assert len(kept) == 5

    # Reboot: every namespace is gone, the lease files stay.
    for pod in pods:
        harness.delete_netns(pod)
    env = other_boot(tmp_path)
    new_pods = [make_pod() for _ in range(5)]
    runs = [add(node, conf, f"new{i}", pod.path, env=env) for i, pod in enumerate(new_pods)]
    got = [address(r) for r in runs[:4]]
    assert sorted(got) == sorted(before.values())
    assert "freed 4 provably dead leases" in runs[0].stderr, runs[0].stderr
    # The reference's lease was not touched; the fifth pod finds the range full.
    last = runs[4]
    assert last.returncode == 1
    assert last.result["msg"] == (
        "failed to allocate for range 0: no IP addresses available in range set: "
        "10.252.1.1-10.252.1.6" + exhaustion_hint(5, 0, 1)
    )
    now = leases(netdir)
    assert now[ref_ip] == kept[ref_ip] == b"goref\r\neth0"
    assert {ip: c for ip, c in now.items() if ip != ref_ip} == {
        ip: f"new{i}\r\neth0".encode() for i, ip in enumerate(got)
    }


def test_64_live_and_64_dead_pods_in_a_slash_25(tmp_path, node, make_pod):
    """The proof: a live pod's lease is never reclaimed and no address is handed out twice."""
    conf = netconf(tmp_path, {"subnet": "10.252.2.0/25"})  # .2 .. .126: 125 addresses
    live: dict[str, tuple[str, str]] = {}  # cid -> (netns path, address)
    dead: list[str] = []
    reclaimed_at = []
    for i in range(128):
        pod = make_pod()
        cid = f"pod{i}"
        run = add(node, conf, cid, pod.path)
        ip = address(run)
        if "provably dead" in run.stderr:
            reclaimed_at.append((i, run.stderr))
        if i % 2:
            harness.delete_netns(pod)  # the pod dies; its lease stays
            dead.append(cid)
        else:
            live[cid] = (pod.path, ip)
    # The 126th ADD found the range full and freed the 62 leases of dead pods it held.
    assert [i for i, _ in reclaimed_at] == [125], reclaimed_at
    assert "freed 62 provably dead leases" in reclaimed_at[0][1]

    files = leases(tmp_path / NET)
    owners = {ip: content.decode().split("\r\n")[0] for ip, content in files.items()}
    assert len(live) == 64
    for cid, (_, ip) in live.items():
        assert owners[ip] == cid  # every live pod still holds the address it was given
    held = Counter(owners.values())
    assert all(n == 1 for n in held.values())  # no owner with two addresses, no address twice
    assert {c for c in owners.values() if c not in live} == {"pod125", "pod127"}

    states = {s.ip: s for s in lease_states(str(tmp_path), NET)}
    assert {s.container_id for s in states.values() if s.state == LIVE} == set(live)
    assert {s.container_id for s in states.values() if s.state == DEAD} == {"pod125", "pod127"}


def test_a_namespace_path_reused_by_another_namespace_is_dead(tmp_path, node, make_pod):
    conf = netconf(tmp_path, {"subnet": "10.252.3.0/30"})  # one address
    pod = make_pod()
    first = address(add(node, conf, "first", pod.path))
    # The runtime deletes the namespace and makes a new one under the same name.
    harness.delete_netns(pod)
    subprocess.run(["ip", "netns", "add", pod.name], check=True)
    try:
        (state,) = lease_states(str(tmp_path), NET)
        assert (state.state, state.reason) == (DEAD, "namespace path now names another namespace")
        second = add(node, conf, "second", pod.path)
        assert address(second) == first
        # The lease of "second" names the live namespace now.
        (state,) = lease_states(str(tmp_path), NET)
        assert (state.container_id, state.state) == ("second", LIVE)
    finally:
        harness.delete_netns(pod.name)


@pytest.mark.skipif(not HAVE_REF, reason=f"reference binary {REF} not installed")
def test_reference_releases_leases_with_records_and_ours_keeps_its_leases(tmp_path, node, make_pod):
    conf = netconf(tmp_path, {"subnet": "10.252.4.0/29"})
    pods = [make_pod() for _ in range(2)]
    ours = address(add(node, conf, "a", pods[0].path))
    theirs = address(add(node, conf, "b", pods[1].path, exe=REF))
    states = {s.container_id: (s.state, s.reason) for s in lease_states(str(tmp_path), NET)}
    assert states == {
        "a": (LIVE, "namespace present"),
        "b": (UNKNOWN, "no record (reference lease)"),
    }
    # The lease file of ours is byte for byte the reference's; the Go plugin releases it.
    assert leases(tmp_path / NET)[ours] == b"a\r\neth0"
    rel = harness.run_plugin(REF, "DEL", conf, containerid="a", netns=pods[0].path, in_netns=node)
    assert rel.returncode == 0, rel.stdout
    assert ours not in leases(tmp_path / NET)
    # Our ADD after the Go plugin changed the directory: the index is rebuilt, b stays unknown.
    again = address(add(node, conf, "c", pods[0].path))
    assert again != theirs
    states = {s.container_id: s.state for s in lease_states(str(tmp_path), NET)}
    assert states == {"b": UNKNOWN, "c": LIVE}
