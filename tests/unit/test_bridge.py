"""Unit tests for the bridge's config model, naming, rule texts and port/VLAN logic (no kernel).

The port-attachment test uses a recording fake netlink socket: it checks the order and content
of the requests the bridge sends for VLANs, which this machine's kernel cannot exercise (no
bridge VLAN filtering).
"""

from __future__ import annotations

import ipaddress

import pytest

from cni.errors import CNIError
from cni.gocompat import fmt
from plugins.bridge import config as bridge_config
from plugins.bridge import gateway, port
from plugins.linux import ipmasq_iptables, ipmasq_nftables, link
from plugins.linux.iptables_rules import save_unquote

BASE = {"cniVersion": "1.0.0", "name": "net", "type": "bridge"}


def load(extra: dict, cni_args: str = "") -> bridge_config.Settings:
    return bridge_config.load({**BASE, **extra}, cni_args)


# =========================================================================== config


def test_defaults() -> None:
    c = load({}).conf
    assert c.bridge == "cni0"
    assert not (c.isGateway or c.isDefaultGateway or c.forceAddress or c.ipMasq)
    assert c.mtu == 0 and c.vlan == 0 and c.vlanTrunk is None and c.ipMasqBackend is None
    assert not c.is_layer3 and not c.vlan_filtering


def test_keys_case_insensitive_and_nulls_keep_defaults() -> None:
    c = load({"BRIDGE": "br9", "IsGateway": True, "mtu": None, "bridge ": "x",
              "IPAM": {"TYPE": "host-local"}}).conf
    assert c.bridge == "br9" and c.isGateway and c.mtu == 0 and c.ipam_type == "host-local"
    assert load({"bridge": None}).conf.bridge == "cni0"


@pytest.mark.parametrize("extra", [{"mtu": "1500"}, {"isGateway": "true"}, {"vlan": 1.5},
                                   {"runtimeConfig": {"mac": 5}}, {"args": {"cni": {"mac": []}}}])
def test_wrong_json_types_are_code_6(extra: dict) -> None:
    with pytest.raises(CNIError) as e:
        load(extra)
    assert e.value.code == 6


def test_unknown_keys_kept() -> None:
    c = load({"someVendorKey": {"a": 1}, "runtimeConfig": {"portMappings": []}}).conf
    assert c.dump()["someVendorKey"] == {"a": 1}


@pytest.mark.parametrize(
    "trunk, vids",
    [
        ([{"id": 101}, {"minID": 200, "maxID": 203}], [101, 200, 201, 202, 203]),
        ([{"id": 5, "minID": 3, "maxID": 5}, {"id": 3}], [3, 4, 5]),
        ([{}], []),
        ([], []),
        (None, []),
    ],
)
def test_trunk_vlans(trunk, vids) -> None:
    loaded = load({} if trunk is None else {"vlanTrunk": trunk})
    assert loaded.vlans == vids
    assert loaded.conf.vlan_filtering is (trunk is not None)


def test_vlan_range_checked_before_trunk() -> None:
    with pytest.raises(CNIError, match=r"invalid VLAN ID 5000 \(must be between 0 and 4094\)"):
        load({"vlan": 5000, "vlanTrunk": [{"minID": 1}]})


def test_mac_precedence_and_cni_args() -> None:
    assert load({}, "IgnoreUnknown=1;MAC=0a:00:00:00:00:01").mac == "0a:00:00:00:00:01"
    assert (
        load({"args": {"cni": {"mac": "0a:00:00:00:00:02"}}}, "MAC=0a:00:00:00:00:01").mac
        == "0a:00:00:00:00:02"
    )
    assert (
        load(
            {
                "args": {"cni": {"mac": "0a:00:00:00:00:02"}},
                "runtimeConfig": {"mac": "0a:00:00:00:00:03"},
            },
            "MAC=0a:00:00:00:00:01",
        ).mac
        == "0a:00:00:00:00:03"
    )
    with pytest.raises(CNIError, match=r'ARGS: unknown args \["FOO=1"\]'):
        load({}, "FOO=1")


