"""portmap end to end inside a node namespace: real pods, real traffic, real iptables and nft.

Each test builds its pod network itself (tests/portmap_testlib.py): a bridge in the node
namespace, veths into pod namespaces, addresses and routes, and a TCP+UDP responder in pod A.
portmap runs through the CNI protocol inside the node namespace (dist/bin/portmap, and
/usr/lib/cni/portmap where the reference's behaviour is the expectation).
"""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from conformance import harness
from tests import portmap_testlib as t

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not t.OURS.exists(), reason="dist/bin not built (make build)"),
]

TCP, UDP = 8080, 8081
MAPPINGS = [
    {"hostPort": TCP, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": UDP, "containerPort": 81, "protocol": "udp"},
]


@pytest.fixture
def net(node_ns, make_pod):
    """Node with pod A (serving 80/tcp and 81/udp, hairpin on its bridge port) and pod B."""
    t.setup_node(node_ns)
    a = t.add_pod(node_ns, make_pod(), 1)
    b = t.add_pod(node_ns, make_pod(), 2)
    node_ns.exec("bridge", "link", "set", "dev", a.host_veth, "hairpin", "on")
    servers = t.Servers()
    try:
        servers.start(a, 80, 81, "from-A")
        yield node_ns, a, b
    finally:
        servers.stop()


def container_traces(node, container_id, name="pmnet"):
    """Every line of the node's firewall that belongs to this container."""
    from plugins.portmap.iptables import dnat_chain_name

    chain = dnat_chain_name(name, container_id)
    comment = f'name: \\"{name}\\" id: \\"{container_id}\\"'
    lines = [ln for v6 in (False, True) for ln in t.nat(node, v6) if chain in ln or comment in ln]
    lines += [
        ln for fam in ("ip", "ip6") for ln in t.nft_table(node, fam) if f'"{container_id}"' in ln
    ]
    return lines


def firewall(node):
    """The node's iptables, ip6tables and nft state (counters and dates removed)."""
    snap = harness.snapshot_ns(node)
    return {k: snap[k] for k in ("iptables", "ip6tables", "nft")}


# ------------------------------------------------------------------ traffic


@pytest.mark.parametrize(
    ("impl", "backend"),
    [("ours", "iptables"), ("ours", "nftables"), ("reference", "iptables")],
)
def test_hostport_traffic_and_clean_del(net, impl, backend):
    node, a, b = net
    exe = t.OURS if impl == "ours" else t.REFERENCE
    if impl == "reference" and not exe.exists():
        pytest.skip(harness.missing_reason(str(t.REFERENCE), "containernetworking-plugins"))
    keys = {"backend": backend} if impl == "ours" else {}
    config = t.conf(MAPPINGS, a.prev_result(), **keys)
    res = t.run(exe, node, "ADD", config, netns=a.ns.path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.result["ips"][0]["address"] == f"{a.ip4}/24"  # prevResult passed through

    for proto, port in (("tcp", TCP), ("udp", UDP)):
        # from the node to its own addresses
        assert t.fetch(node, proto, t.NODE_IP4, port) == "from-A"
        assert t.fetch(node, proto, t.NODE_IP6, port) == "from-A"
        # from another pod, and from the pod itself (hairpin) to the node address
        for client in (b.ns, a.ns):
            assert t.fetch(client, proto, t.NODE_IP4, port) == "from-A", (client, proto)
            assert t.fetch(client, proto, t.NODE_IP6, port) == "from-A", (client, proto)
        # over localhost (IPv4 only, as the reference: route_localnet + masquerade)
        assert t.fetch(node, proto, "127.0.0.1", port) == "from-A"
    assert t.sysctl(node, f"net.ipv4.conf.{t.BRIDGE}.route_localnet") == "1"

    del_conf = t.conf(MAPPINGS, None, **keys)
    for _ in range(2):  # idempotent, and needs no prevResult
        res = t.run(exe, node, "DEL", del_conf)
        assert res.returncode == 0, res.stdout
    assert container_traces(node, "ctr1") == []
    assert t.fetch(node, "tcp", t.NODE_IP4, TCP, timeout=1) == ""
    assert t.fetch(b.ns, "udp", t.NODE_IP4, UDP, timeout=1) == ""


def test_snat_false_no_localhost_no_route_localnet(net):
    node, a, b = net
    res = t.run(t.OURS, node, "ADD", t.conf(MAPPINGS, a.prev_result(), snat=False))
    assert res.returncode == 0, res.stdout
    assert t.fetch(node, "tcp", t.NODE_IP4, TCP) == "from-A"
    assert t.sysctl(node, f"net.ipv4.conf.{t.BRIDGE}.route_localnet") == "0"
    assert not any("SETMARK" in ln or "MASQ" in ln for ln in t.nat(node))
    assert t.fetch(node, "tcp", "127.0.0.1", TCP, timeout=1) == ""


# ------------------------------------------------------------------ conntrack


def _conntrack(node, *args):
    return node.exec("conntrack", *args, check=False)


def _ct_entries(node, family):
    out = _conntrack(node, "-L", "-f", family).stdout
    return sorted(
        ln.split()[0] + ":" + ln.split("dport=")[1].split()[0]
        for ln in out.splitlines()
        if "dport=" in ln
    )


@pytest.mark.parametrize("via", ["tool", "pyroute2"])
def test_udp_conntrack_entries_flushed_on_add(net, via):
    node, a, _b = net
    for proto in ("udp", "tcp"):
        extra = ["--state", "ESTABLISHED"] if proto == "tcp" else []
        for src, dst in (("10.9.9.9", t.NODE_IP4), ("fd00:9::9", t.NODE_IP6)):
            proc = _conntrack(node, "-I", "-p", proto, "-s", src, "-d", dst, "--sport", "4000",
                              "--dport", str(UDP), "-t", "120", *extra)  # fmt: skip
            assert proc.returncode == 0, proc.stderr
        _conntrack(node, "-I", "-p", "udp", "-s", "10.9.9.9", "-d", t.NODE_IP4,
                   "--sport", "4000", "--dport", "9999", "-t", "120")  # fmt: skip
    assert _ct_entries(node, "ipv4") == ["tcp:8081", "udp:8081", "udp:9999"]
    if via == "tool":
        res = t.run(t.OURS, node, "ADD", t.conf(MAPPINGS, a.prev_result()))
        assert res.returncode == 0, res.stdout
    else:  # the fallback used when the conntrack tool is missing, same namespace, same effect
        code = ("from plugins.linux.conntrack import _with_pyroute2;"
                f"print(_with_pyroute2({UDP}, False), _with_pyroute2({UDP}, True))")
        out = node.exec(str(harness.REPO_ROOT / ".venv" / "bin" / "python"), "-c", code).stdout
        assert out.split() == ["1", "1"]
    assert _ct_entries(node, "ipv4") == ["tcp:8081", "udp:9999"]
    assert _ct_entries(node, "ipv6") == ["tcp:8081"]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
@pytest.mark.parametrize(
    ("mapping", "msg"),
    [
        ({"hostPort": 0, "containerPort": 80, "protocol": "tcp"}, "Invalid host port number: 0"),
        ({"hostPort": 70000, "containerPort": 80, "protocol": "tcp"},
         "Invalid host port number: 70000"),
        ({"hostPort": 80, "containerPort": 65536, "protocol": "tcp"},
         "Invalid container port number: 65536"),
        ({"hostPort": 80, "containerPort": 80, "protocol": "icmp"}, 'Invalid protocol: "icmp" '
                                                                    '(must be tcp, udp or sctp)'),
        ({"hostPort": 80, "containerPort": 80, "protocol": ""}, 'Invalid protocol: "" (must be '
                                                                'tcp, udp or sctp)'),
        ({"hostPort": 80, "containerPort": 80, "protocol": "tcp", "hostIP": "10.0.0.300"},
         'Invalid host IP: "10.0.0.300"'),
    ],
)  # fmt: skip
def test_bad_mappings_give_cni_error_and_write_nothing(node_ns, backend, mapping, msg):
    t.setup_node(node_ns)
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 3, "pmv3")
    before = firewall(node_ns)
    maps = [MAPPINGS[0], mapping]  # the good mapping first: nothing of it may be written either
    res = t.run(t.OURS, node_ns, "ADD", t.conf(maps, pod.prev_result(), backend=backend))
    assert res.returncode == 1
    assert res.result["code"] == 7
    assert res.result["msg"] == "failed to parse config: " + msg
    assert "Traceback" not in res.stderr
    assert firewall(node_ns) == before
    assert t.sysctl(node_ns, f"net.ipv4.conf.{t.BRIDGE}.route_localnet") == "0"
    # DEL of the refused ADD succeeds
    assert t.run(t.OURS, node_ns, "DEL", t.conf(maps, None, backend=backend)).returncode == 0


# ------------------------------------------------------------------ CHECK, re-ADD


def test_check_iptables(node_ns):
    t.setup_node(node_ns)
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 3, "pmv3")
    conf = t.conf(MAPPINGS, pod.prev_result(version="1.1.0", v6=False), version="1.1.0")
    assert t.run(t.OURS, node_ns, "ADD", conf).returncode == 0
    ok = t.run(t.OURS, node_ns, "CHECK", conf)
    # only the IPv4 table is checked (docs/reference-behaviour.md §0.9 #5)
    assert (ok.returncode, ok.stdout) == (0, "")
    from plugins.portmap.iptables import dnat_chain_name

    chain = dnat_chain_name("pmnet", "ctr1")
    node_ns.exec("iptables", "-t", "nat", "-D", chain, "-p", "udp", "--dport", str(UDP),
                 "-j", "DNAT", "--to-destination", f"{pod.ip4}:81")  # fmt: skip
    bad = t.run(t.OURS, node_ns, "CHECK", conf)
    assert bad.returncode == 1
    assert bad.result["msg"].startswith(
        f"could not check ipv4 dnat: rule [[-p tcp --dport {TCP} -s {pod.ip4}/24"
    )
    assert bad.result["msg"].endswith(f"] in chain {chain} not found in table nat")
    # re-ADD re-appends just the missing rule, at the end (docs/reference-behaviour.md P93)
    assert t.run(t.OURS, node_ns, "ADD", conf).returncode == 0
    rules = [ln for ln in t.nat(node_ns) if ln.startswith(f"-A {chain} ")]
    assert len(rules) == 6 and rules[-1].endswith(f"--to-destination {pod.ip4}:81")
    assert t.run(t.OURS, node_ns, "CHECK", conf).returncode == 0
    missing = t.run(t.OURS, node_ns, "CHECK", conf, container_id="other")
    assert (
        missing.result["msg"]
        == f"could not check ipv4 dnat: chain {dnat_chain_name('pmnet', 'other')} not found in "
           f"iptables table nat"
    )
    nope = t.run(t.OURS, node_ns, "CHECK", t.conf(MAPPINGS, None, version="1.1.0"))
    assert nope.result["msg"] == "Required prevResult missing"


