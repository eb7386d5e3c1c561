"""portmap: docs/reference-behaviour.md P81-P100 (the iptables layout exactly as its §3.3, the
nftables one of upstream 3d27709f as its §3.4). Each case's docstring starts with its ids.

The container side is built by hand (a bridge `refbr0` with 10.250.1.1/24 and a veth into a pod
holding 10.250.1.3/24), so portmap is observed on its own: every call's outcome, iptables-save /
ip6tables-save / nft ruleset of the node, the route_localnet sysctl and, for P97, the
node's conntrack table.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import deviations as dev
from conformance import harness, observe
from conformance.bindir import CniDir
from conformance.checks import require
from conformance.sandbox import Sandbox, differential, without

pytestmark = pytest.mark.usefixtures("_portmap")

DN = "CNI-DN-e58756d01a2a07fa56615"  # refnet1 + ctr1 (docs/reference-behaviour.md §0.7)
COMMENT = 'dnat name: \\"refnet1\\" id: \\"ctr1\\"'


@pytest.fixture
def _portmap(cni: CniDir) -> None:
    require(cni, "portmap")


class PM:
    """A node with a hand-made container attachment, driving portmap."""

    def __init__(self, cni: CniDir, sb: Sandbox, v6: bool = False) -> None:
        self.cni, self.sb = cni, sb
        self.node = sb.netns("node")
        self.pod = sb.netns("pod")
        n, p = self.node, self.pod
        n.ip("link", "add", "refbr0", "type", "bridge")
        n.ip("addr", "add", "10.250.1.1/24", "dev", "refbr0")
        n.ip("link", "add", "refveth0", "type", "veth", "peer", "name", "eth0", "netns", p.name)
        n.ip("link", "set", "refveth0", "master", "refbr0", "up")
        n.ip("link", "set", "refbr0", "up")
        p.ip("addr", "add", "10.250.1.3/24", "dev", "eth0")
        if v6:
            n.exec("sysctl", "-qw", "net.ipv6.conf.refbr0.accept_dad=0")
            p.exec("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
            n.ip("addr", "add", "fd00:250:1::1/64", "dev", "refbr0")
            p.ip("addr", "add", "fd00:250:1::3/64", "dev", "eth0")
        p.ip("link", "set", "eth0", "up")
        self.steps: list[dict[str, Any]] = []

    def prev(self, v4: bool = True, v6: bool = False) -> dict[str, Any]:
        ips = []
        if v4:
            ips.append({"address": "10.250.1.3/24", "gateway": "10.250.1.1", "interface": 2})
        if v6:
            ips.append({"address": "fd00:250:1::3/64", "gateway": "fd00:250:1::1", "interface": 2})
        return {"cniVersion": "1.0.0",
                "interfaces": [{"name": "refbr0", "mac": "0a:58:0a:fa:01:01"},
                               {"name": "refveth0", "mac": "0a:58:0a:fa:01:02"},
                               {"name": "eth0", "mac": "0a:58:0a:fa:01:03",
                                "sandbox": self.pod.path}],
                "ips": ips}

    def conf(self, mappings: list[dict[str, Any]] | None, prev: dict[str, Any] | None = None,
             version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"cniVersion": version, "name": "refnet1", "type": "portmap",
                             "capabilities": {"portMappings": True}, **extra}
        if prev is not None:
            c["prevResult"] = prev
        if mappings is not None:
            c["runtimeConfig"] = {"portMappings": mappings}
        return c

    def call(self, command: str, conf: dict[str, Any], ifname: str = "eth0",
             cid: str = "ctr1") -> dict[str, Any]:
        run = self.cni.run("portmap", command, conf, in_netns=self.node, netns=self.pod.path,
                           containerid=cid, ifname=ifname)
        out = observe.outcome(run)
        self.steps.append(out)
        return out

    def fw(self) -> dict[str, str]:
        return observe.firewall(self.node)

    def obs(self) -> dict[str, Any]:
        return {"steps": self.steps, "fw": self.fw(),
                "sysctl": observe.sysctls(self.node, [
                    "/proc/sys/net/ipv4/conf/refbr0/route_localnet"])}


MAPPINGS = [
    {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 18081, "containerPort": 81, "protocol": "udp"},
    {"hostPort": 18082, "containerPort": 82, "protocol": "tcp", "hostIP": "10.250.1.1"},
    {"hostPort": 18083, "containerPort": 83, "protocol": "tcp", "hostIP": "fd00::1"},
]


def lines(text: str) -> list[str]:
    return text.splitlines()


def msg(step: dict[str, Any]) -> str:
    assert step["rc"] == 1 and "error" in step, step
    return step["error"]["msg"]


def config_error_code(cni: CniDir) -> int:
    """The code of a configuration error the Go portmap returns untyped (I7: ours says 7)."""
    return dev.pick(cni, "I7-error-codes", new=7, old=999)


EMPTY_IP6_NAT_SAVE = ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n"
                      ":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT")
EMPTY_IP6_NAT_NFT = "table ip6 nat {\n}"


def no_empty_ip6_nat(fw: dict[str, str]) -> dict[str, str]:
    """A firewall snapshot with an empty `ip6 nat` table (base chains only) taken out."""
    out = dict(fw)
    if out["ip6tables"] == EMPTY_IP6_NAT_SAVE:
        out["ip6tables"] = ""
    nft = out["nft"].split("\n")
    for i in range(len(nft) - 1):
        if nft[i] == "table ip6 nat {" and nft[i + 1] == "}":
            out["nft"] = "\n".join(nft[:i] + nft[i + 2:]).rstrip("\n")
            break
    return out


def test_pm81_chained_only(cni: CniDir) -> None:
    """P81: no prevResult -> `must be called as chained plugin`; no portMappings -> the
    prevResult is echoed and nothing changes in nat."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        before = pm.fw()
        pm.call("ADD", pm.conf(MAPPINGS))
        pm.call("ADD", pm.conf(None, pm.prev()))
        return {**pm.obs(), "before": before}

    obs = differential(cni, sc)
    assert msg(obs["steps"][0]) == "must be called as chained plugin"
    res = obs["steps"][1]["result"]
    assert res["ips"] == [{"address": "10.250.1.3/24", "gateway": "10.250.1.1", "interface": 2}]
    assert obs["fw"] == obs["before"]