def test_preflight() -> None:
    loaded = load({"isDefaultGateway": True})
    bridge_config.preflight(loaded)
    assert loaded.conf.isGateway
    for extra, msg in [
        ({"ipam": {"type": "x"}, "disableContainerInterface": True}, "cannot use IPAM"),
        (
            {"hairpinMode": True, "promiscMode": True},
            "cannot set hairpin mode and promiscuous mode",
        ),
        ({"mtu": 67}, "invalid MTU 67"),
        ({"mtu": 65536}, "invalid MTU 65536"),
        ({"ipMasq": True, "ipMasqBackend": "pf"}, 'unknown ipmasq backend "pf"'),
        ({"runtimeConfig": {"mac": "0a:00:00:00:00"}}, "invalid MAC address"),
    ]:
        with pytest.raises(CNIError) as e:
            bridge_config.preflight(load(extra))
        assert e.value.code == 7 and msg in e.value.msg
    bridge_config.preflight(load({"ipMasqBackend": "pf"}))  # only checked when masquerading
    bridge_config.preflight(load({"mtu": 68}))
    bridge_config.preflight(load({"mtu": 65535}))


def test_dns_set_rules() -> None:
    assert not load({}).conf.dns_set()
    assert not load({"dns": {}}).conf.dns_set()
    assert not load({"dns": {"domain": ""}}).conf.dns_set()
    assert load({"dns": {"nameservers": []}}).conf.dns_set()
    assert load({"dns": {"domain": "x"}}).conf.dns_set()


@pytest.mark.parametrize(
    "text, mac",
    [
        ("0A:58:0a:00:00:05", "0a:58:0a:00:00:05"),
        ("0a-58-0a-00-00-05", "0a:58:0a:00:00:05"),
        ("0a58.0a00.0005", "0a:58:0a:00:00:05"),
        ("zz", None),
        ("0a:58:0a:00:00", None),
        ("0a:58:0a:00:00:05:06:07", None),
        ("0a:58:0a:00:00:0g", None),
    ],
)
def test_parse_mac(text: str, mac: str | None) -> None:
    assert link.parse_mac(text) == mac


# =========================================================================== naming and rule text


def test_reference_hashes() -> None:
    """docs/reference-behaviour.md §0.7 examples."""
    assert ipmasq_iptables.iptables_chain("refnet1", "ctr1") == "CNI-e58756d01a2a07fa566152ed"
    assert ipmasq_iptables.iptables_chain("test", "1234") == "CNI-2bbe0c48b91a7d1b8a6753a8"
    assert ipmasq_nftables.nft_network_hash("unit-test") == "6fd94d501e58f0aa"
    assert (
        ipmasq_nftables.nft_instance_hash("unit-test", "eth0", "one")
        == "6fd94d501e58f0aa-287fc69eff0574a2"
    )
    assert ipmasq_iptables.iptables_comment("refnet1", "ctr1") == 'name: "refnet1" id: "ctr1"'


def test_nft_comment_truncated_and_unquoted() -> None:
    c = ipmasq_nftables.nft_comment("n", 'e"th0', "x" * 200)
    assert len(c) == 128 and '"' not in c
    assert c.startswith(
        ipmasq_nftables.nft_instance_hash("n", 'e"th0', "x" * 200) + ", net: n, if: eth0, id: xx"
    )


def test_iptables_rules_in_save_form() -> None:
    chain = "CNI-e58756d01a2a07fa566152ed"
    comment = 'name: "refnet1" id: "ctr1"'
    quoted = '-m comment --comment "name: \\"refnet1\\" id: \\"ctr1\\""'
    v4 = ipmasq_iptables._ipt_rules(ipaddress.ip_interface("10.250.1.2/24"), chain, comment)
    assert v4 == (
        f"-d 10.250.1.0/24 {quoted} -j ACCEPT",
        f"! -d 224.0.0.0/4 {quoted} -j MASQUERADE",
        f"-s 10.250.1.2/32 {quoted} -j {chain}",
    )
    v6 = ipmasq_iptables._ipt_rules(ipaddress.ip_interface("fd00:1::2/64"), chain, comment)
    assert v6[0].startswith("-d fd00:1::/64 ") and v6[1].startswith("! -d ff00::/8 ")
    assert v6[2].startswith("-s fd00:1::2/128 ")


