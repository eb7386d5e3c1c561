"""portmap against the reference (/usr/lib/cni/portmap, v1.1.1): docs/reference-behaviour.md
P81-P96.

Each case runs ours in one node namespace and the reference in another, on the same config and
prevResult, then compares exit status, the printed result, `iptables-save -t nat`,
`ip6tables-save -t nat` and route_localnet, after ADD and again after DEL. Normalised only where
docs/reference-behaviour.md records an upstream 3d27709f / v1.1.1 difference: the 1.x result's
empty `"dns": {}` (§0.9 #1), and error codes (ours: 7 for configuration errors, the reference:
999; the messages must match).
"""

from __future__ import annotations

import pytest

from conformance import harness
from tests import portmap_testlib as t

pytestmark = [
    pytest.mark.netns,
    pytest.mark.reference,
    pytest.mark.skipif(not t.OURS.exists(), reason="dist/bin not built (make build)"),
    pytest.mark.skipif(not t.REFERENCE.exists(), reason=harness.missing_reason(str(t.REFERENCE), "containernetworking-plugins")),
]

POD = t.Pod(harness.Netns("cnitest-pod-none"), 5, "pmv5")
BASIC = [
    {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 18081, "containerPort": 81, "protocol": "udp"},
    {"hostPort": 18084, "containerPort": 84, "protocol": "TCP"},
    {"hostPort": 18085, "containerPort": 85, "protocol": "sctp"},
]
HOST_IPS = [
    {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 18082, "containerPort": 82, "protocol": "tcp", "hostIP": t.NODE_IP4},
    {"hostPort": 18083, "containerPort": 83, "protocol": "tcp", "hostIP": t.NODE_IP6},
    {"hostPort": 18084, "containerPort": 84, "protocol": "udp", "hostIP": "0.0.0.0"},
    {"hostPort": 18086, "containerPort": 86, "protocol": "udp", "hostIP": "::"},
]
MULTI_IP_PREV = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "pmbr0"}, {"name": "eth0", "sandbox": "/run/netns/x"}, {"name": "eth1", "sandbox": "/run/netns/x"}],
    "ips": [
        {"address": "10.250.7.1/24", "interface": 0},
        {"address": "10.250.8.5/24", "interface": 2},
        {"address": "10.250.7.5/24", "interface": 1},
        {"address": "10.250.7.6/24", "interface": 1},
        {"address": "fd00:7::5/64"},
    ],
}  # fmt: skip


@pytest.fixture
def nodes():
    """Two node namespaces with the same pod network layout: one for ours, one for theirs."""
    made = []
    try:
        for _ in range(2):
            ns = harness.create_netns("node")
            made.append(ns)
            t.setup_node(ns)
        yield made[0], made[1]
    finally:
        for ns in made:
            harness.delete_netns(ns)


def drop_empty_dns(result):
    if isinstance(result, dict) and result.get("dns") == {}:
        return {k: v for k, v in result.items() if k != "dns"}
    return result


def state(node):
    return {
        "nat4": t.nat(node),
        "nat6": t.nat(node, True),
        "route_localnet": t.sysctl(node, f"net.ipv4.conf.{t.BRIDGE}.route_localnet"),
    }


def both(nodes, command, config, **kw):
    """Run a command with ours and the reference; assert the outcomes agree; return them."""
    ours_node, ref_node = nodes
    ours = t.run(t.OURS, ours_node, command, config, **kw)
    ref = t.run(t.REFERENCE, ref_node, command, config, **kw)
    assert ours.returncode == ref.returncode, (ours.stdout, ref.stdout)
    if ours.returncode == 0:
        assert drop_empty_dns(ours.result) == drop_empty_dns(ref.result)
    else:
        assert ours.result["msg"] == ref.result["msg"]
    assert state(ours_node) == state(ref_node)
    return ours, ref