def test_check_nftables_and_duplicate_appends(node_ns):
    t.setup_node(node_ns)
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 3, "pmv3")
    conf = t.conf(MAPPINGS, pod.prev_result(version="1.1.0"), version="1.1.0", backend="nftables")
    bad = t.run(t.OURS, node_ns, "CHECK", conf)
    assert (bad.returncode, bad.result["msg"]) == (1, 'missing hostport rules in "hostports" chain')
    for _ in range(2):
        assert t.run(t.OURS, node_ns, "ADD", conf).returncode == 0
    assert t.run(t.OURS, node_ns, "CHECK", conf).returncode == 0
    v4 = t.nft_table(node_ns, "ip")
    # plain appends, as upstream 3d27709f does (docs/reference-behaviour.md §3.4)
    assert sum(1 for ln in v4 if ln.startswith("tcp dport 8080 dnat")) == 2
    assert sum(1 for ln in v4 if "fib daddr type local" in ln) == 2  # prerouting + output, flushed
    handle_out = node_ns.exec(
        "nft", "-a", "list", "chain", "ip", "cni_hostport", "masquerading"
    ).stdout
    for ln in handle_out.splitlines():
        if '"ctr1"' in ln:
            node_ns.exec(
                "nft",
                "delete",
                "rule",
                "ip",
                "cni_hostport",
                "masquerading",
                "handle",
                ln.split()[-1],
            )
    bad = t.run(t.OURS, node_ns, "CHECK", conf)
    assert bad.result["msg"] == 'missing hostport rules in "masquerading" chain'
    assert t.run(t.OURS, node_ns, "DEL", conf).returncode == 0
    assert container_traces(node_ns, "ctr1") == []
    assert t.nft_table(node_ns, "ip")  # tables and chains stay, as the reference leaves them


