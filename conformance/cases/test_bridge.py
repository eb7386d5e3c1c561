"""bridge (with host-local): docs/reference-behaviour.md P44-P80, P108, P109, plus
docs/spec-rules.md C38, C42, C44, C46, C47 and C50. Each case's docstring starts with its ids.

Observation of every scenario: each call's outcome, the node namespace (links, addresses,
routes, the sysctls of docs/reference-behaviour.md §2.10, the bridge's addr_assign_type,
firewall rules) and each pod namespace (links, addresses, routes, sysctls), and the host-local lease
directory. P71 and P73 (VLAN filtering, the VLAN gateway interface) are not covered here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from conformance import deviations as dev
from conformance import observe
from conformance.bindir import CniDir
from conformance.cases.test_host_local import drop_route_extras, lease_dir
from conformance.checks import require
from conformance.sandbox import Sandbox, differential, without

pytestmark = pytest.mark.usefixtures("_bridge")

BR = "refbr0"


@pytest.fixture
def _bridge(cni: CniDir) -> None:
    require(cni, "bridge", "host-local")


NODE_SYSCTLS = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv6/conf/all/forwarding",
    "/proc/sys/net/ipv6/conf/refbr*/accept_ra",
    "/proc/sys/net/ipv6/conf/veth*/accept_ra",
    "/proc/sys/net/ipv4/conf/refbr*/route_localnet",
    "/sys/class/net/refbr*/addr_assign_type",
]
POD_SYSCTLS = [
    "/proc/sys/net/ipv6/conf/eth0/accept_dad",
    "/proc/sys/net/ipv6/conf/eth0/enhanced_dad",
    "/proc/sys/net/ipv6/conf/eth0/disable_ipv6",
    "/proc/sys/net/ipv6/conf/eth0/keep_addr_on_down",
    "/proc/sys/net/ipv6/conf/lo/disable_ipv6",
    "/proc/sys/net/ipv4/conf/eth0/arp_notify",
]


class Bridge:
    """Drives bridge + host-local in one sandbox: a node namespace and pods."""

    def __init__(self, cni: CniDir, sb: Sandbox, name: str = "refnet1") -> None:
        self.cni, self.sb, self.name = cni, sb, name
        self.data = sb.dir("ipam")
        self.node = sb.netns("node")
        self.pods: list[Any] = []
        self.steps: list[dict[str, Any]] = []

    def pod(self) -> Any:
        p = self.sb.netns("pod")
        self.pods.append(p)
        return p

    def conf(self, ipam: dict[str, Any] | None = None, version: str = "1.0.0",
             **top: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"cniVersion": version, "name": self.name, "type": "bridge",
                             "bridge": BR, **top}
        if ipam is not None:
            c["ipam"] = {"type": "host-local", "dataDir": str(self.data), **ipam}
        return c

    def call(self, command: str, conf: dict[str, Any] | bytes, pod: Any = None,
             cid: str = "ctr1", ifname: str = "eth0", netns: str | None = None,
             **kw: Any) -> dict[str, Any]:
        if netns is None:
            netns = pod.path if pod is not None else ""
        run = self.cni.run("bridge", command, conf, in_netns=self.node, netns=netns,
                           containerid=cid, ifname=ifname, **kw)
        out = observe.outcome(run)
        self.steps.append(out)
        return out

    def obs(self, firewall: bool = False) -> dict[str, Any]:
        o: dict[str, Any] = {
            "steps": self.steps,
            "node": observe.kernel(self.node),
            "node_sysctl": observe.sysctls(self.node, NODE_SYSCTLS),
            "pods": [{"kernel": observe.kernel(p), "sysctl": observe.sysctls(p, POD_SYSCTLS)}
                     for p in self.pods],
            "leases": lease_dir(self.cni, self.data / self.name),
        }
        if firewall:
            o["firewall"] = observe.firewall(self.node)
        return o


V4 = {"subnet": "10.250.1.0/24", "routes": [{"dst": "0.0.0.0/0"}]}


def link(k: dict[str, Any], name: str) -> dict[str, Any]:
    return next(li for li in k["links"] if li["ifname"] == name)


def addrs(k: dict[str, Any], dev_: str, family: str | None = None) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for a in k["addresses"]
            if a["dev"] == dev_ and (family is None or a["family"] == family)
            and a.get("scope") != "link" and a.get("scope") != "host"]


def routes(k: dict[str, Any], fam: str = "v4") -> list[str]:
    out = []
    for r in k["routes"][fam]:
        if r.get("table") in ("local",) or r.get("type") in ("local", "broadcast", "multicast"):
            continue
        s = r["dst"] + (f" via {r['gateway']}" if "gateway" in r else "") + f" dev {r['dev']}"
        out.append(s)
    return out


def msg(step: dict[str, Any]) -> str:
    assert step["rc"] == 1 and "error" in step, step
    return step["error"]["msg"]


def names(k: dict[str, Any]) -> list[str]:
    """Link names of a kernel observation, in ifindex order."""
    return [li["ifname"] for li in k["links"]]


def config_error_code(cni: CniDir) -> int:
    """The code of a configuration error the Go bridge returns untyped (I7: ours says 7)."""
    return dev.pick(cni, "I7-error-codes", new=7, old=999)


def rolled_back(cni: CniDir) -> bool:
    """True when a failed ADD must leave nothing behind (ours, I11); False on the reference,
    which keeps what it created before the failure."""
    return not dev.old_side(cni, "I11-failed-add-rollback")


KERNEL = ("node", "node_sysctl", "pods")
"""The kernel parts of a `Bridge.obs()`: what a failed ADD leaves differs (I11)."""


def test_br44_l3_add(cni: CniDir) -> None:
    """P44, P45, C46/C47: L3 ADD (isGateway, host-local /24, route 0.0.0.0/0): interfaces
    [bridge, host veth, eth0+sandbox], ips at interface 2; bridge .1/24 with its MAC pinned
    (addr_assign_type 3); ip_forward 1; accept_ra 0 on bridge and veth; container accept_dad 0,
    arp_notify 1, default route via .1; host veth `veth` + 8 hex with the result's MAC."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, isGateway=True, ipMasq=False), b.pod())
        return b.obs(firewall=True)

    obs = differential(cni, sc)
    res = obs["steps"][0]["result"]
    ifs = res["interfaces"]
    assert [i["name"] for i in ifs] == [BR, "<veth1>", "eth0"]
    assert "sandbox" not in ifs[0] and "sandbox" not in ifs[1]
    assert ifs[2]["sandbox"] == "<netns:pod1>"
    assert res["ips"] == [{"interface": 2, "address": "10.250.1.2/24", "gateway": "10.250.1.1"}]
    assert res["routes"] == [{"dst": "0.0.0.0/0"}]
    node, pod = obs["node"], obs["pods"][0]["kernel"]
    br = link(node, BR)
    assert br["kind"] == "bridge" and br["address"] == ifs[0]["mac"]
    veth = link(node, "<veth1>")
    assert veth["master"] == BR and veth["address"] == ifs[1]["mac"]
    assert veth["slave"]["hairpin"] is False
    assert addrs(node, BR) == ["10.250.1.1/24"]
    assert link(pod, "eth0")["address"] == ifs[2]["mac"]
    assert addrs(pod, "eth0") == ["10.250.1.2/24"]
    assert "default via 10.250.1.1 dev eth0" in routes(pod)
    assert "lo" in [li["ifname"] for li in pod["links"]]
    assert "UP" not in link(pod, "lo")["flags"]
    ns = obs["node_sysctl"]
    assert ns["/proc/sys/net/ipv4/ip_forward"] == "1"
    assert ns[f"/proc/sys/net/ipv6/conf/{BR}/accept_ra"] == "0"
    assert ns["/proc/sys/net/ipv6/conf/<veth1>/accept_ra"] == "0"
    assert ns[f"/sys/class/net/{BR}/addr_assign_type"] == "3"
    ps = obs["pods"][0]["sysctl"]
    assert ps["/proc/sys/net/ipv6/conf/eth0/accept_dad"] == "0"
    assert ps["/proc/sys/net/ipv4/conf/eth0/arp_notify"] == "1"
    assert obs["leases"]["10.250.1.2"]["data"] == "ctr1\r\neth0"