def test_iptables_rules_carry_the_comment_iptables_stores() -> None:
    """Over 255 bytes iptables keeps only the first 255; the rules we compare and delete by
    text must carry exactly those, or a repeated ADD duplicates them and DEL misses them."""
    comment = ipmasq_iptables.iptables_comment("n", "x" * 300)
    rules = ipmasq_iptables._ipt_rules(ipaddress.ip_interface("10.0.0.2/24"), "CNI-x", comment)
    stored = 'name: \\"n\\" id: \\"' + "x" * (255 - len('name: "n" id: "'))
    assert all(f'--comment "{stored}" -j ' in r for r in rules), rules


def test_gc_rule_parsing() -> None:
    rule = ('-s 10.250.1.2/32 -m comment --comment "name: \\"refnet1\\" id: \\"ctr1\\"" '
            "-j CNI-e58756d01a2a07fa566152ed")
    m = ipmasq_iptables._IPT_JUMP.match(rule)
    assert m and m.group("chain") == "CNI-e58756d01a2a07fa566152ed"
    assert save_unquote(m.group("c")) == 'name: "refnet1" id: "ctr1"'
    assert save_unquote("bare") == "bare"
    assert save_unquote('"unterminated') is None


def test_go_texts() -> None:
    assert fmt.ipnet_value("0.0.0.0/0", True) == "{0.0.0.0 00000000000000000000ffff00000000}"
    assert fmt.ipnet_value("10.250.77.0/24", False) == "{10.250.77.0 ffffff00}"
    assert fmt.ipnet_value("::/0", True) == "{:: 00000000000000000000000000000000}"
    from cni.result import IPConfig, Route

    assert fmt.route_plus(Route(dst="0.0.0.0/0")) == (
        "{Dst:{IP:0.0.0.0 Mask:00000000} GW:<nil> MTU:0 AdvMSS:0 Priority:0 Table:<nil> "
        "Scope:<nil>}"
    )
    assert fmt.route_plus(Route(dst="fd00::/64", gw="fd00::1")).startswith(
        "{Dst:{IP:fd00:: Mask:ffffffffffffffff0000000000000000} GW:fd00::1 "
    )
    assert fmt.ipconfig_plus(IPConfig(address="10.0.0.2/24", gateway="10.0.0.1", interface=2)) == (
        "{Interface:2 Address:{IP:10.0.0.2 Mask:ffffff00} Gateway:10.0.0.1}"
    )
    assert fmt.netlink_route("0.0.0.0/0", True, None, "eth0", 0, None, None) == (
        "{0.0.0.0 00000000000000000000ffff00000000} via <nil> dev eth0 metric 0 "
        "(Scope: universe, Table: 0)"
    )
    assert fmt.netlink_route("10.9.0.0/16", False, "10.9.0.1", "eth0", 5, 253, 100) == (
        "{10.9.0.0 ffff0000} via 10.9.0.1 dev eth0 metric 5 (Scope: link, Table: 100)"
    )
    assert fmt.netlink_route("10.9.0.0/16", False, None, "e", 0, 7, None).endswith(
        "(Scope: 7, Table: 0)"
    )
    assert (fmt.boolean(True), fmt.boolean(False), fmt.nil_or(None), fmt.nil_or(3)) == (
        "true", "false", "<nil>", "3"
    )


def test_calc_gateways() -> None:
    from cni.result import new_result

    conf = load({"isDefaultGateway": True, "isGateway": True}).conf
    res = new_result(
        "1.1.0",
        ips=[
            {"address": "10.1.2.3/24"},
            {"address": "fd00::5/64", "gateway": "fd00::9"},
            {"address": "10.1.3.3/24"},
        ],
        routes=[{"dst": "0.0.0.0/0"}],
    )
    gws = gateway.calc_gateways(res, conf)
    assert [ip.interface for ip in res.ips] == [2, 2, 2]
    assert [ip.gateway for ip in res.ips] == ["10.1.2.1", "fd00::9", "10.1.3.1"]
    # an IPAM default route without gw does not count: one default per family is added, in IP order
    assert [(r.dst, r.gw) for r in res.routes] == [
        ("0.0.0.0/0", None), ("0.0.0.0/0", "10.1.2.1"), ("::/0", "fd00::9"),
    ]
    assert gws.synthesized == {1, 2}
    assert [str(g) for g in gws.gws[4]] == ["10.1.2.1/24", "10.1.3.1/24"]
    assert [str(g) for g in gws.gws[6]] == ["fd00::9/64"]
    plain = load({}).conf
    res = new_result("1.1.0", ips=[{"address": "10.1.2.3/24"}])
    gws = gateway.calc_gateways(res, plain)
    assert res.ips[0].gateway is None and gws.gws == {4: [], 6: []} and res.routes == []