def test_add_without_prev_result_or_mappings(node_ns):
    t.setup_node(node_ns)
    before = firewall(node_ns)
    res = t.run(t.OURS, node_ns, "ADD", t.conf(MAPPINGS, None))
    assert (res.returncode, res.result["msg"]) == (1, "must be called as chained plugin")
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 3, "pmv3")
    res = t.run(
        t.OURS, node_ns, "ADD", t.conf([], pod.prev_result(version="0.4.0"), version="0.4.0")
    )
    assert res.returncode == 0
    assert res.result["ips"][0] == {
        "version": "4",
        "interface": 2,
        "address": f"{pod.ip4}/24",
        "gateway": t.GW4,
    }
    # ifname not in the prevResult: no container address, nothing installed
    res = t.run(t.OURS, node_ns, "ADD", t.conf(MAPPINGS, pod.prev_result()), ifname="eth9")
    assert res.returncode == 0
    assert firewall(node_ns) == before


# ------------------------------------------------------------------ GC


def _add(node, cid, index, name="pmnet", **keys):
    pod = t.Pod(harness.Netns("cnitest-pod-none"), index, f"pmv{index}")
    conf = t.conf(MAPPINGS, pod.prev_result(version="1.1.0"), version="1.1.0", name=name, **keys)
    res = t.run(t.OURS, node, "ADD", conf, container_id=cid)
    assert res.returncode == 0, res.stdout