@pytest.mark.parametrize(
    ("variant", "version", "keys"),
    [
        ("l3-no-gateway", "1.0.0", {}),
        ("promiscuous-bridge", "1.0.0", {"promiscMode": True}),
        ("force-address-on-a-fresh-bridge", "1.0.0", {"isGateway": True, "forceAddress": True}),
        ("0.3.1-default-gateway", "0.3.1", {"isDefaultGateway": True}),
    ],
)
def test_br44_75_config_variants(cni: CniDir, variant: str, version: str,
                                 keys: dict[str, Any]) -> None:
    """P44, P75 on more configurations: no gateway, promiscMode, forceAddress on a fresh
    bridge, a 0.3.1 config with isDefaultGateway. ADD, then DEL twice; the result and the
    kernel state after each are compared with the reference's."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        c = b.conf({"subnet": "10.250.1.0/24"}, version=version, **keys)
        b.call("ADD", c, pod)
        added = b.obs(firewall=True)
        b.call("DEL", c, pod)
        b.call("DEL", c, pod)
        return {**b.obs(firewall=True), "added": {k: v for k, v in added.items() if k != "steps"}}

    obs = differential(cni, sc)
    assert [s["rc"] for s in obs["steps"]] == [0, 0, 0], (variant, obs["steps"])
    assert addrs(obs["added"]["pods"][0]["kernel"], "eth0") == ["10.250.1.2/24"]
    assert "eth0" not in names(obs["pods"][0]["kernel"])
    assert "10.250.1.2" not in obs["leases"]


def test_br44_route_priority(cni: CniDir) -> None:
    """P44 with a route `priority`: kept in the result and installed as the route's metric
    (upstream 3d27709f); v1.1.1 drops it from both (R12)."""
    route = {"dst": "10.250.99.0/24", "gw": "10.250.1.6", "priority": 5}

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        b.call("ADD", b.conf({"subnet": "10.250.1.0/24", "routes": [route]}), pod)
        metrics = [r.get("metric", 0) for r in observe.kernel(pod)["routes"]["v4"]
                   if r["dst"] == "10.250.99.0/24"]
        return {"steps": b.steps, "metrics": metrics}

    def old_release(o: dict[str, Any]) -> dict[str, Any]:
        return {**drop_route_extras(o), "metrics": []}

    obs = differential(cni, sc, fold={"R12-route-extras": old_release})
    assert obs["steps"][0]["result"]["routes"] == dev.pick(
        cni, "R12-route-extras", new=[route], old=[{"dst": route["dst"], "gw": route["gw"]}])
    assert obs["metrics"] == dev.pick(cni, "R12-route-extras", new=[5], old=[0])


def test_br63_75_del_by_the_other_implementation(cni: CniDir) -> None:
    """P63, P75, layout compatibility: the reference's DEL removes the masquerade rules our ADD
    made (IPv4 and IPv6), and ours removes the reference's. Needs a distinct reference."""
    if cni.ref is None:
        pytest.skip("needs a reference directory distinct from the one under test")
    ipam = {"ranges": [[{"subnet": "10.250.1.0/24"}], [{"subnet": "fd00:1::/64"}]]}

    def cross(adder: CniDir, remover: CniDir, sb: Sandbox) -> tuple[dict[str, str], ...]:
        b = Bridge(adder, sb)
        pod = b.pod()
        c = b.conf(ipam, ipMasq=True)
        assert b.call("ADD", c, pod)["rc"] == 0, b.steps
        added = observe.firewall(b.node)
        run = remover.run("bridge", "DEL", c, in_netns=b.node, netns=pod.path,
                          containerid="ctr1", ifname="eth0")
        assert run.returncode == 0, run.stdout
        return added, observe.firewall(b.node)

    for adder, remover in ((cni, cni.ref), (cni.ref, cni)):
        with Sandbox() as sb:
            added, after = cross(adder, remover, sb)
        assert "CNI-" in added["iptables"] + added["nft"], added
        assert "CNI-" not in after["iptables"] + after["ip6tables"], after


def test_br46_second_add_same_ifname(cni: CniDir) -> None:
    """P46, C38: a second ADD for the same netns+ifname -> code 999 veth-exists (wording
    R8), and no lease taken for it."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        b.call("ADD", b.conf(V4, isGateway=True), pod, cid="ctr1")
        b.call("ADD", b.conf(V4, isGateway=True), pod, cid="ctr2")
        return b.obs()

    obs = differential(cni, sc, ignore=("steps",))
    err = obs["steps"][1]["error"]
    assert err["code"] == 999
    if dev.old_side(cni, "R8-message-wording"):
        assert err["msg"] == "container veth name provided (eth0) already exists"
    else:
        assert re.fullmatch(r'container veth name \("eth0"\) peer provided \("<veth\d+>"\) '
                            r"already exists", err["msg"]), err
    assert [f for f in obs["leases"] if f.startswith("10.")] == ["10.250.1.2"]


@pytest.mark.parametrize(
    "extra, want",
    [
        ({"hairpinMode": True, "promiscMode": True},
         "cannot set hairpin mode and promiscuous mode at the same time"),
        ({"vlan": 4095}, "invalid VLAN ID 4095 (must be between 0 and 4094)"),
        ({"vlan": -1}, "invalid VLAN ID -1 (must be between 0 and 4094)"),
    ],
    ids=["hairpin-promisc", "vlan-4095", "vlan-negative"],
)
def test_br47_48_preflight(cni: CniDir, extra: dict[str, Any], want: str) -> None:
    """P47, P48: pre-flight errors, before any link exists (hairpin message: '.' in v1.1.1, R8);
    code 7 on ours, 999 on the Go bridge (I7)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, **extra), b.pod())
        return b.obs()

    obs = differential(cni, sc, fold={"R8-message-wording": _strip_period,
                                      "I7-error-codes": without("steps.0.error.code")})
    m = msg(obs["steps"][0])
    if "hairpin" in want:
        want = dev.pick(cni, "R8-message-wording", new=want, old=want + ".")
    assert m == want
    assert obs["steps"][0]["error"]["code"] == config_error_code(cni)
    assert [li["ifname"] for li in obs["node"]["links"]] == ["lo"]
    assert obs["leases"] == {"<absent>": True}


