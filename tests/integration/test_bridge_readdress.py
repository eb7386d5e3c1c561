"""bridge re-addresses a bridge that carries another subnet's gateway (docs/self-healing.md).

Real node and pod namespaces, dist/bin/bridge with host-local through the CNI protocol, and
plugins/bridge/readdress.fix_bridge_address run in-process inside the node namespace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cni.netns import in_netns
from conformance.harness import Netns
from plugins.bridge.readdress import PortsAttached, fix_bridge_address
from tests import bridge_testlib as bt

pytestmark = pytest.mark.netns

REFUSAL = (
    'failed to set bridge addr: "testbr0" already has an IP address different from 10.250.10.1/24'
)


@pytest.fixture
def run(node_ns: Netns, tmp_path: Path) -> bt.Runner:
    return bt.Runner(bt.OURS, node_ns, bt.ipam_dir(tmp_path))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "ipam"
    d.mkdir()
    return d


def stale_bridge(node: Netns) -> None:
    """testbr0 with the gateway of an old subnet and a route that goes through it; its MAC is
    pinned, as a bridge plugin pins it (else a new port could change it and flush the node's
    neighbour entries on it)."""
    node.ip("link", "add", "testbr0", "address", "02:00:00:00:17:01", "type", "bridge")
    node.ip("addr", "add", "10.250.9.1/24", "dev", "testbr0")
    node.ip("link", "set", "testbr0", "up")
    node.ip("route", "add", "10.99.0.0/16", "via", "10.250.9.254", "dev", "testbr0")


def old_pod(node: Netns, make_pod, address: str = "10.250.9.5/24") -> str:
    """A pod of the old subnet attached to testbr0 (the node has talked to it); its port."""
    pod = make_pod()
    node.ip("link", "add", "oldport0", "type", "veth", "peer", "name", "eth0", "netns", pod.name)
    node.ip("link", "set", "oldport0", "master", "testbr0", "up")
    pod.ip("addr", "add", address, "dev", "eth0")
    pod.ip("link", "set", "eth0", "up")
    assert bt.ping(pod, "10.250.9.1")
    return "oldport0"


def test_stale_address_without_ports_is_replaced(run: bt.Runner, node_ns: Netns, make_pod,
                                                 data: Path) -> None:
    stale_bridge(node_ns)
    pod = make_pod()
    conf = bt.l3_conf(data, subnet="10.250.10.0/24", isGateway=True)
    r = run("ADD", conf, pod)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert bt.addrs(node_ns, "testbr0") == ["10.250.10.1/24"]
    assert 're-addressed "testbr0"' in r.stderr
    assert 'removed 10.250.9.1/24 from "testbr0"' in r.stderr
    assert "removed route 10.99.0.0/16 via 10.250.9.254 that depended on it" in r.stderr
    assert 'added 10.250.10.1/24 to "testbr0"' in r.stderr
    assert not any("10.99.0.0" in line or "10.250.9." in line for line in bt.routes(node_ns))
    assert bt.ping(pod, "10.250.10.1")
    # The next pod sees nothing to repair.
    second = run("ADD", conf, make_pod(), cid="ctr2")
    assert second.returncode == 0 and "re-addressed" not in second.stderr


def test_stale_address_with_ports_fails_naming_them(run: bt.Runner, node_ns: Netns, make_pod,
                                                    data: Path) -> None:
    stale_bridge(node_ns)
    port = old_pod(node_ns, make_pod)
    pod = make_pod()
    err = run.fail("ADD", bt.l3_conf(data, subnet="10.250.10.0/24", isGateway=True), pod)
    assert err["msg"] == (
        f"{REFUSAL}; ports still attached: {port} (10.250.9.5); fix: remove the pods still "
        "attached (drain the node), then the next ADD or `cnitool doctor --fix` replaces the "
        "address"
    )
    # Nothing changed: the old address and route stay, the new pod and its lease are gone.
    assert bt.addrs(node_ns, "testbr0") == ["10.250.9.1/24"]
    assert any(line.startswith("10.99.0.0/16 via 10.250.9.254") for line in bt.routes(node_ns))
    assert sorted(bt.links(pod)) == ["lo"]
    assert bt.lease_files(data, "testnet") == []


def test_two_ipv4_gateways_of_one_add_still_conflict(run: bt.Runner, node_ns: Netns, make_pod,
                                                     data: Path) -> None:
    """Re-addressing never takes away a gateway the same ADD just put on the bridge."""
    conf = bt.l3_conf(data, subnet=None, isGateway=True,
                      ranges=[[{"subnet": "10.250.58.0/24"}], [{"subnet": "10.250.59.0/24"}]])
    err = run.fail("ADD", conf, make_pod())
    assert err["msg"] == (
        'failed to set bridge addr: "testbr0" already has an IP address different from '
        '10.250.59.1/24'
    )


def test_fix_bridge_address_for_doctor(node_ns: Netns, make_pod) -> None:
    stale_bridge(node_ns)
    port = old_pod(node_ns, make_pod)
    with in_netns(node_ns.path):
        with pytest.raises(PortsAttached) as e:
            fix_bridge_address("testbr0", "10.250.10.1/24")
        assert [p.name for p in e.value.ports] == [port]
        assert e.value.ports[0].pod_addresses == ["10.250.9.5"]
    assert bt.addrs(node_ns, "testbr0") == ["10.250.9.1/24"]
    node_ns.ip("link", "del", port)
    with in_netns(node_ns.path):
        done = fix_bridge_address("testbr0", "10.250.10.1/24")
        assert fix_bridge_address("testbr0", "10.250.10.1/24") == []  # idempotent
        assert fix_bridge_address("nosuchbr", "10.250.10.1/24") == []
    assert done == [
        'removed 10.250.9.1/24 from "testbr0" (no port attached)',
        "removed route 10.99.0.0/16 via 10.250.9.254 that depended on it",
        'added 10.250.10.1/24 to "testbr0"',
    ]
    assert bt.addrs(node_ns, "testbr0") == ["10.250.10.1/24"]


def test_conflicting_follows_the_reference_rule() -> None:
    import ipaddress

    from plugins.bridge.readdress import conflicting

    i = ipaddress.ip_interface
    gw4, gw6 = i("10.250.10.1/24"), i("fd00:10::1/64")
    have = [i("10.250.10.1/24"), i("10.250.9.1/24"), i("192.168.1.1/16"), i("fe80::1/64"),
            i("fd00:10::5/64"), i("fd00:11::1/64")]
    assert conflicting(have, gw4) == [i("10.250.9.1/24"), i("192.168.1.1/16")]
    assert conflicting(have, gw6) == [i("fd00:10::5/64")]