def _gc(node, valid, name="pmnet", **keys):
    conf = {"cniVersion": "1.1.0", "name": name, "type": "portmap", **keys,
            "cni.dev/valid-attachments": [{"containerID": c, "ifname": "eth0"}
                                          for c in valid]}  # fmt: skip
    res = harness.run_plugin(t.OURS, "GC", conf, containerid=None, ifname=None, in_netns=node)
    assert res.returncode == 0, res.stdout


def test_gc_iptables(node_ns):
    t.setup_node(node_ns)
    for i, cid in enumerate(("c1", "c2", "c3"), start=1):
        _add(node_ns, cid, i)
    _add(node_ns, "c2", 4, name="othernet")
    c1_before = container_traces(node_ns, "c1")
    _gc(node_ns, ["c1", "c9"])
    assert container_traces(node_ns, "c3") == []
    assert container_traces(node_ns, "c2") == []  # this network's c2 is gone ...
    assert container_traces(node_ns, "c2", name="othernet")  # ... the other network's stays
    assert container_traces(node_ns, "c1") == c1_before != []
    assert any("-j CNI-HOSTPORT-DNAT" in ln for ln in t.nat(node_ns))  # shared chains stay
    _gc(node_ns, [])
    assert container_traces(node_ns, "c1") == []
    _gc(node_ns, [], name="othernet")
    assert not [ln for v6 in (False, True) for ln in t.nat(node_ns, v6) if "CNI-DN-" in ln]