def _strip_period(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (v.rstrip(".") if k == "msg" and isinstance(v, str) else _strip_period(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_period(v) for v in obj]
    return obj


def test_br49_name_taken_by_non_bridge(cni: CniDir) -> None:
    """P49: the bridge name held by a veth -> `... already exists but is not a bridge`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.node.ip("link", "add", "refbrveth", "type", "veth", "peer", "name", "refbrpeer")
        b.call("ADD", b.conf(V4, bridge="refbrveth"), b.pod())
        return b.obs()

    obs = differential(cni, sc)
    assert msg(obs["steps"][0]) == ('failed to create bridge "refbrveth": "refbrveth" already '
                                    "exists but is not a bridge")


def test_br50_mtu(cni: CniDir) -> None:
    """P50, P51: mtu 70000 -> the Go bridge fails creating the bridge (`invalid argument`), ours
    refuses it up front (code 7 `invalid MTU 70000 (...)`, I8); mtu 9000 on a fresh bridge ->
    bridge, host veth and eth0 at 9000; a pre-existing bridge (MTU 1400 set by hand) keeps it
    while the veths get 9000; mtu 65536 with that bridge -> `failed to make veth pair: invalid
    argument` (ours: `invalid MTU 65536 (...)`, I8). Neither failure leaves a link behind."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, bridge="refbr5", mtu=70000), b.pod(), cid="c1")
        b.call("ADD", b.conf(V4, bridge="refbr6", mtu=9000), b.pod(), cid="c2")
        b.node.ip("link", "add", "refbr7", "type", "bridge")
        b.node.ip("link", "set", "refbr7", "mtu", "1400")  # set by hand: no auto-follow
        b.call("ADD", b.conf({"subnet": "10.250.7.0/24"}, bridge="refbr7", mtu=9000), b.pod(),
               cid="c3")
        b.call("ADD", b.conf({"subnet": "10.250.8.0/24"}, bridge="refbr6", mtu=65536),
               b.pod(), cid="c4")
        return b.obs()

    obs = differential(cni, sc, fold={
        "I8-bridge-mtu-range": without("steps.0.error", "steps.3.error")})
    s = obs["steps"]
    if dev.old_side(cni, "I8-bridge-mtu-range"):
        assert (s[0]["error"]["code"], msg(s[0])) == (
            999, 'failed to create bridge "refbr5": could not add "refbr5": invalid argument')
        assert (s[3]["error"]["code"], msg(s[3])) == (
            999, "failed to make veth pair: invalid argument")
    else:
        assert (s[0]["error"]["code"], msg(s[0])) == (
            7, "invalid MTU 70000 (must be 0 or between 68 and 65535)")
        assert (s[3]["error"]["code"], msg(s[3])) == (
            7, "invalid MTU 65536 (must be 0 or between 68 and 65535)")
    node = obs["node"]
    assert "refbr5" not in names(node)
    assert names(obs["pods"][0]["kernel"]) == ["lo"]
    assert names(obs["pods"][3]["kernel"]) == ["lo"]
    assert link(node, "refbr6")["mtu"] == 9000
    assert link(node, "refbr7")["mtu"] == 1400
    assert link(obs["pods"][1]["kernel"], "eth0")["mtu"] == 9000
    assert link(obs["pods"][2]["kernel"], "eth0")["mtu"] == 9000
    for veth in (s[1]["result"]["interfaces"][1]["name"], s[2]["result"]["interfaces"][1]["name"]):
        assert link(node, veth)["mtu"] == 9000


def test_br52_bad_netns(cni: CniDir) -> None:
    """P52: a CNI_NETNS that does not exist -> `failed to open netns ...`; the Go bridge leaves
    the bridge it created, ours removes it (I11)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4), netns="/var/run/netns/cnitest-gone")
        return b.obs()

    obs = differential(cni, sc, fold={"I11-failed-add-rollback": without(*KERNEL)})
    assert msg(obs["steps"][0]) == ('failed to open netns "/var/run/netns/cnitest-gone": failed '
                                    'to Statfs "/var/run/netns/cnitest-gone": no such file or '
                                    "directory")
    assert obs["leases"] == {"<absent>": True}
    if rolled_back(cni):
        assert names(obs["node"]) == ["lo"]
    else:
        assert names(obs["node"]) == ["lo", BR]
        assert link(obs["node"], BR)["kind"] == "bridge"


@pytest.mark.parametrize("version", ["1.0.0", "0.3.1", "0.2.0"])
def test_br53_l2(cni: CniDir, version: str) -> None:
    """P53: L2 (no ipam): no ips/routes; eth0 up with link-local only; the bridge MAC is the
    lowest port MAC; 0.3.1 prints `"dns": {}`; 0.2.0 fails `cannot convert: no valid IP
    addresses` - the Go bridge with bridge and veth pair left behind, ours with nothing (I11)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(None, version=version), b.pod())
        return b.obs()

    failing = version == "0.2.0"
    obs = differential(cni, sc, fold={"I11-failed-add-rollback": without(*KERNEL)}
                       if failing else None)
    step = obs["steps"][0]
    pod = obs["pods"][0]["kernel"]
    if failing:
        assert msg(step) == "cannot convert: no valid IP addresses"
        assert obs["leases"] == {"<absent>": True}
        if rolled_back(cni):
            assert names(obs["node"]) == ["lo"]
            assert names(pod) == ["lo"]
            return
    assert "UP" in link(pod, "eth0")["flags"]
    assert addrs(pod, "eth0") == []
    veth = next(li for li in obs["node"]["links"] if li.get("master") == BR)
    assert link(obs["node"], BR)["address"] == veth["address"]
    if failing:
        return
    res = step["result"]
    assert "ips" not in res and "routes" not in res
    assert [i["name"] for i in res["interfaces"]] == [BR, veth["ifname"], "eth0"]
    if version == "0.3.1":
        assert res["dns"] == {}


def test_br54_dual_stack_default_gateway(cni: CniDir) -> None:
    """P54, P69: dual stack + isDefaultGateway + an IPAM route without gw -> routes [ipam route,
    0.0.0.0/0 via v4 gw, ::/0 via v6 gw]; the gw-less route installed via the v4 gateway; both
    gateways on the bridge; all/forwarding 1; IPv6 enabled on lo and eth0; keep_addr_on_down 1
    (v1.1.1 0, R5)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        ipam = {"ranges": [[{"subnet": "10.250.7.0/24"}], [{"subnet": "fd00:250:7::/64"}]],
                "routes": [{"dst": "10.250.77.0/24"}]}
        b.call("ADD", b.conf(ipam, isDefaultGateway=True), b.pod())
        return b.obs()

    obs = differential(cni, sc, fold={"R5-keep-addr-on-down": _no_keep_addr})
    res = obs["steps"][0]["result"]
    assert res["routes"] == [{"dst": "10.250.77.0/24"},
                             {"dst": "0.0.0.0/0", "gw": "10.250.7.1"},
                             {"dst": "::/0", "gw": "fd00:250:7::1"}]
    pod = obs["pods"][0]["kernel"]
    assert "10.250.77.0/24 via 10.250.7.1 dev eth0" in routes(pod)
    assert "default via fd00:250:7::1 dev eth0" in routes(pod, "v6")
    assert sorted(addrs(obs["node"], BR)) == ["10.250.7.1/24", "fd00:250:7::1/64"]
    assert obs["node_sysctl"]["/proc/sys/net/ipv6/conf/all/forwarding"] == "1"
    ps = obs["pods"][0]["sysctl"]
    assert ps["/proc/sys/net/ipv6/conf/lo/disable_ipv6"] == "0"
    assert ps["/proc/sys/net/ipv6/conf/eth0/disable_ipv6"] == "0"
    assert ps["/proc/sys/net/ipv6/conf/eth0/keep_addr_on_down"] == dev.pick(
        cni, "R5-keep-addr-on-down", new="1", old="0")


def _no_keep_addr(obs: Any) -> Any:
    for p in obs["pods"]:
        p["sysctl"].pop("/proc/sys/net/ipv6/conf/eth0/keep_addr_on_down", None)
    return obs


def test_br55_duplicate_default_route(cni: CniDir) -> None:
    """P55: isDefaultGateway + IPAM route {"dst":"0.0.0.0/0"} -> `failed to add route ...
    file exists` (format R8); the lease is released; the Go bridge leaves the container its
    address and one default route (and bridge and veth pair), ours leaves nothing (I11)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, isDefaultGateway=True), b.pod())
        return b.obs()

    obs = differential(cni, sc, ignore=("steps",),
                       fold={"I11-failed-add-rollback": without(*KERNEL)})
    m = msg(obs["steps"][0])
    assert m.startswith("failed to add route ") and m.endswith("file exists"), m
    assert [f for f in obs["leases"] if f.startswith("10.")] == []
    pod = obs["pods"][0]["kernel"]
    if rolled_back(cni):
        assert names(obs["node"]) == ["lo"]
        assert names(pod) == ["lo"]
        return
    assert addrs(pod, "eth0") == ["10.250.1.2/24"]
    assert [r for r in routes(pod) if r.startswith("default")] == [
        "default via 10.250.1.1 dev eth0"
    ]
    assert [li.get("master") for li in obs["node"]["links"]] == [None, None, BR]


