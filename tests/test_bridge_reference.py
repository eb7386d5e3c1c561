"""Differential tests: our bridge against the reference (/usr/lib/cni/bridge, v1.1.1) on the
same configurations, each in its own node namespace (docs/reference-behaviour.md §5, bridge cases).

Compared: exit status, the result (MACs, veth names and sandbox paths normalised), error
code/message, and kernel state (links, addresses, routes, sysctls, iptables nat, nftables).
The reference runs with the reference host-local, ours with ours (bridge_testlib.ipam_dir).
Where v1.1.1 and upstream 3d27709f differ (docs/reference-behaviour.md §0.9) the upstream 3d27709f
behaviour is asserted for ours, and the deviation is stated next to the assertion; deliberate
improvements likewise.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance import harness
from conformance.deviations import exhaustion_counts
from conformance.harness import Netns
from tests import bridge_testlib as bt

pytestmark = [pytest.mark.netns, pytest.mark.reference]

if not bt.REFERENCE.exists():  # pragma: no cover
    pytest.skip(harness.missing_reason("/usr/lib/cni/bridge", "containernetworking-plugins"), allow_module_level=True)


@dataclass
class Side:
    """One implementation's world: node netns, runner, IPAM data dir, pods it made."""

    name: str
    node: Netns
    run: bt.Runner
    data: Path
    make_pod: Any

    def conf(self, template: dict) -> dict:
        """`template` with this side's IPAM dataDir."""
        conf = copy.deepcopy(template)
        ipam = _ci_get(conf, "ipam")
        if isinstance(ipam, dict) and "dataDir" in ipam:
            ipam["dataDir"] = str(self.data)
        return conf


def _ci_get(d: dict, key: str) -> Any:
    for k, v in d.items():
        if k.lower() == key:
            return v
    return None


@pytest.fixture
def sides(tmp_path: Path, make_pod) -> Any:
    made = []
    try:
        out = {}
        for name, exe, ipam in (("ours", bt.OURS, "auto"), ("ref", bt.REFERENCE, "reference")):
            node = harness.create_netns("node")
            made.append(node)
            data = tmp_path / f"{name}-ipam"
            data.mkdir()
            runner = bt.Runner(exe, node, bt.ipam_dir(tmp_path / name, ipam))
            out[name] = Side(name, node, runner, data, make_pod)
        yield out["ours"], out["ref"]
    finally:
        for ns in made:
            harness.delete_netns(ns)


DATA = "/placeholder"  # replaced by each side's dataDir


def L3(**keys: Any) -> dict:
    return bt.l3_conf(DATA, name="refnet1", bridge="refbr0", **keys)


def L2(**keys: Any) -> dict:
    return bt.l2_conf(name="refnet1", bridge="refbr0", **keys)


# --------------------------------------------------------------------------- normalisation

_MAC_RE = re.compile(r"\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b")
_VETH_RE = re.compile(r"\bveth[0-9a-f]{8}\b")


def norm_result(res: Any, pod_path: str, *, ref: bool) -> Any:
    """Result with random MACs, veth names and the sandbox path replaced; v1.1.1's empty 1.x
    `dns` dropped (docs/reference-behaviour.md §0.9 #1)."""
    if not isinstance(res, dict):
        return res
    res = copy.deepcopy(res)
    for intf in res.get("interfaces", []):
        if "mac" in intf and not intf["mac"].startswith("0a:58:00:00:00:"):  # fixed test MACs
            intf["mac"] = "<mac>"
        intf["name"] = _VETH_RE.sub("<veth>", intf["name"])
        if intf.get("sandbox") == pod_path:
            intf["sandbox"] = "<netns>"
    if ref and res.get("cniVersion", "").startswith("1.") and res.get("dns") == {}:
        del res["dns"]
    return res


def norm_text(text: str) -> str:
    return _MAC_RE.sub("<mac>", _VETH_RE.sub("<veth>", text))


def err(e: Any) -> Any:
    """An error object without `cniVersion` (our skel adds it, as the spec asks; v1.1.1 does not)."""
    if isinstance(e, dict):
        return {k: v for k, v in e.items() if k != "cniVersion"}
    return e