def test_gc_nftables(node_ns):
    t.setup_node(node_ns)
    for i, cid in enumerate(("c1", "c2", "c3"), start=1):
        _add(node_ns, cid, i, backend="nftables")
    _add(node_ns, "c3", 4, name="othernet", backend="nftables")
    _add(node_ns, "c4", 5, name="othernet", backend="nftables")
    _gc(node_ns, ["c1"], backend="nftables")
    assert container_traces(node_ns, "c2") == []
    # c3 is still recorded by othernet: its rules (indistinguishable by comment) stay until that
    # network lets it go; only this network's record of it is removed
    assert container_traces(node_ns, "c3")
    assert container_traces(node_ns, "c1") and container_traces(node_ns, "c4")
    _gc(node_ns, [], name="othernet", backend="nftables")
    assert container_traces(node_ns, "c3") == [] and container_traces(node_ns, "c4") == []
    assert container_traces(node_ns, "c1")


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
@pytest.mark.parametrize(
    "mappings", ["x", [1], [{"hostPort": "a"}]], ids=["string", "number", "bad-port"]
)
def test_del_with_malformed_mappings_still_removes_the_rules(node_ns, backend, mappings):
    """DEL finds the rules by container ID: malformed portMappings in the DEL's runtimeConfig
    (the reference refuses the DEL over them) neither fail it nor keep the rules."""
    t.setup_node(node_ns)
    _add(node_ns, "cbad", 1, backend=backend)
    assert container_traces(node_ns, "cbad")
    conf = {"cniVersion": "1.1.0", "name": "pmnet", "type": "portmap", "backend": backend,
            "runtimeConfig": {"portMappings": mappings}}  # fmt: skip
    res = t.run(t.OURS, node_ns, "DEL", conf, container_id="cbad")
    assert res.returncode == 0 and res.stdout == "", res
    assert container_traces(node_ns, "cbad") == []


def test_failed_ipv6_setup_removes_the_ipv4_rules(node_ns):
    """Found by the full-count fuzzer: with a dual-stack pod, an IPv6 restore that fails (here a
    condition ip6tables refuses) left the IPv4 chain and rules of the same ADD; the reference
    leaves them to the runtime's DEL. A failed ADD now leaves the firewall as it found it."""
    t.setup_node(node_ns)
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 1, "pmv1")
    before = firewall(node_ns)
    conf = t.conf(MAPPINGS, pod.prev_result(), conditionsV6=["-s"])
    res = t.run(t.OURS, node_ns, "ADD", conf, container_id="cfail")
    assert res.returncode == 1 and res.result["code"] == 999, res
    assert container_traces(node_ns, "cfail") == []
    after = firewall(node_ns)
    assert [ln for ln in after["iptables"] if "CNI-DN-" in ln] == [
        ln for ln in before["iptables"] if "CNI-DN-" in ln
    ]