def test_br56_bridge_address_conflict(cni: CniDir) -> None:
    """P56: a bridge holding another address, a port attached (a pod of the old subnet) ->
    `failed to set bridge addr: ... already has an IP address different from ...`, lease
    released; ours then names the attached ports and the fix (I16). The Go bridge leaves the
    veth pair and the container its address; ours removes them, the pre-existing bridge stays
    (up, its own address kept) (I11)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.node.ip("link", "add", "refbr9", "type", "bridge")
        b.node.ip("addr", "add", "10.250.9.1/24", "dev", "refbr9")
        b.node.ip("link", "add", "oldport0", "type", "veth", "peer", "name", "oldpeer0")
        b.node.ip("link", "set", "oldport0", "master", "refbr9")
        b.call("ADD", b.conf({"subnet": "10.250.10.0/24"}, bridge="refbr9", isGateway=True),
               b.pod(), cid="c1")
        return b.obs()

    obs = differential(cni, sc, fold={"I11-failed-add-rollback": without(*KERNEL)})
    refusal = ('failed to set bridge addr: "refbr9" already has an IP address different from '
               "10.250.10.1/24")
    assert msg(obs["steps"][0]) == dev.pick(
        cni, "I16-bridge-readdress", old=refusal,
        new=(f"{refusal}; ports still attached: oldport0 (pod address unknown); fix: remove "
             "the pods still attached (drain the node), then the next ADD or `cnitool doctor "
             "--fix` replaces the address"))
    assert [f for f in obs["leases"] if f.startswith("10.")] == []
    node, pod = obs["node"], obs["pods"][0]["kernel"]
    assert addrs(node, "refbr9") == ["10.250.9.1/24"]
    if rolled_back(cni):
        assert sorted(names(node)) == ["lo", "oldpeer0", "oldport0", "refbr9"]
        assert "UP" in link(node, "refbr9")["flags"]
        assert names(pod) == ["lo"]
    else:  # the old port and the new veth
        assert [li.get("master") for li in node["links"]].count("refbr9") == 2
        assert addrs(pod, "eth0") == ["10.250.10.2/24"]


def test_br56_stale_address_no_ports(cni: CniDir) -> None:
    """P56 without ports: ours replaces the stale address (and the route through it) and the
    ADD succeeds; the Go bridge refuses as with ports (I16)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.node.ip("link", "add", "refbr7", "type", "bridge")
        b.node.ip("addr", "add", "10.250.9.1/24", "dev", "refbr7")
        b.node.ip("link", "set", "refbr7", "up")
        b.node.ip("route", "add", "10.99.0.0/16", "via", "10.250.9.254", "dev", "refbr7")
        b.call("ADD", b.conf({"subnet": "10.250.10.0/24"}, bridge="refbr7", isGateway=True),
               b.pod(), cid="c1")
        return b.obs()

    obs = differential(cni, sc, fold={"I16-bridge-readdress": without("steps", "leases",
                                                                      *KERNEL)})
    step, node = obs["steps"][0], obs["node"]
    if dev.old_side(cni, "I16-bridge-readdress"):
        assert msg(step) == ('failed to set bridge addr: "refbr7" already has an IP address '
                             "different from 10.250.10.1/24")
        assert addrs(node, "refbr7") == ["10.250.9.1/24"]
    else:
        assert step["rc"] == 0, step
        assert addrs(node, "refbr7") == ["10.250.10.1/24"]
        assert [f for f in obs["leases"] if f.startswith("10.")] == ["10.250.10.2"]
        assert not [r for r in node["routes"] if "10.99.0.0" in str(r)]