def test_pm82_basic_layout(cni: CniDir) -> None:
    """P82, P86, P96, C40: tcp+udp mappings -> the exact iptables-save lines of
    docs/reference-behaviour.md §3.3; the result is the prevResult; route_localnet=1 on the
    bridge."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        pm.call("ADD", pm.conf(MAPPINGS, pm.prev()))
        return pm.obs()

    obs = differential(cni, sc)
    assert obs["steps"][0]["result"]["ips"] == [
        {"address": "10.250.1.3/24", "gateway": "10.250.1.1", "interface": 2}]
    got = lines(obs["fw"]["iptables"])
    want = [
        "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j '
        'CNI-HOSTPORT-MASQ',
        f"-A {DN} -s 10.250.1.0/24 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK",
        f"-A {DN} -s 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK",
        f"-A {DN} -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.250.1.3:80",
        f"-A {DN} -s 10.250.1.0/24 -d 10.250.1.1/32 -p tcp -m tcp --dport 18082 -j "
        f"CNI-HOSTPORT-SETMARK",
        f'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "{COMMENT}" -m multiport --dports '
        f'18080,18082,18083 -j {DN}',
        f'-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "{COMMENT}" -m multiport --dports 18081 '
        f'-j {DN}',
        "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
        '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK '
        '--set-xmark 0x2000/0x2000',
    ]
    missing = [w for w in want if w not in got]
    assert not missing, "missing:\n" + "\n".join(missing) + "\n--- got:\n" + "\n".join(got)
    assert not [g for g in got if "18083" in g and "--dport 18083" in g]
    assert obs["sysctl"]["/proc/sys/net/ipv4/conf/refbr0/route_localnet"] == "1"


def test_pm83_mark_bit(cni: CniDir) -> None:
    """P83: markMasqBit 5 -> 0x20/0x20; 32 -> range error; with externalSetMarkChain -> error
    (both code 7 on ours, 999 on the Go plugin, I7)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        m = MAPPINGS[:1]
        pm.call("ADD", pm.conf(m, pm.prev(), markMasqBit=5))
        pm.call("ADD", pm.conf(m, pm.prev(), markMasqBit=32))
        pm.call("ADD", pm.conf(m, pm.prev(), markMasqBit=5, externalSetMarkChain="X"))
        return pm.obs()

    obs = differential(cni, sc, fold={
        "I7-error-codes": without("steps.1.error.code", "steps.2.error.code")})
    assert "-A CNI-HOSTPORT-MASQ -m mark --mark 0x20/0x20 -j MASQUERADE" in lines(
        obs["fw"]["iptables"]
    )
    assert msg(obs["steps"][1]) == "failed to parse config: MasqMarkBit must be between 0 and 31"
    assert msg(obs["steps"][2]) == ("failed to parse config: Cannot specify externalSetMarkChain "
                                    "and markMasqBit")
    assert [s["error"]["code"] for s in obs["steps"][1:]] == [config_error_code(cni)] * 2