# ------------------------------------------------------------------ concurrency


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_concurrent_adds_and_dels(node_ns, backend):
    """Parallel ADDs on a fresh node: shared chains made once, every container complete."""
    t.setup_node(node_ns)
    n = int(os.environ.get("PORTMAP_CONCURRENCY", "8"))

    def add(i):
        pod = t.Pod(harness.Netns("cnitest-pod-none"), i, f"pmv{i}")
        maps = [{"hostPort": 9000 + i, "containerPort": 80, "protocol": "tcp"}]
        conf = t.conf(maps, pod.prev_result(v6=False), backend=backend)
        return t.run(t.OURS, node_ns, "ADD", conf, container_id=f"c{i}")

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(add, range(1, n + 1)))
    assert all(r.returncode == 0 for r in results), [r.stdout for r in results if r.returncode]
    if backend == "iptables":
        lines = t.nat(node_ns)
        assert lines.count("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT") == 1
        assert lines.count("-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT") == 1
        assert sum(1 for ln in lines if ln.startswith("-A POSTROUTING")) == 1
        assert sum(1 for ln in lines if ln.startswith("-A CNI-HOSTPORT-DNAT")) == n
        assert sum(1 for ln in lines if ln.startswith("-A CNI-DN-")) == 3 * n
    else:
        lines = t.nft_table(node_ns, "ip")
        assert sum(1 for ln in lines if " dnat to " in ln) == n
        assert sum(1 for ln in lines if "fib daddr type local" in ln) == 2

    def delete(i):
        conf = t.conf([{"hostPort": 1, "containerPort": 1, "protocol": "tcp"}], None,
                      backend=backend)
        return t.run(t.OURS, node_ns, "DEL", conf, container_id=f"c{i}")

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(delete, range(1, n + 1)))
    assert all(r.returncode == 0 for r in results), [r.stdout for r in results if r.returncode]
    for i in range(1, n + 1):
        assert container_traces(node_ns, f"c{i}") == []


def test_status(node_ns):
    conf = {"cniVersion": "1.1.0", "name": "pmnet", "type": "portmap"}
    res = harness.run_plugin(
        t.OURS, "STATUS", conf, containerid=None, ifname=None, in_netns=node_ns
    )
    assert (res.returncode, res.stdout) == (0, "")
    res = harness.run_plugin(t.OURS, "STATUS", {**conf, "backend": "nftables"}, containerid=None,
                             ifname=None, in_netns=node_ns)  # fmt: skip
    assert (res.returncode, res.stdout) == (0, "")
    res = harness.run_plugin(t.OURS, "STATUS", conf, containerid=None, ifname=None,
                             in_netns=node_ns, extra_env={"PATH": "/nonexistent"})  # fmt: skip
    assert res.returncode == 1 and res.result["code"] == 50


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_masq_all(net, backend):
    """upstream 3d27709f's masqAll: every hostPort connection is masqueraded, no separate localhost
    rule."""
    node, a, b = net
    conf = t.conf(
        MAPPINGS, a.prev_result(version="1.1.0"), version="1.1.0", backend=backend, masqAll=True
    )
    assert t.run(t.OURS, node, "ADD", conf).returncode == 0
    assert t.run(t.OURS, node, "CHECK", conf).returncode == 0
    for client in (node, b.ns):
        assert t.fetch(client, "tcp", t.NODE_IP4, TCP) == "from-A"
        assert t.fetch(client, "udp", t.NODE_IP6, UDP) == "from-A"
    if backend == "iptables":
        from plugins.portmap.iptables import dnat_chain_name

        chain = dnat_chain_name("pmnet", "ctr1")
        assert f"-A {chain} -p tcp -m tcp --dport {TCP} -j CNI-HOSTPORT-SETMARK" in t.nat(node)
        assert not any("127.0.0.1" in ln for ln in t.nat(node))
    else:
        masq = [ln for ln in t.nft_table(node, "ip") if "masquerade" in ln]
        assert masq == [f'ip saddr 0.0.0.0/0 ip daddr {a.ip4} masquerade comment "ctr1"']