def test_br57_force_address(cni: CniDir) -> None:
    """P57: the same conflict with forceAddress -> the old address is replaced."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.node.ip("link", "add", "refbr8", "type", "bridge")
        b.node.ip("addr", "add", "10.250.9.1/24", "dev", "refbr8")
        b.call("ADD", b.conf({"subnet": "10.250.10.0/24"}, bridge="refbr8", isGateway=True,
                             forceAddress=True), b.pod(), cid="c2")
        return b.obs()

    obs = differential(cni, sc)
    assert obs["steps"][0]["rc"] == 0, obs["steps"][0]
    assert addrs(obs["node"], "refbr8") == ["10.250.10.1/24"]
    assert [f for f in obs["leases"] if f.startswith("10.")] == ["10.250.10.2"]


def test_br58_two_v6_range_sets(cni: CniDir) -> None:
    """P58: two IPv6 sets -> both gateway addresses on the bridge (keep_addr_on_down: R5)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf({"ranges": [[{"subnet": "fd00:1::/64"}], [{"subnet": "fd00:2::/64"}]]},
                             bridge="refbr6", isGateway=True), b.pod(), cid="c1")
        return b.obs()

    obs = differential(cni, sc, fold={"R5-keep-addr-on-down": _no_keep_addr})
    assert obs["steps"][0]["rc"] == 0, obs["steps"][0]
    assert sorted(addrs(obs["node"], "refbr6")) == ["fd00:1::1/64", "fd00:2::1/64"]
    assert obs["pods"][0]["sysctl"]["/proc/sys/net/ipv6/conf/eth0/keep_addr_on_down"] == dev.pick(
        cni, "R5-keep-addr-on-down", new="1", old="0")


def test_br58_two_v4_range_sets(cni: CniDir) -> None:
    """P58: two IPv4 sets -> the second gateway address conflicts with the first, leases
    released. The Go bridge leaves the bridge (with the first gateway), the veth pair and the
    container's two addresses; ours removes all of it, the bridge too, as this ADD created it
    (I11)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf({"ranges": [[{"subnet": "10.250.58.0/24"}],
                                         [{"subnet": "10.250.59.0/24"}]]},
                             bridge="refbr4", isGateway=True), b.pod(), cid="c2")
        return b.obs()

    obs = differential(cni, sc, fold={"I11-failed-add-rollback": without(*KERNEL)})
    assert msg(obs["steps"][0]) == ('failed to set bridge addr: "refbr4" already has an IP '
                                    "address different from 10.250.59.1/24")
    assert [f for f in obs["leases"] if f.startswith("10.")] == []
    node, pod = obs["node"], obs["pods"][0]["kernel"]
    if rolled_back(cni):
        assert names(node) == ["lo"]
        assert names(pod) == ["lo"]
    else:
        assert addrs(node, "refbr4") == ["10.250.58.1/24"]
        assert [li.get("master") for li in node["links"]] == [None, None, "refbr4"]
        assert addrs(pod, "eth0") == ["10.250.58.2/24", "10.250.59.2/24"]


def test_br59_mac_precedence(cni: CniDir) -> None:
    """P59: container MAC precedence runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, args={"cni": {"mac": "0a:58:0a:fa:01:16"}}, isGateway=True,
                             runtimeConfig={"mac": "0a:58:0a:fa:01:17"}), b.pod(), cid="c1",
               args="IgnoreUnknown=1;MAC=0a:58:0a:fa:01:15")
        return b.obs()

    obs = differential(cni, sc)
    s = obs["steps"]
    assert s[0]["rc"] == 0, s[0]
    assert (
        link(obs["pods"][0]["kernel"], "eth0")["address"] == s[0]["result"]["interfaces"][2]["mac"]
    )


def test_br60_mac_in_cni_args(cni: CniDir) -> None:
    """P60: `MAC=` in CNI_ARGS without IgnoreUnknown fails in host-local (code 4 on ours, 999 on
    the Go plugins, I7). The Go bridge leaves the veth pair (container side down); ours removes
    it (I11)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        sb.fix("0a:58:0a:fa:01:15", "<args-mac>")
        b.call("ADD", b.conf(V4, isGateway=True), b.pod(), cid="c2",
               args="MAC=0a:58:0a:fa:01:15")
        return b.obs()

    obs = differential(cni, sc, fold={"I7-error-codes": without("steps.0.error.code"),
                                      "I11-failed-add-rollback": without(*KERNEL)})
    step = obs["steps"][0]
    assert msg(step) == 'ARGS: unknown args ["MAC=<args-mac>"]'
    assert step["error"]["code"] == dev.pick(cni, "I7-error-codes", new=4, old=999)
    assert obs["leases"] == {"<absent>": True}
    node, pod = obs["node"], obs["pods"][0]["kernel"]
    if rolled_back(cni):
        assert names(node) == ["lo"]
        assert names(pod) == ["lo"]
    else:
        assert [li.get("master") for li in node["links"]] == [None, None, BR]
        assert "UP" not in link(pod, "eth0")["flags"]


def test_br60_bad_mac(cni: CniDir) -> None:
    """P60: a bad runtimeConfig MAC -> the veth creation error (code 7 on ours, 999 on the Go
    bridge, I7); no veth either way. The Go bridge keeps the bridge it created before failing;
    ours checks the MAC before creating anything (I11)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, isGateway=True, runtimeConfig={"mac": "zz"}), b.pod(),
               cid="c3")
        return b.obs()

    obs = differential(cni, sc, fold={"I7-error-codes": without("steps.0.error.code"),
                                      "I11-failed-add-rollback": without(*KERNEL)})
    step = obs["steps"][0]
    assert msg(step) == "failed to make veth pair: address zz: invalid MAC address"
    assert step["error"]["code"] == config_error_code(cni)
    assert names(obs["pods"][0]["kernel"]) == ["lo"]
    assert names(obs["node"]) == (["lo"] if rolled_back(cni) else ["lo", BR])
    assert obs["leases"] == {"<absent>": True}


def test_br59_mac_exact(cni: CniDir, sb: Sandbox) -> None:
    """P59 (exact values, no normalisation): the container MAC is runtimeConfig.mac."""
    b = Bridge(cni, sb)
    pod = b.pod()
    out = b.call("ADD", b.conf(V4, args={"cni": {"mac": "0a:58:0a:fa:01:16"}},
                               runtimeConfig={"mac": "0a:58:0a:fa:01:17"}), pod,
                 args="IgnoreUnknown=1;MAC=0a:58:0a:fa:01:15")
    assert out["rc"] == 0, out
    assert out["result"]["interfaces"][2]["mac"] == "0a:58:0a:fa:01:17"
    assert link(observe.kernel(pod), "eth0")["address"] == "0a:58:0a:fa:01:17"
    bad = b.call("ADD", b.conf(V4), b.pod(), cid="c2", args="MAC=0a:58:0a:fa:01:15")
    assert msg(bad) == 'ARGS: unknown args ["MAC=0a:58:0a:fa:01:15"]'