def test_pm84_85_external_chain_and_no_snat(cni: CniDir) -> None:
    """P84, P85: externalSetMarkChain X -> hairpin/localhost rules jump to X, no SETMARK/MASQ;
    snat false -> only DNAT rules, no route_localnet, no SETMARK/MASQ."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        pm.node.exec("iptables", "-t", "nat", "-N", "X")
        pm.call("ADD", pm.conf(MAPPINGS[:1], pm.prev(), externalSetMarkChain="X"))
        ext = pm.fw()
        pm2 = PM(cni, sb)
        pm2.call("ADD", pm2.conf(MAPPINGS[:1], pm2.prev(), snat=False))
        return {"ext": ext, "nosnat": pm2.obs(), "steps": pm.steps}

    obs = differential(cni, sc)
    ext = lines(obs["ext"]["iptables"])
    assert f"-A {DN} -s 10.250.1.0/24 -p tcp -m tcp --dport 18080 -j X" in ext
    assert f"-A {DN} -s 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j X" in ext
    assert not [x for x in ext if "SETMARK" in x or "HOSTPORT-MASQ" in x]
    nos = lines(obs["nosnat"]["fw"]["iptables"])
    assert [x for x in nos if x.startswith(f"-A {DN}")] == [
        f"-A {DN} -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.250.1.3:80"]
    assert not [x for x in nos if "SETMARK" in x or "HOSTPORT-MASQ" in x]
    assert obs["nosnat"]["sysctl"]["/proc/sys/net/ipv4/conf/refbr0/route_localnet"] == "0"


def test_pm87_ipv6(cni: CniDir) -> None:
    """P87: an IPv6 container address -> ip6tables rules with `[addr]:port`, hairpin from the
    container's /64, no 127.0.0.1 rule."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb, v6=True)
        pm.call("ADD", pm.conf(MAPPINGS[:1], pm.prev(v4=False, v6=True)))
        return pm.obs()

    obs = differential(cni, sc)
    v6 = lines(obs["fw"]["ip6tables"])
    assert (
        f"-A {DN} -p tcp -m tcp --dport 18080 -j DNAT --to-destination [fd00:250:1::3]:80" in v6
    ), v6
    assert f"-A {DN} -s fd00:250:1::/64 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK" in v6
    assert not [x for x in v6 if "127.0.0.1" in x or "::1/128" in x]
    assert DN not in obs["fw"]["iptables"]