ORACLE_RULES = [
    (False, ["-p", "tcp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", "RETURN"]),
    (False, ["-p", "TCP", "--dport", "8080", "-d", "192.168.0.2", "-s", "127.0.0.1",
             "-j", "RETURN"]),
    (False, ["-p", "sctp", "--dport", "1", "-s", "0.0.0.0/0",
             "-j", "DNAT", "--to-destination", "10.0.0.2:81"]),
    (True, ["-p", "udp", "--dport", "8085", "-d", "2001:db8:a::1", "-s", "2001:db8::2/64",
            "-j", "RETURN"]),
    (True, ["-p", "tcp", "--dport", "1", "-s", "::/0",
            "-j", "DNAT", "--to-destination", "[2001:db8:0::2]:85"]),
    (False, ["-m", "comment", "--comment", 'dnat name: "n.1" id: "c\'d"', "-m", "multiport",
             "-p", "tcp", "--destination-ports", "8080,8081", "-s", "10.0.0.0/16", "-i", "eth+",
             "-j", "RETURN"]),
    (True, ["-m", "comment", "--comment", "x", "-m", "multiport", "-p", "udp",
            "--destination-ports", "1", "!", "-s", "fd00:dead::/32", "-j", "RETURN"]),
    (False, ["-m", "comment", "--comment", "CNI portfwd masquerade mark",
             "-j", "MARK", "--set-xmark", "0x20/0x20"]),
    (False, ["-m", "mark", "--mark", "0x2000/0x2000", "-j", "MASQUERADE"]),
    (False, ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "RETURN"]),
]  # fmt: skip


def test_canonical_text_is_what_iptables_save_prints(node_ns):
    """The oracle for plugins.linux.iptables_rules.canonical: the installed iptables itself."""
    from plugins.linux.iptables_rules import canonical

    for v6 in (False, True):
        node_ns.exec("ip6tables" if v6 else "iptables", "-t", "nat", "-N", "ORACLE")
    for v6, args in ORACLE_RULES:
        tool = "ip6tables" if v6 else "iptables"
        node_ns.exec(tool, "-t", "nat", "-F", "ORACLE")
        node_ns.exec(tool, "-t", "nat", "-A", "ORACLE", *args)
        saved = [ln[len("-A ORACLE "):] for ln in t.nat(node_ns, v6) if ln.startswith("-A ORACLE ")]
        predicted = canonical(args, v6)
        assert predicted.exact and saved == [predicted.text], args


# ------------------------------------------------------------------ self-healing


def test_udp_conntrack_entries_flushed_on_del(net):
    """DEL drops the UDP flows to its host ports too (they would keep going to the gone pod)."""
    node, a, _b = net
    conf = t.conf(MAPPINGS, a.prev_result())
    assert t.run(t.OURS, node, "ADD", conf).returncode == 0
    for src, dst in (("10.9.9.9", t.NODE_IP4), ("fd00:9::9", t.NODE_IP6)):
        for port in (UDP, 9999):
            proc = _conntrack(node, "-I", "-p", "udp", "-s", src, "-d", dst, "--sport", "4000",
                              "--dport", str(port), "-t", "120")
            assert proc.returncode == 0, proc.stderr
    _conntrack(node, "-I", "-p", "tcp", "-s", "10.9.9.9", "-d", t.NODE_IP4, "--sport", "4000",
               "--dport", str(UDP), "-t", "120", "--state", "ESTABLISHED")
    assert _ct_entries(node, "ipv4") == ["tcp:8081", "udp:8081", "udp:9999"]
    res = t.run(t.OURS, node, "DEL", conf)
    assert res.returncode == 0, res.stdout
    assert _ct_entries(node, "ipv4") == ["tcp:8081", "udp:9999"]
    assert _ct_entries(node, "ipv6") == ["udp:9999"]
    assert container_traces(node, "ctr1") == []


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_add_warns_when_another_container_maps_the_host_port(node_ns, backend):
    t.setup_node(node_ns)
    pods = [t.Pod(harness.Netns("cnitest-pod-none"), i, f"pmv{i}") for i in (1, 2, 3)]
    keys = {"backend": backend}
    first = t.run(t.OURS, node_ns, "ADD", t.conf(MAPPINGS, pods[0].prev_result(), **keys),
                  container_id="first")
    assert first.returncode == 0 and "already mapped" not in first.stderr, first.stderr
    # Same ports, protocols and (every) host address: both clash.
    second = t.run(t.OURS, node_ns, "ADD", t.conf(MAPPINGS, pods[1].prev_result(), **keys),
                   container_id="second")
    assert second.returncode == 0, second.stdout
    owner = "container first of network pmnet" if backend == "iptables" else "container first"
    tail = (
        "; only one of them receives that traffic: remove the other mapping or use another hostPort"
    )
    assert [ln for ln in second.stderr.splitlines() if "already mapped" in ln] == [
        f"portmap: hostPort {TCP}/tcp on every address is already mapped by {owner}{tail}",
        f"portmap: hostPort {UDP}/udp on every address is already mapped by {owner}{tail}",
    ]
    # Another protocol on the same port, or the same port on another host IP: no clash.
    other = [{"hostPort": TCP, "containerPort": 80, "protocol": "udp"},
             {"hostPort": UDP, "containerPort": 81, "protocol": "udp", "hostIP": t.NODE_IP4}]
    third = t.run(t.OURS, node_ns, "ADD", t.conf(other, pods[2].prev_result(), **keys),
                  container_id="third")
    assert third.returncode == 0, third.stdout
    assert [ln for ln in third.stderr.splitlines() if "already mapped" in ln] == [
        f"portmap: hostPort {UDP}/udp on {t.NODE_IP4} is already mapped by "
        f"{owner}, {owner.replace('first', 'second')}{tail}",
    ]
    for cid, pod in zip(("first", "second", "third"), pods, strict=True):
        mappings = other if cid == "third" else MAPPINGS
        res = t.run(t.OURS, node_ns, "DEL", t.conf(mappings, pod.prev_result(), **keys),
                    container_id=cid)
        assert res.returncode == 0, res.stdout