def kernel_state(side: Side, pod: Netns | None, bridge: str = "refbr0", ifname: str = "eth0") -> dict:
    """What docs/reference-behaviour.md §5 compares, with names and MACs normalised."""
    node = side.node
    host = bt.links(node)
    st: dict[str, Any] = {"host_links": sorted(_VETH_RE.sub("<veth>", n) for n in host)}
    br = host.get(bridge)
    if br is not None:
        st["bridge"] = {
            "mtu": br["mtu"],
            "up": "UP" in br["flags"],
            "promiscuity": br.get("promiscuity", 0),
            "addr_assign_type": node.exec("cat", f"/sys/class/net/{bridge}/addr_assign_type").stdout.strip(),
            "kind": br.get("linkinfo", {}).get("info_kind"),
            "vlan_filtering": br.get("linkinfo", {}).get("info_data", {}).get("vlan_filtering"),
            "stp": br.get("linkinfo", {}).get("info_data", {}).get("stp_state"),
            "addrs": bt.addrs(node, bridge),
        }
    ports = []
    for name, lk in sorted(host.items()):
        if lk.get("master") != bridge:
            continue
        slave = lk["linkinfo"]["info_slave_data"]
        ports.append({
            "name": _VETH_RE.sub("<veth>", name),
            "mtu": lk["mtu"],
            "operstate": lk["operstate"],
            "hairpin": slave.get("hairpin"),
            "learning": slave.get("learning"),
            "accept_ra": bt.sysctls(node, [f"net/ipv6/conf/{name}/accept_ra"]).popitem()[1],
        })
    st["ports"] = ports
    st["host_sysctls"] = bt.sysctls(node, ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"]
                                  + ([f"net/ipv6/conf/{bridge}/accept_ra"] if br else []))
    st["nat4"] = bt.nat_rules(node)
    st["nat6"] = bt.nat_rules(node, ipv6=True)
    st["nft"] = norm_text(bt.nft_ruleset(node))
    if pod is not None:
        plinks = bt.links(pod)
        st["pod_links"] = sorted(plinks)
        c = plinks.get(ifname)
        if c is not None:
            st["pod_if"] = {
                "mtu": c["mtu"], "up": "UP" in c["flags"], "operstate": c["operstate"],
                "addrs": bt.addrs(pod, ifname),
            }
            st["pod_sysctls"] = bt.sysctls(pod, [
                f"net/ipv6/conf/{ifname}/accept_dad", f"net/ipv6/conf/{ifname}/enhanced_dad",
                f"net/ipv4/conf/{ifname}/arp_notify", f"net/ipv6/conf/{ifname}/disable_ipv6",
                "net/ipv6/conf/lo/disable_ipv6",
            ])
        st["lo_up"] = "UP" in plinks["lo"]["flags"]
        st["routes4"] = bt.routes(pod, "-4")
        st["routes6"] = [r for r in bt.routes(pod, "-6") if not r.startswith(("fe80::", "multicast"))]
    st["leases"] = sorted(bt.lease_files(side.data, "refnet1"))
    return st


def both(ours: Side, ref: Side, command: str, template: dict, *, pods: tuple | None = None,
         **kw: Any) -> tuple:
    """Run `command` with `template` on both sides; (our run, ref run, our pod, ref pod)."""
    if pods is None:
        pods = (ours.make_pod(), ref.make_pod())
    r_ours = ours.run(command, ours.conf(template), pods[0], **kw)
    r_ref = ref.run(command, ref.conf(template), pods[1], **kw)
    assert "Traceback" not in r_ours.stderr, r_ours.stderr
    return r_ours, r_ref, pods[0], pods[1]


def assert_same(ours: Side, ref: Side, template: dict, *, cid: str = "ctr1", **kw: Any) -> tuple:
    """ADD on both sides; results and kernel state equal after normalisation."""
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", template, cid=cid, **kw)
    assert (r_o.returncode, r_r.returncode) == (0, 0), (r_o.stdout, r_r.stdout)
    assert norm_result(r_o.result, p_o.path, ref=False) == norm_result(r_r.result, p_r.path, ref=True)
    s_o, s_r = kernel_state(ours, p_o), kernel_state(ref, p_r)
    # upstream 3d27709f also sets keep_addr_on_down=1 for IPv6 (docs/reference-behaviour.md §0.9
    # #4): not compared here.
    assert s_o == s_r
    return r_o, r_r, p_o, p_r


# =========================================================================== equal outcomes