# =========================================================================== port attachment (fake
# netlink)


class FakeIPRoute:
    """Records link/brport/vlan_filter requests; lists VLAN 1 PVID untagged on every port."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def link(self, cmd: str, **kw) -> list:
        self.calls.append(("link", cmd, kw))
        return []

    def brport(self, cmd: str, **kw) -> list:
        self.calls.append(("brport", cmd, kw))
        return []

    def get_vlans(self, **kw) -> list:
        return [_VlanMsg(kw["index"])]

    def vlan_filter(self, cmd: str, **kw) -> list:
        self.calls.append(("vlan", cmd, kw["vlan_info"]))
        return []


class _VlanMsg:
    def __init__(self, index: int) -> None:
        self.index = index

    def get_attr(self, name: str):
        assert name == "IFLA_AF_SPEC"
        return {"attrs": [("IFLA_BRIDGE_VLAN_INFO", {"vid": 1, "flags": 6})]}


def _port(vlan: int, vlans: list[int], preserve: bool) -> list[tuple]:
    ipr = FakeIPRoute()
    br = link.Link(5, "br0", "bridge", "aa:aa:aa:aa:aa:aa", 1500, 1, "UP", 0, 0)
    veth = link.Link(7, "veth01234567", "veth", "bb:bb:bb:bb:bb:bb", 1500, 1, "UP", 0, 3)
    port.attach_port(ipr, br, veth, True, False, vlan, vlans, preserve)
    return ipr.calls


def test_port_plain() -> None:
    calls = _port(0, [], False)
    assert calls == [
        ("link", "set", {"index": 7, "master": 5}),
        ("brport", "set", {"index": 7, "mode": 1}),
        ("brport", "set", {"index": 7, "isolated": 0}),
    ]


def test_port_access_vlan_replaces_default() -> None:
    vlan_calls = [c for c in _port(100, [], False) if c[0] == "vlan"]
    assert vlan_calls == [("vlan", "del", {"vid": 1}), ("vlan", "add", {"vid": 100, "flags": 6})]


def test_port_access_vlan_preserving_default() -> None:
    vlan_calls = [c for c in _port(100, [], True) if c[0] == "vlan"]
    assert vlan_calls == [("vlan", "add", {"vid": 100, "flags": 6})]


def test_port_trunk_without_access_vlan() -> None:
    vlan_calls = [c for c in _port(0, [101, 200], False) if c[0] == "vlan"]
    assert vlan_calls == [
        ("vlan", "del", {"vid": 1}),
        ("vlan", "add", {"vid": 101, "flags": 0}),
        ("vlan", "add", {"vid": 200, "flags": 0}),
        ("vlan", "add", {"vid": 1, "flags": 6}),
    ]


def test_port_trunk_with_access_vlan() -> None:
    vlan_calls = [c for c in _port(100, [101], False) if c[0] == "vlan"]
    assert vlan_calls == [
        ("vlan", "del", {"vid": 1}),
        ("vlan", "add", {"vid": 100, "flags": 6}),
        ("vlan", "add", {"vid": 101, "flags": 0}),
    ]


# =========================================================================== start-up

_WATCHED = ("pydantic", "pyroute2", "plugins.linux.rtnl", "cni.result", "subprocess",
            "plugins.linux.ipmasq", "plugins.bridge.readdress")


@pytest.mark.parametrize(("module", "loaded"), [
    ("plugins.bridge", []),  # what VERSION runs: no pydantic, no netlink
    ("plugins.bridge.delete", ["plugins.linux.rtnl", "pydantic"]),  # no result models
    ("plugins.bridge.add", ["cni.result", "plugins.linux.rtnl", "pydantic"]),
])
def test_each_verb_loads_only_what_it_needs(module: str, loaded: list[str]) -> None:
    """The thin main imports a verb's steps only when the verb runs; the firewall steps
    (subprocess) and the re-address step load only when a call needs them."""
    import subprocess
    import sys

    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(sorted(m for m in {_WATCHED!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == repr(loaded)