CASES = {
    "81-no-mappings": ([], POD.prev_result(), {}),
    "82-basic": (BASIC, POD.prev_result(), {}),
    "83-mark-bit-5": (BASIC[:2], POD.prev_result(), {"markMasqBit": 5}),
    "84-external-set-mark-chain": (BASIC[:2], POD.prev_result(), {"externalSetMarkChain": "PMX-MARK"}),
    "85-no-snat": (BASIC, POD.prev_result(), {"snat": False}),
    "86-host-ips": (HOST_IPS, POD.prev_result(), {}),
    "87-ipv6-only": (BASIC, POD.prev_result(v4=False), {}),
    "88-conditions": (BASIC, POD.prev_result(),
                      {"conditionsV4": ["-s", "10.250.0.0/16"], "conditionsV6": ["!", "-s", "fd00:dead::/32"]}),
    "88-conditions-modules": (BASIC[:2], POD.prev_result(),
                              {"conditionsV4": ["-m", "conntrack", "--ctstate", "new,established", "-i", "pmeth0"]}),
    "89-sixteen-ports": ([{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"} for i in range(16)],
                         POD.prev_result(), {}),
    "92-several-ips": (BASIC[:2], MULTI_IP_PREV, {}),
    "name-with-dots": (BASIC[:1], POD.prev_result(), {"name": "my.net-1"}),
    "0.4.0": (BASIC[:2], POD.prev_result(version="0.4.0"), {"version": "0.4.0"}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_add_then_del_same_as_reference(nodes, case):
    mappings, prev, keys = CASES[case]
    keys = dict(keys)
    if "externalSetMarkChain" in keys:
        for node in nodes:
            for tool in ("iptables", "ip6tables"):
                node.exec(tool, "-t", "nat", "-N", keys["externalSetMarkChain"])
    conf = t.conf(mappings, prev, **keys)
    both(nodes, "ADD", conf)
    both(nodes, "ADD", conf)  # repeated ADD: nothing duplicated
    del_conf = t.conf(mappings, None, **keys)
    both(nodes, "DEL", del_conf)
    both(nodes, "DEL", del_conf)


def test_long_container_id_comment_truncated(nodes):
    cid = "a" * 240
    both(nodes, "ADD", t.conf(BASIC[:1], POD.prev_result()), container_id=cid)
    both(nodes, "DEL", t.conf(BASIC[:1], None), container_id=cid)


def test_93_re_add_after_rule_deleted_by_hand(nodes):
    conf = t.conf(BASIC[:2], POD.prev_result(v6=False))
    both(nodes, "ADD", conf)
    from plugins.portmap.iptables import dnat_chain_name

    for node in nodes:
        node.exec("iptables", "-t", "nat", "-D", dnat_chain_name("pmnet", "ctr1"), "-p", "tcp", "--dport",
                  "18080", "-j", "DNAT", "--to-destination", f"{POD.ip4}:80")  # fmt: skip
    both(nodes, "ADD", conf)


def test_94_del_keeps_other_containers_and_shared_chains(nodes):
    for cid in ("c1", "c2"):
        both(nodes, "ADD", t.conf(BASIC[:2], POD.prev_result()), container_id=cid)
    both(nodes, "DEL", t.conf(BASIC[:2], None), container_id="c1")
    both(nodes, "DEL", t.conf([], None), container_id="c2")  # no mappings: nothing removed
    assert any("CNI-DN-" in ln for ln in t.nat(nodes[0]))


@pytest.mark.parametrize(
    ("keys", "mappings", "msg"),
    [
        ({"markMasqBit": 32}, BASIC[:1], "failed to parse config: MasqMarkBit must be between 0 and 31"),
        ({"markMasqBit": 5, "externalSetMarkChain": "X"}, BASIC[:1],
         "failed to parse config: Cannot specify externalSetMarkChain and markMasqBit"),
        ({}, [{"hostPort": 1, "containerPort": 0, "protocol": "tcp"}],
         "failed to parse config: Invalid container port number: 0"),
        ({}, [{"hostPort": -1, "containerPort": 1, "protocol": "tcp"}],
         "failed to parse config: Invalid host port number: -1"),
    ],
)  # fmt: skip
def test_83_90_config_errors_same_message(nodes, keys, mappings, msg):
    ours, ref = both(nodes, "ADD", t.conf(mappings, POD.prev_result(), **keys))
    assert ours.result["msg"] == msg
    assert (ours.result["code"], ref.result["code"]) == (7, 999)  # deliberate: config errors are code 7


def test_81_no_prev_result(nodes):
    both(nodes, "ADD", t.conf(BASIC, None))