CASES = {
    "44-l3-gateway-default-route": L3(isGateway=True, ipMasq=True, routes=[{"dst": "0.0.0.0/0"}]),
    "l3-no-gateway": L3(),
    "50-mtu-9000": L3(mtu=9000, isGateway=True),
    "54-dual-stack-default-gw": L3(
        subnet=None, isDefaultGateway=True, routes=[{"dst": "10.250.77.0/24"}],
        ranges=[[{"subnet": "10.250.7.0/24"}], [{"subnet": "fd00:250:7::/64"}]],
    ),
    "58-two-ipv6-range-sets": L3(
        subnet=None, isGateway=True, ranges=[[{"subnet": "fd00:1::/64"}], [{"subnet": "fd00:2::/64"}]]
    ),
    "61-case-insensitive-keys": {
        "cniVersion": "1.0.0", "name": "refnet1", "type": "bridge", "BRIDGE": "refbr0",
        "IsGateway": True, "IPAM": {"TYPE": "host-local", "SUBNET": "10.250.2.0/24", "dataDir": DATA},
    },
    "62-config-dns": L3(dns={"nameservers": ["10.0.0.10"], "search": ["a.local"], "options": ["ndots:2"]}),
    "62-empty-dns-override": L3(dns={"nameservers": []}),
    "63-64-ipmasq-dual-stack": L3(
        ipMasq=True, isGateway=True, subnet=None,
        ranges=[[{"subnet": "10.250.1.0/24"}], [{"subnet": "fd00:1::/64"}]],
    ),
    "68-enabledad": L3(enabledad=True),
    "70-hairpin": L3(hairpinMode=True, isGateway=True),
    "promisc": L3(promiscMode=True),
    "force-address-fresh": L3(isGateway=True, forceAddress=True),
    "routes-with-gw": L3(
        isGateway=True, routes=[{"dst": "10.250.99.0/24", "gw": "10.250.1.6"}, {"dst": "192.168.0.0/16"}],
    ),
    "80-version-0.4.0": L3(version="0.4.0", isGateway=True),
    "80-version-0.2.0": L3(version="0.2.0", isDefaultGateway=True),
    "0.3.1-isDefaultGateway": L3(version="0.3.1", isDefaultGateway=True),
    "53-l2-1.0.0": L2(),
    "53-l2-0.3.1": L2(version="0.3.1"),
    "mac-runtime-config": L3(runtimeConfig={"mac": "0a:58:00:00:00:17"}, args={"cni": {"mac": "0a:58:00:00:00:16"}}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_add(case: str, sides) -> None:
    ours, ref = sides
    template = CASES[case]
    r_o, r_r, p_o, p_r = assert_same(ours, ref, template)
    # DEL on both: same state afterwards, and a second DEL is fine on both
    for side, pod in ((ours, p_o), (ref, p_r)):
        side.run.ok("DEL", side.conf(template), pod)
        side.run.ok("DEL", side.conf(template), pod)
    assert kernel_state(ours, p_o) == kernel_state(ref, p_r)


def test_route_priority_is_upstream_behaviour(sides) -> None:
    """A route `priority` is kept in the result and installed as the metric at upstream 3d27709f;
    v1.1.1's libcni drops it (docs/reference-behaviour.md §0.9: newer route fields). Everything
    else is equal."""
    ours, ref = sides
    template = L3(routes=[{"dst": "10.250.99.0/24", "gw": "10.250.1.6", "priority": 5}])
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", template)
    assert r_o.result["routes"] == [{"dst": "10.250.99.0/24", "gw": "10.250.1.6", "priority": 5}]
    assert r_r.result["routes"] == [{"dst": "10.250.99.0/24", "gw": "10.250.1.6"}]
    assert "10.250.99.0/24 via 10.250.1.6 dev eth0 metric 5" in bt.routes(p_o)
    assert "10.250.99.0/24 via 10.250.1.6 dev eth0" in bt.routes(p_r)


def test_45_veth_names_and_macs(sides) -> None:
    ours, ref = sides
    r_o, r_r, p_o, p_r = assert_same(ours, ref, L3(isGateway=True))
    for side, r, pod in ((ours, r_o, p_o), (ref, r_r, p_r)):
        br, veth, cont = r.result["interfaces"]
        assert bt.is_veth_name(veth["name"])
        host = bt.links(side.node)
        assert host[veth["name"]]["address"] == veth["mac"]
        assert host["refbr0"]["address"] == br["mac"]
        assert bt.links(pod)["eth0"]["address"] == cont["mac"]


def test_51_existing_bridge_keeps_its_mtu(sides) -> None:
    ours, ref = sides
    for side in sides:
        side.node.ip("link", "add", "refbr0", "type", "bridge")
        side.node.ip("link", "set", "refbr0", "mtu", "1400")
    assert_same(ours, ref, L3(mtu=9000))


def test_53_l2_mac_and_container_up(sides) -> None:
    ours, ref = sides
    r_o, r_r, _, _ = assert_same(ours, ref, L2())
    for side, r in ((ours, r_o), (ref, r_r)):
        # an L2 bridge takes the MAC of its (only) port
        assert r.result["interfaces"][0]["mac"] == r.result["interfaces"][1]["mac"]
        assert bt.links(side.node)["refbr0"]["address"] == r.result["interfaces"][0]["mac"]


def test_57_force_address_replaces(sides) -> None:
    ours, ref = sides
    for side in sides:
        side.node.ip("link", "add", "refbr0", "type", "bridge")
        side.node.ip("addr", "add", "10.250.9.1/24", "dev", "refbr0")
    assert_same(ours, ref, L3(subnet="10.250.10.0/24", isGateway=True, forceAddress=True))


def test_67_macspoofchk(sides) -> None:
    ours, ref = sides
    template = L3(macspoofchk=True)
    r_o, r_r, p_o, p_r = assert_same(ours, ref, template)
    assert "macspoofchk-ctr1-eth0" in bt.nft_ruleset(ours.node)
    for side, pod in ((ours, p_o), (ref, p_r)):
        side.run.ok("DEL", side.conf(template), pod)
    assert norm_text(bt.nft_ruleset(ours.node)) == norm_text(bt.nft_ruleset(ref.node))
    assert "table bridge nat" in bt.nft_ruleset(ours.node)


def test_59_mac_in_cni_args(sides) -> None:
    ours, ref = sides
    assert_same(ours, ref, L3(), args="IgnoreUnknown=1;MAC=0a:58:00:00:00:15")
    # without IgnoreUnknown host-local refuses the MAC key (its error relayed unchanged)
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", L3(), cid="c2", args="MAC=0a:58:00:00:00:15")
    assert r_o.returncode == r_r.returncode == 1
    assert r_o.result["msg"] == r_r.result["msg"] == 'ARGS: unknown args ["MAC=0a:58:00:00:00:15"]'
    # cni.args reports CNI_ARGS problems as code 4 (bad environment); Go's LoadArgs errors are 999
    assert (r_o.result["code"], r_r.result["code"]) == (4, 999)
    # The reference leaves the veth pair; ours rolls it back (deliberate).
    assert sorted(bt.links(p_o)) == ["lo"]
    assert "eth0" in bt.links(p_r)


# =========================================================================== CHECK / DEL


def test_77_check_pass_and_fail(sides) -> None:
    ours, ref = sides
    template = L3(isGateway=True, routes=[{"dst": "0.0.0.0/0"}])
    r_o, r_r, p_o, p_r = assert_same(ours, ref, template)
    ours.run.ok("CHECK", bt.with_prev(ours.conf(template), r_o.result), p_o)
    ref.run.ok("CHECK", bt.with_prev(ref.conf(template), r_r.result), p_r)
    for pod in (p_o, p_r):
        pod.ip("route", "del", "default")
    e_o = ours.run.fail("CHECK", bt.with_prev(ours.conf(template), r_o.result), p_o)
    e_r = ref.run.fail("CHECK", bt.with_prev(ref.conf(template), r_r.result), p_r)
    assert e_r["msg"] == "Expected Route {Dst:{IP:0.0.0.0 Mask:00000000} GW:<nil>} not found in routing table"
    # upstream 3d27709f prints the route with its newer fields
    # (docs/reference-behaviour.md §0.9 #10)
    assert e_o["msg"] == (
        "Expected Route {Dst:{IP:0.0.0.0 Mask:00000000} GW:<nil> MTU:0 AdvMSS:0 Priority:0 "
        "Table:<nil> Scope:<nil>} not found in routing table"
    )
    for pod in (p_o, p_r):
        pod.ip("addr", "flush", "dev", "eth0")
    e_o = ours.run.fail("CHECK", bt.with_prev(ours.conf(template), r_o.result), p_o)
    e_r = ref.run.fail("CHECK", bt.with_prev(ref.conf(template), r_r.result), p_r)
    assert err(e_o) == err(e_r)
    for pod in (p_o, p_r):
        pod.ip("link", "del", "eth0")
    e_o = ours.run.fail("CHECK", bt.with_prev(ours.conf(template), r_o.result), p_o)
    e_r = ref.run.fail("CHECK", bt.with_prev(ref.conf(template), r_r.result), p_r)
    assert err(e_o) == err(e_r)


@pytest.mark.parametrize(
    "template, prev",
    [
        (L3(), None),
        (L2(), {}),
        (L3(version="0.4.0"), {"cniVersion": "1.0.0"}),
    ],
    ids=["78-no-prevresult", "78-l2-check", "78-prev-version-mismatch"],
)
def test_78_check_errors(template: dict, prev: dict | None, sides) -> None:
    ours, ref = sides
    pods = (ours.make_pod(), ref.make_pod())
    e = []
    for side, pod in zip(sides, pods, strict=True):
        conf = side.conf(template)
        if prev is not None:
            conf["prevResult"] = prev
        e.append(side.run.fail("CHECK", conf, pod))
    assert err(e[0]) == err(e[1])


def test_75_del_variants(sides) -> None:
    ours, ref = sides
    template = L3(isGateway=True)
    r_o, r_r, p_o, p_r = assert_same(ours, ref, template)
    for side in sides:
        side.run.ok("DEL", side.conf(template), netns="")
        side.run.ok("DEL", side.conf(template), netns="/run/netns/does-not-exist")
    assert kernel_state(ours, p_o) == kernel_state(ref, p_r)
    assert kernel_state(ours, p_o)["leases"] == []


def test_65_del_after_link_removed(sides) -> None:
    ours, ref = sides
    template = L3(ipMasq=True)
    r_o, r_r, p_o, p_r = assert_same(ours, ref, template)
    for side, pod in ((ours, p_o), (ref, p_r)):
        pod.ip("link", "del", "eth0")
        side.run.ok("DEL", side.conf(template), pod)
    # The reference leaks its masquerade chain here; ours removes it (deliberate).
    assert bt.nat_rules(ref.node) != []
    assert bt.nat_rules(ours.node) == []
    assert bt.lease_files(ours.data, "refnet1") == bt.lease_files(ref.data, "refnet1") == []


def test_reference_del_removes_our_masquerade(sides) -> None:
    """Layout compatibility: the reference's DEL cleans up what our ADD made, and vice versa."""
    ours, ref = sides
    template = L3(ipMasq=True, subnet=None,
                  ranges=[[{"subnet": "10.250.1.0/24"}], [{"subnet": "fd00:1::/64"}]])
    pod = ours.make_pod()
    ours.run.ok("ADD", ours.conf(template), pod)
    assert bt.nat_rules(ours.node)
    reference_in_our_node = bt.Runner(bt.REFERENCE, ours.node, ours.run.cni_path)
    reference_in_our_node.ok("DEL", ours.conf(template), pod)
    assert bt.nat_rules(ours.node) == [] and bt.nat_rules(ours.node, ipv6=True) == []
    pod2 = ref.make_pod()
    ref.run.ok("ADD", ref.conf(template), pod2, cid="c2")
    ours_in_ref_node = bt.Runner(bt.OURS, ref.node, ref.run.cni_path)
    ours_in_ref_node.ok("DEL", ref.conf(template), pod2, cid="c2")
    assert bt.nat_rules(ref.node) == [] and bt.nat_rules(ref.node, ipv6=True) == []


def test_109_del_on_regular_file(sides, tmp_path: Path) -> None:
    ours, ref = sides
    template = L3()
    assert_same(ours, ref, template)
    f = tmp_path / "regular"
    f.write_text("")
    e_o = ours.run.fail("DEL", ours.conf(template), netns=str(f))
    e_r = ref.run.fail("DEL", ref.conf(template), netns=str(f))
    assert err(e_o) == err(e_r)
    assert bt.lease_files(ours.data, "refnet1") == bt.lease_files(ref.data, "refnet1") == ["10.250.1.2"]


def test_76_del_with_missing_ipam(sides) -> None:
    ours, ref = sides
    template = L3()
    r_o, r_r, p_o, p_r = assert_same(ours, ref, template)
    broken = copy.deepcopy(template)
    broken["ipam"]["type"] = "nosuchipam"
    e_o = ours.run.fail("DEL", ours.conf(broken), p_o)
    e_r = ref.run.fail("DEL", ref.conf(broken), p_r)
    assert e_o["code"] == e_r["code"]
    assert e_o["msg"].split(" in path")[0] == e_r["msg"].split(" in path")[0]
    assert "eth0" not in bt.links(p_o) and "eth0" not in bt.links(p_r)


# =========================================================================== errors


def _clean(side: Side, pod: Netns) -> bool:
    return sorted(bt.links(pod)) == ["lo"] and bt.lease_files(side.data, "refnet1") == []


def test_46_second_add_same_ifname(sides) -> None:
    ours, ref = sides
    template = L3()
    r_o, r_r, p_o, p_r = assert_same(ours, ref, template)
    e_o = ours.run.fail("ADD", ours.conf(template), p_o, cid="c2")
    e_r = ref.run.fail("ADD", ref.conf(template), p_r, cid="c2")
    assert e_o["code"] == e_r["code"] == 999
    # v1.1.1 wording; upstream 3d27709f names the peer too (docs/reference-behaviour.md §0.9 #7)
    assert e_r["msg"] == "container veth name provided (eth0) already exists"
    assert re.fullmatch(r'container veth name \("eth0"\) peer provided \("veth[0-9a-f]{8}"\) already exists',
                        e_o["msg"])
    assert kernel_state(ours, p_o) == kernel_state(ref, p_r)


def test_49_bridge_name_is_not_a_bridge(sides) -> None:
    ours, ref = sides
    for side in sides:
        side.node.ip("link", "add", "refbr0", "type", "veth", "peer", "name", "refbrpeer")
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", L3())
    assert err(r_o.result) == err(r_r.result)
    assert r_o.result["msg"] == 'failed to create bridge "refbr0": "refbr0" already exists but is not a bridge'
    assert kernel_state(ours, p_o) == kernel_state(ref, p_r)


def test_52_missing_netns(sides) -> None:
    ours, ref = sides
    r_o = ours.run("ADD", ours.conf(L3()), netns="/run/netns/nope")
    r_r = ref.run("ADD", ref.conf(L3()), netns="/run/netns/nope")
    assert err(r_o.result) == err(r_r.result)
    # The reference leaves the new bridge behind; ours removes it (deliberate).
    assert "refbr0" in bt.links(ref.node) and "refbr0" not in bt.links(ours.node)


@pytest.mark.parametrize(
    "keys",
    [
        {"vlan": 4095},
        {"hairpinMode": True, "promiscMode": True},
        {"runtimeConfig": {"mac": "zz"}},
        {"mtu": 70000},
    ],
    ids=["48-vlan", "47-hairpin-promisc", "60-bad-mac", "50-mtu-70000"],
)
def test_config_errors(keys: dict, sides) -> None:
    """Same failure, nothing configured in the pod. Deliberate differences: ours answers code 7
    (invalid config) before creating anything, the reference 999 (and it creates the bridge
    first for the MAC and MTU cases); v1.1.1's hairpin text ends in a period (upstream 3d27709f's
    does not); an out-of-range MTU gets our own message instead of the kernel's `invalid
    argument`."""
    ours, ref = sides
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", L3(**keys))
    assert r_o.returncode == r_r.returncode == 1
    assert r_o.result["code"] == 7 and r_r.result["code"] == 999
    if "mtu" in keys:
        assert r_r.result["msg"] == 'failed to create bridge "refbr0": could not add "refbr0": invalid argument'
        assert r_o.result["msg"] == "invalid MTU 70000 (must be 0 or between 68 and 65535)"
    else:
        assert r_o.result["msg"] == r_r.result["msg"].rstrip(".")
    assert _clean(ours, p_o) and _clean(ref, p_r)
    assert sorted(bt.links(ours.node)) == ["lo"]


def test_55_duplicate_default_route(sides) -> None:
    ours, ref = sides
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", L3(isDefaultGateway=True, routes=[{"dst": "0.0.0.0/0"}]))
    assert r_o.returncode == r_r.returncode == 1
    mask = "{0.0.0.0 00000000000000000000ffff00000000}"
    assert r_r.result["msg"] == f"failed to add route '{mask} via 10.250.1.1 dev eth0': file exists"
    # upstream 3d27709f's message adds metric, scope and table
    # (docs/reference-behaviour.md §0.9 #7)
    assert r_o.result["msg"] == (
        f"failed to add route '{mask} via 10.250.1.1 dev eth0 metric 0 (Scope: universe, Table: 0)': file exists"
    )
    # both release the lease; the reference keeps the configured eth0, ours removes it
    assert bt.lease_files(ours.data, "refnet1") == bt.lease_files(ref.data, "refnet1") == []
    assert sorted(bt.links(p_o)) == ["lo"] and "eth0" in bt.links(p_r)


def test_56_bridge_address_conflict(sides) -> None:
    """With a port attached (a pod of the old subnet), both refuse; ours adds the port and the
    fix after the reference's text. Without ports ours re-addresses (test_bridge_readdress)."""
    ours, ref = sides
    for side in sides:
        side.node.ip("link", "add", "refbr0", "type", "bridge")
        side.node.ip("addr", "add", "10.250.9.1/24", "dev", "refbr0")
        side.node.ip("link", "add", "oldport0", "type", "veth", "peer", "name", "oldpeer0")
        side.node.ip("link", "set", "oldport0", "master", "refbr0")
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", L3(subnet="10.250.10.0/24", isGateway=True))
    refusal = 'failed to set bridge addr: "refbr0" already has an IP address different from 10.250.10.1/24'
    assert r_r.result["msg"] == refusal
    assert r_o.result["msg"] == (
        f"{refusal}; ports still attached: oldport0 (pod address unknown); fix: remove the pods "
        "still attached (drain the node), then the next ADD or `cnitool doctor --fix` replaces "
        "the address"
    )
    assert r_o.result["code"] == r_r.result["code"]
    assert bt.lease_files(ours.data, "refnet1") == bt.lease_files(ref.data, "refnet1") == []
    # The reference leaves eth0 configured in the pod; ours removes it (deliberate).
    assert bt.addrs(p_r, "eth0") == ["10.250.10.2/24"] and sorted(bt.links(p_o)) == ["lo"]


def test_108_ipam_exhaustion(sides) -> None:
    ours, ref = sides
    template = L3(subnet="10.250.15.0/30")
    assert_same(ours, ref, template, cid="first")
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", template, cid="second")
    base = "failed to allocate for range 0: no IP addresses available in range set: 10.250.15.1-10.250.15.2"
    assert r_r.result["msg"] == base
    # Ours adds the lease counts (the first pod is alive) and the command that frees dead ones.
    assert r_o.result["msg"] == base + exhaustion_counts(1, 0, 0, "refnet1")
    assert r_o.result["code"] == r_r.result["code"]
    # The reference keeps a down eth0 and an enslaved host veth; ours removes the pair.
    assert "eth0" in bt.links(p_r) and sorted(bt.links(p_o)) == ["lo"]


def test_53_l2_0_2_0_cannot_convert(sides) -> None:
    ours, ref = sides
    r_o, r_r, p_o, p_r = both(ours, ref, "ADD", L2(version="0.2.0"))
    assert err(r_o.result) == err(r_r.result)
    assert r_o.result["msg"] == "cannot convert: no valid IP addresses"
    # The reference has already configured everything; ours fails before leaving anything.
    assert "eth0" in bt.links(p_r) and sorted(bt.links(p_o)) == ["lo"]


def test_generic_errors_same(sides) -> None:
    """docs/reference-behaviour.md P3-P10 against the bridge: env and stdin validation."""
    ours, ref = sides
    conf = L3()
    for kw in ({"cid": "a/b"}, {"ifname": "abcdefghijklmnop"}, {"ifname": "a:b"}):
        r_o = ours.run("ADD", ours.conf(conf), netns="/run/netns/x", **kw)
        r_r = ref.run("ADD", ref.conf(conf), netns="/run/netns/x", **kw)
        assert (r_o.returncode, err(r_o.result)) == (r_r.returncode, err(r_r.result))
    r_o = ours.run("ADD", b"{bad")
    r_r = ref.run("ADD", b"{bad")
    assert err(r_o.result) == err(r_r.result)
    r_o = ours.run("FOO", ours.conf(conf))
    r_r = ref.run("FOO", ref.conf(conf))
    assert err(r_o.result) == err(r_r.result)


def test_version_reply(sides) -> None:
    ours, ref = sides
    r_o = ours.run("VERSION", b"")
    r_r = ref.run("VERSION", b"")
    o, r = json.loads(r_o.stdout), json.loads(r_r.stdout)
    # upstream 3d27709f supports 1.1.0 (docs/reference-behaviour.md §0.9 #1)
    assert o["supportedVersions"] == r["supportedVersions"] + ["1.1.0"]