def test_pm88_89_conditions_and_chunks(cni: CniDir) -> None:
    """P88, P89: conditionsV4 appear in the multiport entry rules only; 16 tcp mappings give two
    entry rules (15 + 1 ports)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        many = [{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"} for i in range(16)]
        pm.call("ADD", pm.conf(many, pm.prev(), conditionsV4=["-s", "10.250.0.0/16"]))
        return pm.obs()

    obs = differential(cni, sc)
    entries = [x for x in lines(obs["fw"]["iptables"]) if x.startswith("-A CNI-HOSTPORT-DNAT")]
    assert len(entries) == 2, entries
    assert all(x.startswith("-A CNI-HOSTPORT-DNAT -s 10.250.0.0/16 -p tcp") for x in entries)
    assert entries[1].endswith(f"--dports 20015 -j {DN}")
    assert not [x for x in lines(obs["fw"]["iptables"])
                if x.startswith(f"-A {DN}") and "10.250.0.0/16" in x]


def test_pm90_91_port_and_protocol_errors(cni: CniDir) -> None:
    """P90, P91: containerPort 0 -> parse error (code 7 on ours, 999, I7); hostPort 70000 -> the
    Go plugin relays iptables' error after creating its chains (an empty DN chain stays), ours
    refuses it while parsing and writes nothing (I9); `TCP` (upper case) works."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        p = pm.prev()
        before = pm.fw()
        pm.call("ADD", pm.conf([{"hostPort": 18080, "containerPort": 0, "protocol": "tcp"}], p))
        pm.call("ADD", pm.conf([{"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}], p))
        bad = pm.fw()
        pm.call("ADD", pm.conf([{"hostPort": 18090, "containerPort": 80, "protocol": "TCP"}], p))
        return {**pm.obs(), "before": before, "after_bad_port": bad}

    obs = differential(cni, sc, fold={
        "I7-error-codes": without("steps.0.error.code"),
        "I9-portmap-host-port-range": without("steps.1", "after_bad_port")})
    s = obs["steps"]
    assert msg(s[0]) == "failed to parse config: Invalid container port number: 0"
    assert s[0]["error"]["code"] == config_error_code(cni)
    bad = obs["after_bad_port"]
    if dev.old_side(cni, "I9-portmap-host-port-range"):
        assert s[1]["error"]["code"] == 999
        assert msg(s[1]).startswith("unable to setup DNAT: "), s[1]
        assert "invalid port/service `70000' specified" in msg(s[1]), s[1]
        assert f":{DN} - [0:0]" in lines(bad["iptables"]), bad
        assert not [x for x in lines(bad["iptables"]) if x.startswith(f"-A {DN}")], bad
    else:
        assert s[1]["error"]["code"] == 7
        assert msg(s[1]) == "failed to parse config: Invalid host port number: 70000"
        assert bad == obs["before"]
    assert s[2]["rc"] == 0, s[2]
    assert f"-A {DN} -p tcp -m tcp --dport 18090 -j DNAT --to-destination 10.250.1.3:80" in lines(
        obs["fw"]["iptables"])


def test_pm92_address_selection(cni: CniDir) -> None:
    """P92: with a host-side IP (interface 0) and a second container IP, only the first IP on
    CNI_IFNAME with a sandbox is used; a CNI_IFNAME absent from prevResult -> no rules."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        prev = pm.prev()
        prev["ips"] = [{"address": "10.250.1.1/24", "interface": 0},
                       {"address": "10.250.1.3/24", "gateway": "10.250.1.1", "interface": 2},
                       {"address": "10.250.1.4/24", "interface": 2}]
        pm.call("ADD", pm.conf(MAPPINGS[:1], prev))
        first = pm.fw()
        pm2 = PM(cni, sb)
        pm2.call("ADD", pm2.conf(MAPPINGS[:1], pm2.prev()), ifname="eth9")
        return {"first": first, "other": pm2.obs(), "steps": pm.steps}

    obs = differential(cni, sc)
    dnat = [x for x in lines(obs["first"]["iptables"]) if "DNAT --to-destination" in x]
    assert dnat == [f"-A {DN} -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.250.1.3:80"]
    assert obs["other"]["steps"][0]["rc"] == 0
    assert DN not in obs["other"]["fw"]["iptables"]


def test_pm93_readd_appends_missing(cni: CniDir) -> None:
    """P93: re-ADD after deleting one DNAT rule by hand -> it is re-appended at the end."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        c = pm.conf(MAPPINGS[:2], pm.prev())
        pm.call("ADD", c)
        pm.node.exec("iptables", "-t", "nat", "-D", DN, "-p", "tcp", "-m", "tcp", "--dport",
                     "18080", "-j", "DNAT", "--to-destination", "10.250.1.3:80")
        pm.call("ADD", c)
        return pm.obs()

    obs = differential(cni, sc)
    chain = [x for x in lines(obs["fw"]["iptables"]) if x.startswith(f"-A {DN}")]
    assert (
        chain[-1] == f"-A {DN} -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.250.1.3:80"
    )
    assert len(chain) == len(set(chain))


def test_pm94_del(cni: CniDir) -> None:
    """P94: DEL with portMappings removes the DN chain and its entry rules, the shared chains
    stay; DEL again succeeds; DEL without portMappings removes nothing. The Go portmap's DEL
    leaves an empty `ip6 nat` table behind; ours leaves IPv6 untouched (I14)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        pm.call("ADD", pm.conf(MAPPINGS, pm.prev()))
        pm.call("DEL", pm.conf(None))
        kept = pm.fw()
        pm.call("DEL", pm.conf(MAPPINGS))
        pm.call("DEL", pm.conf(MAPPINGS))
        return {**pm.obs(), "kept": kept}

    obs = differential(cni, sc, fold={
        "I14-portmap-del-no-empty-table": lambda o: {**o, "fw": no_empty_ip6_nat(o["fw"])}})
    assert [s["rc"] for s in obs["steps"]] == [0, 0, 0, 0]
    assert DN in obs["kept"]["iptables"]
    assert obs["kept"]["ip6tables"] == ""
    fw = obs["fw"]
    if dev.old_side(cni, "I14-portmap-del-no-empty-table"):
        assert fw["ip6tables"] == EMPTY_IP6_NAT_SAVE, fw
        assert EMPTY_IP6_NAT_NFT in fw["nft"], fw
    else:
        assert fw["ip6tables"] == "", fw
        assert "table ip6 " not in fw["nft"], fw
    after = fw["iptables"]
    assert DN not in after
    for shared in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"):
        assert f":{shared} " in after, after


def prev_040(prev: dict[str, Any]) -> dict[str, Any]:
    """A 1.0.0 prevResult in the 0.4.0 shape (each IP names its version)."""
    ips = [{**ip, "version": "6" if ":" in ip["address"] else "4"} for ip in prev["ips"]]
    return {**prev, "cniVersion": "0.4.0", "ips": ips}


ANY_HOST_IPS = [
    {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 18084, "containerPort": 84, "protocol": "udp", "hostIP": "0.0.0.0"},
    {"hostPort": 18086, "containerPort": 86, "protocol": "udp", "hostIP": "::"},
]
CONDITION_MODULES = {"conditionsV4": ["-m", "conntrack", "--ctstate", "new,established", "-i",
                                      "eth0"]}


@pytest.mark.parametrize(
    ("variant", "mappings", "extra", "cid"),
    [
        ("P86-unspecified-host-ips", ANY_HOST_IPS, {}, "ctr1"),
        ("P88-conditions-with-modules", MAPPINGS[:2], CONDITION_MODULES, "ctr1"),
        ("network-name-with-dots", MAPPINGS[:1], {"name": "my.net-1"}, "ctr1"),
        ("long-container-id", MAPPINGS[:1], {}, "a" * 240),
        ("version-0.4.0", MAPPINGS[:2], {"cniVersion": "0.4.0"}, "ctr1"),
    ],
)
def test_pm82_94_layout_variants(cni: CniDir, variant: str, mappings: list[dict[str, Any]],
                                 extra: dict[str, Any], cid: str) -> None:
    """P82, P86, P88, P94 on more inputs: hostIP 0.0.0.0 / ::, conditions loading match modules,
    a network name with dots, a 240-character container id (the comment is cut), a 0.4.0
    config. ADD twice adds nothing twice (for the long id too, whose cut comment iptables
    stores shorter still), DEL twice removes the container's chain; every snapshot is compared
    with the reference's."""
    times = 2

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        prev = prev_040(pm.prev()) if extra.get("cniVersion") == "0.4.0" else pm.prev()
        add = {**pm.conf(mappings, prev), **extra}
        for _ in range(times):
            pm.call("ADD", add, cid=cid)
        added = pm.fw()
        delete = {**pm.conf(mappings), **extra}
        for _ in range(times):
            pm.call("DEL", delete, cid=cid)
        return {**pm.obs(), "added": added}

    obs = differential(cni, sc, fold={
        "I14-portmap-del-no-empty-table": lambda o: {**o, "fw": no_empty_ip6_nat(o["fw"])}})
    assert [s["rc"] for s in obs["steps"]] == [0] * 2 * times, (variant, obs["steps"])
    dnat = [ln for ln in lines(obs["added"]["iptables"]) if "-j DNAT --to-destination" in ln]
    assert len(dnat) == len([m for m in mappings if ":" not in m.get("hostIP", "")]), dnat
    rules = [ln for ln in lines(obs["added"]["iptables"]) if ln.startswith("-A ")]
    assert len(rules) == len(set(rules)), rules  # the second ADD added no rule again
    assert "-j DNAT" not in obs["fw"]["iptables"]


def test_pm94_del_keeps_other_containers(cni: CniDir) -> None:
    """P94: DEL of one container leaves another container's chain and the shared chains."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        for cid in ("c1", "c2"):
            pm.call("ADD", pm.conf(MAPPINGS[:2], pm.prev()), cid=cid)
        pm.call("DEL", pm.conf(MAPPINGS[:2]), cid="c1")
        return pm.obs()

    obs = differential(cni, sc, fold={
        "I14-portmap-del-no-empty-table": lambda o: {**o, "fw": no_empty_ip6_nat(o["fw"])}})
    assert [s["rc"] for s in obs["steps"]] == [0, 0, 0]
    dn = [ln for ln in lines(obs["fw"]["iptables"]) if ln.startswith(":CNI-DN-")]
    assert len(dn) == 1, dn


def test_pm95_check(cni: CniDir) -> None:
    """P95: CHECK of a v4-only container after ADD -> success (v1.1.1 fails on the ip6tables
    table, R6); after deleting a DNAT rule -> `could not check ipv4 dnat: rule ... not found`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        c = pm.conf(MAPPINGS[:1], pm.prev())
        pm.call("ADD", c)
        pm.call("CHECK", c)
        pm.node.exec("iptables", "-t", "nat", "-D", DN, "-p", "tcp", "-m", "tcp", "--dport",
                     "18080", "-j", "DNAT", "--to-destination", "10.250.1.3:80")
        pm.call("CHECK", c)
        return pm.obs()

    obs = differential(cni, sc, ignore=("steps",))
    s = obs["steps"]
    if dev.old_side(cni, "R6-portmap-check-family"):
        assert msg(s[1]) == f"could not check ipv6 dnat: chain {DN} not found in iptables table nat"
    else:
        assert s[1] == {"rc": 0, "stdout": ""}
        assert msg(s[2]).startswith("could not check ipv4 dnat: rule ") and msg(s[2]).endswith(
            f"in chain {DN} not found in table nat"), s[2]


def test_pm97_udp_conntrack_flush(cni: CniDir) -> None:
    """P97: an existing UDP conntrack entry to a mapped host port is deleted on ADD; a TCP entry
    to the same port stays."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        for proto, extra in (("udp", []), ("tcp", ["--state", "ESTABLISHED"])):
            pm.node.exec("conntrack", "-I", "-p", proto, "-s", "192.0.2.7", "-d", "10.250.1.1",
                         "--sport", "40000", "--dport", "18081", "--timeout", "300", *extra)
        pm.call("ADD", pm.conf([{"hostPort": 18081, "containerPort": 81, "protocol": "udp"}],
                               pm.prev()))
        ct = harness.ns_exec(pm.node, "conntrack", "-L", check=False).stdout
        protos = sorted(line.split()[0] for line in ct.splitlines() if "dport=18081" in line)
        return {"steps": pm.steps, "conntrack": protos}

    obs = differential(cni, sc)
    assert obs["conntrack"] == ["tcp"], obs["conntrack"]


def test_pm98_nftables_backend(cni: CniDir) -> None:
    """P98 (upstream 3d27709f, R7): backend nftables -> tables ip/ip6 cni_hostport with the chains
    of docs/reference-behaviour.md §3.4, rules commented with the container id; DEL removes only
    them. v1.1.1 ignores `backend` and writes iptables rules."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        c = pm.conf(MAPPINGS[:1], pm.prev(), backend="nftables")
        pm.call("ADD", c)
        added = pm.fw()
        pm.call("DEL", c)
        return {**pm.obs(), "added": added}

    obs = differential(cni, sc, ignore=("added", "fw", "sysctl"))
    nft = obs["added"]["nft"]
    if dev.old_side(cni, "R7-upstream-only-config"):
        assert DN in obs["added"]["iptables"]
        return
    assert "table ip cni_hostport" in nft, nft
    assert 'tcp dport 18080 dnat to 10.250.1.3:80 comment "ctr1"' in nft, nft
    assert 'ip saddr 10.250.1.3 ip daddr 10.250.1.3 masquerade comment "ctr1"' in nft
    assert 'ip saddr 127.0.0.1 ip daddr 10.250.1.3 masquerade comment "ctr1"' in nft
    assert '"ctr1"' not in obs["fw"]["nft"] and "table ip cni_hostport" in obs["fw"]["nft"]


def test_pm99_backend_errors(cni: CniDir) -> None:
    """P99 (upstream 3d27709f, R7): backend iptables with nft-style conditions -> conflict error;
    backend bogus -> `failed to parse config: unrecognized backend "bogus"`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        p = pm.prev()
        pm.call("ADD", pm.conf(MAPPINGS[:1], p, backend="iptables",
                               conditionsV4=["ip", "saddr", "1.2.3.4"]))
        pm.call("ADD", pm.conf(MAPPINGS[:1], p, backend="bogus"))
        return {"steps": pm.steps}

    obs = differential(cni, sc, ignore=("steps",))
    s = obs["steps"]
    if dev.old_side(cni, "R7-upstream-only-config"):
        assert s[1]["rc"] == 0
        return
    assert msg(s[0]).endswith("iptables backend was requested but configuration contains "
                              "nftables-specific options [conditionsV4]"), s[0]
    assert msg(s[1]) == 'failed to parse config: unrecognized backend "bogus"'


def test_pm100_masq_all(cni: CniDir) -> None:
    """P100 (upstream 3d27709f, R7): masqAll -> the hairpin rule matches `-s 0.0.0.0/0` and there is
    no localhost rule."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        pm = PM(cni, sb)
        pm.call("ADD", pm.conf(MAPPINGS[:1], pm.prev(), masqAll=True))
        return pm.obs()

    obs = differential(cni, sc, ignore=("fw",))
    rules = [x for x in lines(obs["fw"]["iptables"]) if x.startswith(f"-A {DN}")]
    if dev.old_side(cni, "R7-upstream-only-config"):
        assert (
            f"-A {DN} -s 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK" in rules
        )
        return
    assert f"-A {DN} -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK" in rules or (
        f"-A {DN} -s 0.0.0.0/0 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK" in rules), rules
    assert not [x for x in rules if "127.0.0.1" in x]