def test_br61_case_insensitive_keys(cni: CniDir) -> None:
    """P61: `BRIDGE`, `IsGateway`, `IPAM: {TYPE, SUBNET}` behave like the canonical keys."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        c = {"cniVersion": "1.0.0", "name": b.name, "type": "bridge", "BRIDGE": "refbr3",
             "IsGateway": True,
             "IPAM": {"TYPE": "host-local", "SUBNET": "10.250.3.0/24", "DataDir": str(b.data)}}
        b.call("ADD", c, b.pod())
        return b.obs()

    obs = differential(cni, sc)
    assert obs["steps"][0]["rc"] == 0, obs["steps"][0]
    assert addrs(obs["node"], "refbr3") == ["10.250.3.1/24"]


def test_br62_dns_override(cni: CniDir) -> None:
    """P62: config `dns` replaces IPAM's; `{"nameservers": []}` gives a result without dns."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        rc = sb.dir("etc") / "resolv.conf"
        rc.write_text("nameserver 10.0.0.53\n")
        ipam = {**V4, "resolvConf": str(rc)}
        b.call("ADD", b.conf(ipam, isGateway=True), b.pod(), cid="c1")
        b.call("ADD", b.conf(ipam, isGateway=True,
                             dns={"nameservers": ["10.9.9.9"], "search": ["x.example"]}),
               b.pod(), cid="c2")
        b.call("ADD", b.conf(ipam, isGateway=True, dns={"nameservers": []}), b.pod(), cid="c3")
        return b.obs()

    obs = differential(cni, sc, fold={"R13-bridge-ipam-dns": _drop_dns_first})
    s = obs["steps"]
    assert s[0]["result"].get("dns", {}) == dev.pick(
        cni, "R13-bridge-ipam-dns", new={"nameservers": ["10.0.0.53"]}, old={})
    assert s[1]["result"]["dns"] == {"nameservers": ["10.9.9.9"], "search": ["x.example"]}
    assert s[2]["result"].get("dns", {}) == {}


def _drop_dns_first(obs: Any) -> Any:
    out = dict(obs)
    out["steps"] = [dict(obs["steps"][0]), *obs["steps"][1:]]
    out["steps"][0]["result"] = {k: v for k, v in obs["steps"][0]["result"].items()
                                 if k != "dns"}
    return out


def test_br63_64_ipmasq(cni: CniDir) -> None:
    """P63, P64: ipMasq (iptables) -> the three rules of docs/reference-behaviour.md §2.5 in
    iptables and ip6tables under chain CNI-<24 hex of sha512(name+id)>; DEL removes chain and
    jump."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        ipam = {"ranges": [[{"subnet": "10.250.1.0/24"}], [{"subnet": "fd00:250:1::/64"}]]}
        pod = b.pod()
        b.call("ADD", b.conf(ipam, isGateway=True, ipMasq=True), pod)
        after_add = observe.firewall(b.node)
        b.call("DEL", b.conf(ipam, isGateway=True, ipMasq=True), pod)
        return {**b.obs(firewall=True), "fw_add": after_add}

    obs = differential(cni, sc)
    v4 = obs["fw_add"]["iptables"]
    chain = "CNI-e58756d01a2a07fa566152ed"
    comment = '"name: \\"refnet1\\" id: \\"ctr1\\""'
    for rule in (f"-A POSTROUTING -s 10.250.1.2/32 -m comment --comment {comment} -j {chain}",
                 f"-A {chain} -d 10.250.1.0/24 -m comment --comment {comment} -j ACCEPT",
                 f"-A {chain} ! -d 224.0.0.0/4 -m comment --comment {comment} -j MASQUERADE"):
        assert rule in v4.splitlines(), v4
    v6 = obs["fw_add"]["ip6tables"]
    assert f"-A {chain} ! -d ff00::/8 -m comment --comment {comment} -j MASQUERADE" in v6, v6
    assert chain not in obs["firewall"]["iptables"]
    assert chain not in obs["firewall"]["ip6tables"]


def test_br65_ipmasq_iface_gone(cni: CniDir) -> None:
    """P65: ipMasq, container iface deleted by hand, then DEL -> lease freed; the Go bridge
    leaves the masquerade chain and jump (it looks for them through the addresses it can no
    longer read), ours removes them (I13)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        b.call("ADD", b.conf(V4, isGateway=True, ipMasq=True), pod)
        pod.ip("link", "del", "eth0")
        b.call("DEL", b.conf(V4, isGateway=True, ipMasq=True), pod)
        return b.obs(firewall=True)

    obs = differential(cni, sc, fold={"I13-masq-del-iface-gone": without("firewall")})
    assert obs["steps"][1] == {"rc": 0, "stdout": ""}
    assert [f for f in obs["leases"] if f.startswith("10.")] == []
    fw = obs["firewall"]
    chain = "CNI-e58756d01a2a07fa566152ed"
    if dev.old_side(cni, "I13-masq-del-iface-gone"):
        assert f":{chain} - [0:0]" in fw["iptables"].splitlines(), fw
        assert (f'-A POSTROUTING -s 10.250.1.2/32 -m comment --comment "name: \\"refnet1\\" '
                f'id: \\"ctr1\\"" -j {chain}') in fw["iptables"].splitlines(), fw
    else:
        assert not [k for k, text in fw.items() if chain in text], fw


def test_br66_ipmasq_nftables(cni: CniDir) -> None:
    """P66 (upstream 3d27709f, R7): ipMasqBackend nftables -> table inet cni_plugins_masquerade with
    a masq_checks rule commented `<16hex>-<16hex>, net: N, if: eth0, id: ID`; DEL removes only that
    rule. v1.1.1 ignores the key and uses iptables."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        c = b.conf(V4, isGateway=True, ipMasq=True, ipMasqBackend="nftables")
        b.call("ADD", c, pod)
        fw = observe.firewall(b.node)
        b.call("DEL", c, pod)
        return {**b.obs(firewall=True), "fw_add": fw}

    obs = differential(cni, sc, ignore=("fw_add", "firewall"))
    nft = obs["fw_add"]["nft"]
    if dev.old_side(cni, "R7-upstream-only-config"):
        assert "cni_plugins_masquerade" not in nft
        assert "CNI-e58756d01a2a07fa566152ed" in obs["fw_add"]["iptables"]
        return
    assert "table inet cni_plugins_masquerade" in nft, nft
    assert re.search(r'comment "[0-9a-f]{16}-[0-9a-f]{16}, net: refnet1, if: eth0, id: ctr1"',
                     nft), nft
    assert "ip saddr 10.250.1.2 ip daddr != 10.250.1.0/24 masquerade" in nft, nft
    assert "masquerade" not in obs["firewall"]["nft"].split("masq_checks", 1)[-1].split("}")[0]


def test_br67_macspoofchk(cni: CniDir) -> None:
    """P67: macspoofchk -> `bridge nat` PREROUTING jump on the host veth, chains
    cni-br-iface-<id>-<if>[-mac], comments macspoofchk-<id>-<if>; DEL removes rule and chains,
    keeps the table and base chain."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        c = b.conf(V4, macspoofchk=True)
        b.call("ADD", c, pod)
        fw = observe.firewall(b.node)
        b.call("DEL", c, pod)
        return {**b.obs(firewall=True), "fw_add": fw}

    obs = differential(cni, sc)
    nft = obs["fw_add"]["nft"]
    mac = obs["steps"][0]["result"]["interfaces"][2]["mac"]
    assert "table bridge nat" in nft
    assert 'iifname "<veth1>"' in nft and "jump cni-br-iface-ctr1-eth0" in nft, nft
    assert f"ether saddr {mac} return" in nft, nft
    assert 'comment "macspoofchk-ctr1-eth0"' in nft
    after = obs["firewall"]["nft"]
    assert "table bridge nat" in after and "cni-br-iface-ctr1-eth0" not in after, after