# ------------------------------------------------------------------ long container ids


def test_long_container_id_iptables_repeated_add_is_idempotent(node_ns):
    """A 240-character id: the reference's cut comment is stored cut once more by iptables
    (255 bytes); a second ADD must find its entry rule and add nothing, CHECK must find it and
    DEL must remove everything."""
    t.setup_node(node_ns)
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 3, "pmv3")
    cid = "b" * 240
    conf = t.conf(MAPPINGS, pod.prev_result(v6=False), backend="iptables")
    assert t.run(t.OURS, node_ns, "ADD", conf, container_id=cid).returncode == 0
    once = t.nat(node_ns)
    assert t.run(t.OURS, node_ns, "ADD", conf, container_id=cid).returncode == 0
    assert t.nat(node_ns) == once
    stored = 'id: \\"' + "b" * 229 + '.."'  # 253 characters and "..." passed, 255 kept
    entry = [ln for ln in once if ln.startswith("-A CNI-HOSTPORT-DNAT ") and stored in ln]
    assert len(entry) == 2, once  # tcp and udp
    assert t.run(t.OURS, node_ns, "CHECK", conf, container_id=cid).returncode == 0
    assert t.run(t.OURS, node_ns, "DEL", conf, container_id=cid).returncode == 0
    assert not [ln for ln in t.nat(node_ns) if "CNI-DN-" in ln]


def test_long_container_id_nftables_is_refused_cleanly(node_ns):
    """nft keeps at most 128 bytes of comment and refuses a longer one; the container id is
    the rules' comment (as upstream 3d27709f writes it), so ADD of a longer id fails as one
    transaction: a CNI error, nothing written; DEL of it succeeds."""
    t.setup_node(node_ns)
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 3, "pmv3")
    cid = "b" * 240
    conf = t.conf(MAPPINGS, pod.prev_result(v6=False), backend="nftables")
    before = firewall(node_ns)
    res = t.run(t.OURS, node_ns, "ADD", conf, container_id=cid)
    assert (res.returncode, res.result["code"]) == (1, 999)
    assert res.result["msg"].startswith("unable to set up nftables rules for port mappings: ")
    assert "comment too long" in res.result["msg"] and "Traceback" not in res.stderr
    assert firewall(node_ns) == before
    assert t.run(t.OURS, node_ns, "DEL", conf, container_id=cid).returncode == 0