def test_br68_enabledad(cni: CniDir) -> None:
    """P68: enabledad -> enhanced_dad 1 and accept_dad 1 in the container (default: 0)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, enabledad=True), b.pod())
        return b.obs()

    obs = differential(cni, sc)
    ps = obs["pods"][0]["sysctl"]
    assert ps["/proc/sys/net/ipv6/conf/eth0/accept_dad"] == "1"
    assert ps["/proc/sys/net/ipv6/conf/eth0/enhanced_dad"] == "1"


def test_br70_hairpin_isolation(cni: CniDir) -> None:
    """P70: hairpinMode -> the port's hairpin flag on (default off); portIsolation (upstream
    3d27709f, R7) -> isolated on."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, isGateway=True, hairpinMode=True), b.pod(), cid="c1")
        b.call("ADD", b.conf(V4, isGateway=True, portIsolation=True), b.pod(), cid="c2")
        return b.obs()

    obs = differential(cni, sc, ignore=("node",))
    v1 = obs["steps"][0]["result"]["interfaces"][1]["name"]
    v2 = obs["steps"][1]["result"]["interfaces"][1]["name"]
    assert link(obs["node"], v1)["slave"]["hairpin"] is True
    assert link(obs["node"], v2)["slave"]["hairpin"] is False
    iso = link(obs["node"], v2)["slave"].get("isolated")
    assert iso is dev.pick(cni, "R7-upstream-only-config", new=True, old=False)


@pytest.mark.parametrize(
    "trunk, want",
    [
        ([{"minID": 5}], "minID and maxID should be configured simultaneously, maxID is missing"),
        ([{"minID": 1000, "maxID": 100}], "minID is greater than maxID in trunk parameter"),
        ([{"id": 0}], "incorrect trunk id parameter"),
    ],
    ids=["min-only", "min-gt-max", "id-zero"],
)
def test_br72_vlan_trunk_errors(cni: CniDir, trunk: list[dict[str, int]], want: str) -> None:
    """P72 (upstream 3d27709f, R7): vlanTrunk validation errors; v1.1.1 ignores the key (ADD
    succeeds)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, vlanTrunk=trunk), b.pod())
        return {"steps": b.steps}

    obs = differential(cni, sc, ignore=("steps",))
    if dev.old_side(cni, "R7-upstream-only-config"):
        assert obs["steps"][0]["rc"] == 0
    else:
        assert msg(obs["steps"][0]) == want


def test_br74_disable_container_interface(cni: CniDir) -> None:
    """P74 (upstream 3d27709f, R7): disableContainerInterface with IPAM -> refused; L2 -> eth0 stays
    down."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf(V4, disableContainerInterface=True), b.pod(), cid="c1")
        b.call("ADD", b.conf(None, disableContainerInterface=True), b.pod(), cid="c2")
        return b.obs()

    # v1.1.1 ignores the key (R7), so the two runs do different things: nothing to compare
    obs = differential(cni, sc, fold={"R7-upstream-only-config": lambda o: {}})
    s = obs["steps"]
    if dev.old_side(cni, "R7-upstream-only-config"):
        assert s[0]["rc"] == 0 and s[1]["rc"] == 0
        return
    assert msg(s[0]) == "cannot use IPAM when DisableContainerInterface flag is set"
    assert "UP" not in link(obs["pods"][1]["kernel"], "eth0")["flags"]


def test_br75_del(cni: CniDir) -> None:
    """P75, C42: DEL with CNI_NETNS empty releases only the lease; with the netns gone it
    releases and succeeds; repeated DEL succeeds; the bridge and its address stay."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        c = b.conf(V4, isGateway=True)
        p1 = b.pod()
        b.call("ADD", c, p1, cid="c1")
        b.call("DEL", c, cid="c1", netns="")
        pod_after_empty = observe.kernel(p1)
        p2 = b.pod()
        b.call("ADD", c, p2, cid="c2")
        b.call("DEL", c, cid="c2", netns="/var/run/netns/cnitest-gone")
        b.call("DEL", c, p2, cid="c2")
        b.call("DEL", c, p2, cid="c2")
        return {**b.obs(), "pod1_after_empty_del": pod_after_empty}

    obs = differential(cni, sc)
    assert [s["rc"] for s in obs["steps"]] == [0] * 6
    assert addrs(obs["pod1_after_empty_del"], "eth0") == ["10.250.1.2/24"]
    assert [f for f in obs["leases"] if f.startswith("10.")] == []
    assert "eth0" not in [li["ifname"] for li in obs["pods"][1]["kernel"]["links"]]
    assert addrs(obs["node"], BR) == ["10.250.1.1/24"]


def test_br76_del_ipam_missing(cni: CniDir) -> None:
    """P76: DEL whose IPAM binary is missing -> the container link is already deleted, error
    `failed to find plugin "nosuchipam" in path [...]`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        b.call("ADD", b.conf(V4), pod)
        c = b.conf(V4)
        c["ipam"]["type"] = "nosuchipam"
        b.call("DEL", c, pod, cni_path=str(cni.path))
        return b.obs()

    obs = differential(cni, sc)
    assert msg(obs["steps"][1]) == 'failed to find plugin "nosuchipam" in path [<cni-bin>]'
    assert "eth0" not in [li["ifname"] for li in obs["pods"][0]["kernel"]["links"]]


def test_br77_78_check(cni: CniDir) -> None:
    """P77, P78, C44: CHECK after ADD with prevResult -> success; without prevResult ->
    `Required prevResult missing`; after deleting the default route -> `Expected Route ... not
    found in routing table` (text R9); after removing the address -> `Failed to match addr`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        c = b.conf(V4, isGateway=True)
        add = b.call("ADD", c, pod)
        chk = dict(c, prevResult=add.get("result"))
        b.call("CHECK", chk, pod)
        b.call("CHECK", c, pod)
        pod.ip("route", "del", "default")
        b.call("CHECK", chk, pod)
        pod.ip("addr", "del", "10.250.1.2/24", "dev", "eth0")
        b.call("CHECK", chk, pod)
        return {"steps": b.steps}

    obs = differential(cni, sc, fold={"R9-check-route-text": _route_text_v111})
    s = obs["steps"]
    assert s[1] == {"rc": 0, "stdout": ""}
    assert msg(s[2]) == "Required prevResult missing"
    m = msg(s[3])
    assert m.startswith("Expected Route {Dst:{IP:0.0.0.0 Mask:00000000} GW:<nil>"), m
    assert m.endswith("} not found in routing table"), m
    assert msg(s[4]) == "Failed to match addr 10.250.1.2/24 on interface eth0"


def _route_text_v111(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (re.sub(r" MTU:0 AdvMSS:0 Priority:0 Table:<nil> Scope:<nil>", "", v)
                    if k == "msg" and isinstance(v, str) else _route_text_v111(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_route_text_v111(v) for v in obj]
    return obj


def test_br78_check_errors(cni: CniDir) -> None:
    """P78: CHECK on an L2 config -> `no plugin name provided`; after an ADD, a 0.4.0 config with
    a 1.0.0 prevResult -> `could not parse prevResult: result type supports [0.3.0 0.3.1 0.4.0] but
    unmarshalled CNIVersion is "1.0.0"` (code 1, incompatible versions, on ours; 999, I7)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        pod = b.pod()
        b.call("CHECK", b.conf(None, prevResult={"cniVersion": "1.0.0"}), pod)
        b.call("ADD", b.conf(V4, version="0.4.0"), pod)
        b.call("CHECK", b.conf(V4, version="0.4.0",
                               prevResult={"cniVersion": "1.0.0", "ips": []}), pod)
        return {"steps": b.steps}

    obs = differential(cni, sc, fold={"I7-error-codes": without("steps.2.error.code")})
    assert msg(obs["steps"][0]) == "no plugin name provided"
    assert msg(obs["steps"][2]) == ('could not parse prevResult: result type supports [0.3.0 '
                                    '0.3.1 0.4.0] but unmarshalled CNIVersion is "1.0.0"')
    assert obs["steps"][2]["error"]["code"] == dev.pick(cni, "I7-error-codes", new=1, old=999)


def test_br79_status(cni: CniDir) -> None:
    """P79 (upstream 3d27709f, R3): STATUS 1.1.0 with ipam host-local -> success; with ipam type
    `nosuch` -> `failed to find plugin "nosuch" in path [...]`."""
    if dev.old_side(cni, "R3-gc-status-verbs"):
        pytest.skip("v1.1.1 has no STATUS (R3); covered by test_p33")

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("STATUS", b.conf(V4, version="1.1.0"))
        c = b.conf(V4, version="1.1.0")
        c["ipam"]["type"] = "nosuch"
        b.call("STATUS", c)
        return {"steps": b.steps}

    obs = differential(cni, sc, spec_1_1=True)
    assert obs["steps"][0] == {"rc": 0, "stdout": ""}
    assert msg(obs["steps"][1]) == 'failed to find plugin "nosuch" in path [<cni-bin>]'


@pytest.mark.parametrize("version", ["0.4.0", "0.2.0"])
def test_br80_old_versions(cni: CniDir, version: str) -> None:
    """P80: 0.4.0 ADD -> `version` fields and `"dns": {}`; 0.2.0 -> an ip4 block with gateway
    and the default route."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        b.call("ADD", b.conf({"subnet": "10.250.1.0/24"}, version=version,
                             isDefaultGateway=True), b.pod())
        return {"steps": b.steps}

    obs = differential(cni, sc)
    res = obs["steps"][0]["result"]
    if version == "0.4.0":
        assert res["ips"] == [{"version": "4", "interface": 2, "address": "10.250.1.2/24",
                               "gateway": "10.250.1.1"}]
        assert res["dns"] == {}
    else:
        assert res["ip4"] == {"ip": "10.250.1.2/24", "gateway": "10.250.1.1",
                              "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.1.1"}]}


def test_br108_exhaustion(cni: CniDir) -> None:
    """P108: host-local exhaustion is relayed unchanged (code 999). The Go bridge leaves the
    container a down eth0 and the host veth enslaved; ours removes both (I11). DEL then cleans
    the Go bridge's leftovers and succeeds on ours."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        c = b.conf({"subnet": "10.250.15.0/30"}, isGateway=True)
        b.call("ADD", c, b.pod(), cid="c1")
        pod = b.pod()
        b.call("ADD", c, pod, cid="c2")
        # link names and flags only: the leftovers' random names and MACs must not shift the
        # numbering of the placeholders compared in the rest of the observation
        mid = {"pod": [(li["ifname"], "UP" in li["flags"]) for li in observe.kernel(pod)["links"]],
               "bridge_ports": len([li for li in observe.kernel(b.node)["links"]
                                    if li.get("master") == BR])}
        b.call("DEL", c, pod, cid="c2")
        return {**b.obs(), "mid": mid}

    obs = differential(cni, sc, fold={"I11-failed-add-rollback": without("mid")})
    e = obs["steps"][1]["error"]
    assert e["code"] == 999
    base = ("failed to allocate for range 0: no IP addresses available in range set: "
            "10.250.15.1-10.250.15.2")
    # c1's pod namespace is alive: its lease is neither dead nor unjudgeable (I15).
    assert e["msg"] == dev.pick(cni, "I15-host-local-exhaustion-counts",
                                new=base + dev.exhaustion_counts(1, 0, 0, "refnet1"), old=base)
    if rolled_back(cni):
        assert obs["mid"] == {"pod": [["lo", False]], "bridge_ports": 1}
    else:
        assert obs["mid"] == {"pod": [["lo", False], ["eth0", False]], "bridge_ports": 2}
    assert obs["steps"][2] == {"rc": 0, "stdout": ""}
    assert "eth0" not in [li["ifname"] for li in obs["pods"][1]["kernel"]["links"]]
    assert len([li for li in obs["node"]["links"] if li.get("master") == BR]) == 1


def test_br109_del_netns_regular_file(cni: CniDir) -> None:
    """P109: DEL with a regular file as netns -> `unknown FS magic on "<p>": ef53`, and no IPAM
    release (the lease stays)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        c = b.conf(V4)
        b.call("ADD", c, b.pod())
        f = sb.dir("x") / "plainfile"
        f.write_text("")
        b.call("DEL", c, netns=str(f))
        return b.obs()

    obs = differential(cni, sc)
    assert msg(obs["steps"][1]) == 'unknown FS magic on "<tmp>/x/plainfile": ef53'
    assert "10.250.1.2" in obs["leases"]


def test_spec50_ipam_failure_then_del(cni: CniDir) -> None:
    """C50 (I3): when the IPAM ADD fails, ours runs the IPAM DEL before reporting; the Go
    bridge does not. Observed with a recording IPAM stand-in on CNI_PATH."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        b = Bridge(cni, sb)
        bindir = sb.dir("fakebin")
        log = sb.tmp / "ipam.log"
        script = bindir / "failipam"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$CNI_COMMAND" >> {log}\n'
            'if [ "$CNI_COMMAND" = ADD ]; then\n'
            '  printf \'{"code": 11, "msg": "no luck"}\'\n  exit 1\nfi\nexit 0\n')
        script.chmod(0o755)
        c = b.conf(V4)
        c["ipam"]["type"] = "failipam"
        b.call("ADD", c, b.pod(), cni_path=f"{bindir}:{cni.path}")
        calls = log.read_text().split() if log.exists() else []
        return {"steps": b.steps, "ipam_calls": calls}

    obs = differential(cni, sc, ignore=("ipam_calls",))
    e = obs["steps"][0]["error"]
    assert (e["code"], e["msg"]) == (11, "no luck")
    assert obs["ipam_calls"] == dev.pick(cni, "I3-delegate-del-after-failed-add",
                                         new=["ADD", "DEL"], old=["ADD"])
