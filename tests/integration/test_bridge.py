"""Integration tests for plugins/bridge/: the real executable (dist/bin/bridge) through the
CNI protocol, inside a node namespace, with real veths, bridges, iptables and nftables.

IPAM is host-local (ours once ipam/host_local.py exists, else the reference binary; see
bridge_testlib.ipam_dir), its dataDir in the test's tmp dir. Docstrings start with the ids of the
cases of docs/reference-behaviour.md they cover (P54 ...).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.harness import Netns
from tests import bridge_testlib as bt

pytestmark = pytest.mark.netns


@pytest.fixture
def run(node_ns: Netns, tmp_path: Path) -> bt.Runner:
    """Our bridge in the node namespace."""
    return bt.Runner(bt.OURS, node_ns, bt.ipam_dir(tmp_path))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "ipam"
    d.mkdir()
    return d


# =========================================================================== ADD basics


def test_l3_add_result_and_kernel_state(
    run: bt.Runner, node_ns: Netns, make_pod, data: Path
) -> None:
    """docs/reference-behaviour.md P44/45: result shape, addresses, routes, sysctls, port flags."""
    pod = make_pod()
    conf = bt.l3_conf(data, isGateway=True, routes=[{"dst": "0.0.0.0/0"}])
    res = run.ok("ADD", conf, pod)
    assert [i["name"] for i in res["interfaces"]][0] == "testbr0"
    br, veth, cont = res["interfaces"]
    assert bt.is_veth_name(veth["name"])
    assert cont == {"name": "eth0", "mac": cont["mac"], "sandbox": pod.path}
    assert res["ips"] == [{"address": "10.250.1.2/24", "gateway": "10.250.1.1", "interface": 2}]
    assert res["routes"] == [{"dst": "0.0.0.0/0"}]
    assert "dns" not in res

    host_links = bt.links(node_ns)
    assert host_links["testbr0"]["address"] == br["mac"]
    assert host_links[veth["name"]]["address"] == veth["mac"]
    assert host_links[veth["name"]]["master"] == "testbr0"
    assert "UP" in host_links["testbr0"]["flags"]
    assert bt.links(pod)["eth0"]["address"] == cont["mac"]
    assert bt.addrs(node_ns, "testbr0") == ["10.250.1.1/24"]
    assert bt.addrs(pod, "eth0") == ["10.250.1.2/24"]
    assert "default via 10.250.1.1 dev eth0" in bt.routes(pod)
    assert bt.sysctl(node_ns, "net/ipv4/ip_forward") == "1"
    assert bt.sysctl(node_ns, "net/ipv6/conf/testbr0/accept_ra") == "0"
    assert bt.sysctl(node_ns, f"net/ipv6/conf/{veth['name']}/accept_ra") == "0"
    assert bt.sysctl(pod, "net/ipv6/conf/eth0/accept_dad") == "0"
    assert bt.sysctl(pod, "net/ipv4/conf/eth0/arp_notify") == "1"
    # the bridge MAC is pinned once it holds the gateway address
    assert node_ns.exec("cat", "/sys/class/net/testbr0/addr_assign_type").stdout.strip() == "3"
    slave = host_links[veth["name"]]["linkinfo"]["info_slave_data"]
    assert slave["hairpin"] is False and slave["isolated"] is False
    assert bt.lease_files(data, "testnet") == ["10.250.1.2"]


def test_two_pods_ping_each_other_and_gateway_hairpin(run: bt.Runner, node_ns: Netns, make_pod,
                                                       data: Path) -> None:
    conf = bt.l3_conf(data, isGateway=True, hairpinMode=True)
    a, b = make_pod(), make_pod()
    ra = run.ok("ADD", conf, a, cid="pod-a")
    rb = run.ok("ADD", conf, b, cid="pod-b")
    ip_a = ra["ips"][0]["address"].split("/")[0]
    ip_b = rb["ips"][0]["address"].split("/")[0]
    assert ip_a != ip_b
    assert bt.ping(a, ip_b) and bt.ping(b, ip_a)
    assert bt.ping(a, "10.250.1.1") and bt.ping(b, "10.250.1.1")
    for r in (ra, rb):
        slave = bt.links(node_ns)[r["interfaces"][1]["name"]]["linkinfo"]["info_slave_data"]
        assert slave["hairpin"] is True
    # both host ends on the one bridge
    assert {bt.links(node_ns)[r["interfaces"][1]["name"]]["master"] for r in (ra, rb)} == {
        "testbr0"
    }


def test_dual_stack_default_gateway(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P54: routes [ipam route, v4 default, v6 default]; both gateways on the bridge."""
    conf = bt.l3_conf(
        data,
        subnet=None,
        ranges=[[{"subnet": "10.250.7.0/24"}], [{"subnet": "fd00:250:7::/64"}]],
        routes=[{"dst": "10.250.77.0/24"}],
        isDefaultGateway=True,
    )
    a, b = make_pod(), make_pod()
    res = run.ok("ADD", conf, a, cid="ds-a")
    assert res["ips"] == [
        {"address": "10.250.7.2/24", "gateway": "10.250.7.1", "interface": 2},
        {"address": "fd00:250:7::2/64", "gateway": "fd00:250:7::1", "interface": 2},
    ]
    assert res["routes"] == [
        {"dst": "10.250.77.0/24"},
        {"dst": "0.0.0.0/0", "gw": "10.250.7.1"},
        {"dst": "::/0", "gw": "fd00:250:7::1"},
    ]
    assert set(bt.addrs(node_ns, "testbr0")) == {"10.250.7.1/24", "fd00:250:7::1/64"}
    assert "10.250.77.0/24 via 10.250.7.1 dev eth0" in bt.routes(a)
    assert any(r.startswith("default via fd00:250:7::1 dev eth0") for r in bt.routes(a, "-6"))
    assert bt.sysctl(node_ns, "net/ipv6/conf/all/forwarding") == "1"
    assert bt.sysctl(a, "net/ipv6/conf/eth0/disable_ipv6") == "0"
    assert bt.sysctl(a, "net/ipv6/conf/lo/disable_ipv6") == "0"
    assert bt.sysctl(a, "net/ipv6/conf/eth0/keep_addr_on_down") == "1"  # as upstream 3d27709f
    rb = run.ok("ADD", conf, b, cid="ds-b")
    assert bt.ping(a, rb["ips"][0]["address"].split("/")[0])
    assert bt.ping(a, rb["ips"][1]["address"].split("/")[0])
    assert bt.ping(b, "fd00:250:7::1")


def test_l2_mode(run: bt.Runner, node_ns: Netns, make_pod) -> None:
    """P53: no ips/routes, container iface up, bridge MAC inherited from the port."""
    pod = make_pod()
    res = run.ok("ADD", bt.l2_conf(), pod)
    assert set(res) == {"cniVersion", "interfaces"}
    assert "UP" in bt.links(pod)["eth0"]["flags"]
    assert bt.addrs(pod, "eth0") == []
    assert res["interfaces"][0]["mac"] == bt.links(node_ns)["testbr0"]["address"]
    # 0.2.0 cannot carry an L2 result: the error comes before anything is left behind
    pod2 = make_pod()
    err = run.fail("ADD", bt.l2_conf(version="0.2.0"), pod2, cid="c2")
    assert err["msg"] == "cannot convert: no valid IP addresses"
    assert "eth0" not in bt.links(pod2)
    # 0.3.1 prints an empty dns
    pod3 = make_pod()
    assert run.ok("ADD", bt.l2_conf(version="0.3.1"), pod3, cid="c3")["dns"] == {}


def test_mtu_applies_to_new_bridge_and_veths(run: bt.Runner, node_ns: Netns, make_pod,
                                              data: Path) -> None:
    pod = make_pod()
    res = run.ok("ADD", bt.l3_conf(data, mtu=9000), pod)
    host = bt.links(node_ns)
    assert host["testbr0"]["mtu"] == 9000
    assert host[res["interfaces"][1]["name"]]["mtu"] == 9000
    assert bt.links(pod)["eth0"]["mtu"] == 9000


def test_existing_bridge_mtu_is_kept(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P51 (the MTU set explicitly: a bridge with a default MTU follows its ports)."""
    node_ns.ip("link", "add", "testbr0", "type", "bridge")
    node_ns.ip("link", "set", "testbr0", "mtu", "1400")
    pod = make_pod()
    res = run.ok("ADD", bt.l3_conf(data, mtu=9000), pod)
    assert bt.links(node_ns)["testbr0"]["mtu"] == 1400
    assert bt.links(node_ns)[res["interfaces"][1]["name"]]["mtu"] == 9000


def test_mac_precedence(run: bt.Runner, make_pod, data: Path) -> None:
    """P59: runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC."""
    conf = bt.l3_conf(
        data, args={"cni": {"mac": "0a:58:00:00:00:16"}}, runtimeConfig={"mac": "0a:58:00:00:00:17"}
    )
    pod = make_pod()
    res = run.ok("ADD", conf, pod, args="IgnoreUnknown=1;MAC=0a:58:00:00:00:15")
    assert res["interfaces"][2]["mac"] == "0a:58:00:00:00:17"
    assert bt.links(pod)["eth0"]["address"] == "0a:58:00:00:00:17"
    pod2 = make_pod()
    conf2 = bt.l3_conf(data, args={"cni": {"mac": "0a:58:00:00:00:16"}})
    assert run.ok("ADD", conf2, pod2, cid="c2", args="IgnoreUnknown=1;MAC=0a:58:00:00:00:15")[
        "interfaces"][2]["mac"] == "0a:58:00:00:00:16"
    pod3 = make_pod()
    assert (
        run.ok(
            "ADD", bt.l3_conf(data), pod3, cid="c3", args="IgnoreUnknown=1;MAC=0A-58-00-00-00-15"
        )["interfaces"][2]["mac"]
        == "0a:58:00:00:00:15"
    )


def test_enabledad_and_port_isolation(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P68/P70."""
    pod = make_pod()
    res = run.ok("ADD", bt.l3_conf(data, enabledad=True, portIsolation=True), pod)
    assert bt.sysctl(pod, "net/ipv6/conf/eth0/enhanced_dad") == "1"
    assert bt.sysctl(pod, "net/ipv6/conf/eth0/accept_dad") == "1"
    slave = bt.links(node_ns)[res["interfaces"][1]["name"]]["linkinfo"]["info_slave_data"]
    assert slave["isolated"] is True


def test_enabledad_ipv6_waits_for_dad(run: bt.Runner, make_pod, data: Path) -> None:
    """With DAD on, ADD returns only once the pod's IPv6 address has left the tentative state
    (the reference's SettleAddresses), so the address is usable when the runtime gets the result."""
    pod = make_pod()
    conf = bt.l3_conf(data, subnet=None, ranges=[[{"subnet": "fd00:68::/64"}]], isGateway=True,
                      enabledad=True)
    run.ok("ADD", conf, pod)
    out = pod.ip("-6", "addr", "show", "dev", "eth0", "scope", "global").stdout
    assert "fd00:68::2/64" in out and "tentative" not in out


def test_promisc_mode(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    pod = make_pod()
    run.ok("ADD", bt.l3_conf(data, promiscMode=True), pod)
    assert bt.links(node_ns)["testbr0"]["promiscuity"] >= 1


def test_config_dns_overrides_ipam(run: bt.Runner, make_pod, data: Path) -> None:
    """P62."""
    pod = make_pod()
    conf = bt.l3_conf(data, dns={"nameservers": ["10.0.0.10"], "search": ["svc.local"]})
    assert run.ok("ADD", conf, pod)["dns"] == {
        "nameservers": ["10.0.0.10"],
        "search": ["svc.local"],
    }
    pod2 = make_pod()
    assert "dns" not in run.ok("ADD", bt.l3_conf(data, dns={"nameservers": []}), pod2, cid="c2")


def test_case_insensitive_keys(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P61."""
    pod = make_pod()
    conf = {"cniVersion": "1.0.0", "name": "testnet", "type": "bridge", "BRIDGE": "testbr1",
            "IsGateway": True,
            "IPAM": {"TYPE": "host-local", "SUBNET": "10.250.2.0/24", "dataDir": str(data)}}
    res = run.ok("ADD", conf, pod)
    assert res["interfaces"][0]["name"] == "testbr1"
    assert bt.addrs(node_ns, "testbr1") == ["10.250.2.1/24"]


def test_old_versions(run: bt.Runner, make_pod, data: Path) -> None:
    """P80."""
    pod = make_pod()
    res = run.ok("ADD", bt.l3_conf(data, version="0.4.0", isGateway=True), pod)
    assert res["ips"][0]["version"] == "4" and res["dns"] == {}
    pod2 = make_pod()
    res = run.ok("ADD", bt.l3_conf(data, version="0.2.0", isDefaultGateway=True), pod2, cid="c2")
    assert res["ip4"]["gateway"] == "10.250.1.1"
    assert res["ip4"]["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.250.1.1"}]


# =========================================================================== masquerade


def test_ipmasq_long_container_id_cut_comment_and_del(run: bt.Runner, node_ns: Netns,
                                                        make_pod, data: Path) -> None:
    """A 240-character id makes the comment longer than the 255 bytes iptables keeps: the rules
    carry the cut comment (the form our text comparisons now predict), and DEL removes them."""
    cid = "d" * 240
    conf = bt.l3_conf(data, name="refnet1", ipMasq=True, isGateway=True,
                      ipMasqBackend="iptables")
    pod = make_pod()
    run.ok("ADD", conf, pod, cid=cid)
    stored = 'name: \\"refnet1\\" id: \\"' + "d" * (255 - len('name: "refnet1" id: "'))
    rules = [r for r in bt.nat_rules(node_ns) if r.startswith("-A ")]
    assert len(rules) == 3 and all(f'--comment "{stored}" ' in r for r in rules), rules
    run.ok("DEL", conf, pod, cid=cid)
    assert bt.nat_rules(node_ns) == []


@pytest.mark.parametrize("backend", ["iptables", "nftables", None])
def test_ipmasq_rules_follow_add_and_del(backend, run: bt.Runner, node_ns: Netns, make_pod,
                                         data: Path) -> None:
    """P63/P64/66: the reference layout, gone after DEL, dual stack."""
    keys = {"ipMasq": True, "isGateway": True}
    if backend:
        keys["ipMasqBackend"] = backend
    conf = bt.l3_conf(
        data, subnet=None, ranges=[[{"subnet": "10.250.1.0/24"}], [{"subnet": "fd00:1::/64"}]],
        name="refnet1", **keys,
    )
    pod = make_pod()
    run.ok("ADD", conf, pod)
    comment = '-m comment --comment "name: \\"refnet1\\" id: \\"ctr1\\""'
    chain = "CNI-e58756d01a2a07fa566152ed"
    if backend == "nftables":
        nft = bt.nft_ruleset(node_ns)
        assert "table inet cni_plugins_masquerade" in nft
        assert (
            'ip saddr 10.250.1.2 ip daddr != 10.250.1.0/24 masquerade comment '
            '"bcc755503c3dbd8b-7883a6f9ce71eedb, net: refnet1, if: eth0, id: ctr1"'
        ) in nft
        assert "ip6 saddr fd00:1::2 ip6 daddr != fd00:1::/64 masquerade" in nft
        assert bt.nat_rules(node_ns) == []
    else:
        assert bt.nat_rules(node_ns) == [
            f":{chain} - [0:0]",
            f"-A POSTROUTING -s 10.250.1.2/32 {comment} -j {chain}",
            f"-A {chain} -d 10.250.1.0/24 {comment} -j ACCEPT",
            f"-A {chain} ! -d 224.0.0.0/4 {comment} -j MASQUERADE",
        ]
        assert bt.nat_rules(node_ns, ipv6=True) == [
            f":{chain} - [0:0]",
            f"-A POSTROUTING -s fd00:1::2/128 {comment} -j {chain}",
            f"-A {chain} -d fd00:1::/64 {comment} -j ACCEPT",
            f"-A {chain} ! -d ff00::/8 {comment} -j MASQUERADE",
        ]
    run.ok("DEL", conf, pod)
    assert bt.nat_rules(node_ns) == [] and bt.nat_rules(node_ns, ipv6=True) == []
    assert "masquerade comment" not in bt.nft_ruleset(node_ns)
    run.ok("DEL", conf, pod)


def test_ipmasq_removed_when_link_or_netns_gone(run: bt.Runner, node_ns: Netns, make_pod,
                                                data: Path) -> None:
    """P65 done better: DEL still removes the rules when the pod link or netns is gone."""
    from conformance import harness

    conf = bt.l3_conf(data, ipMasq=True)
    a, b = make_pod(), make_pod()
    run.ok("ADD", conf, a, cid="gone-link")
    run.ok("ADD", conf, b, cid="gone-ns")
    a.ip("link", "del", "eth0")
    run.ok("DEL", conf, a, cid="gone-link")
    harness.delete_netns(b)
    run.ok("DEL", conf, b, cid="gone-ns")
    assert bt.nat_rules(node_ns) == []
    assert bt.lease_files(data, "testnet") == []


def test_gc_removes_stale_masquerade(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    conf = bt.l3_conf(data, ipMasq=True, version="1.1.0")
    pods = [make_pod() for _ in range(3)]
    run.ok("ADD", conf, pods[0], cid="keep")
    run.ok("ADD", conf, pods[1], cid="stale")
    run.ok("ADD", dict(conf, ipMasqBackend="nftables"), pods[2], cid="stale-nft")
    gc = dict(conf)
    gc["cni.dev/valid-attachments"] = [{"containerID": "keep", "ifname": "eth0"}]
    run.ok("GC", gc, ifname=None, cid=None)
    rules = "\n".join(bt.nat_rules(node_ns))
    assert '\\"keep\\"' in rules and "stale" not in rules
    assert "id: stale-nft" not in bt.nft_ruleset(node_ns)
    if run.cni_path == str(bt.OURS.parent):
        # GC went on to our host-local (the reference's bridge does neither): one lease left
        assert bt.lease_files(data, "testnet") == ["10.250.1.2"]
    run.ok("DEL", conf, pods[0], cid="keep")
    assert bt.nat_rules(node_ns) == []


# =========================================================================== DEL / CHECK


def test_del_is_idempotent_and_releases(
    run: bt.Runner, node_ns: Netns, make_pod, data: Path
) -> None:
    """P75."""
    pod = make_pod()
    conf = bt.l3_conf(data, isGateway=True)
    res = run.ok("ADD", conf, pod)
    run.ok("DEL", conf, pod)
    assert "eth0" not in bt.links(pod)
    assert res["interfaces"][1]["name"] not in bt.links(node_ns)
    assert bt.lease_files(data, "testnet") == []
    run.ok("DEL", conf, pod)
    run.ok("DEL", conf, netns="")
    run.ok("DEL", conf, netns="/run/netns/does-not-exist")
    # the bridge and its address stay
    assert bt.addrs(node_ns, "testbr0") == ["10.250.1.1/24"]


def test_del_with_empty_netns_releases_lease(run: bt.Runner, make_pod, data: Path) -> None:
    pod = make_pod()
    conf = bt.l3_conf(data)
    run.ok("ADD", conf, pod)
    run.ok("DEL", conf, netns="")
    assert bt.lease_files(data, "testnet") == []


def test_del_regular_file_netns_fails_without_release(run: bt.Runner, make_pod, data: Path,
                                                      tmp_path: Path) -> None:
    """P109."""
    pod = make_pod()
    conf = bt.l3_conf(data)
    run.ok("ADD", conf, pod)
    f = tmp_path / "notns"
    f.write_text("")
    err = run.fail("DEL", conf, netns=str(f))
    assert err["msg"].startswith(f'unknown FS magic on "{f}"')
    assert bt.lease_files(data, "testnet") == ["10.250.1.2"]


def test_check_after_add_and_after_damage(run: bt.Runner, make_pod, data: Path) -> None:
    """P77: CHECK passes, then fails for a missing route, address, interface."""
    pod = make_pod()
    conf = bt.l3_conf(data, isGateway=True, routes=[{"dst": "0.0.0.0/0"}])
    res = run.ok("ADD", conf, pod)
    check = bt.with_prev(conf, res)
    run.ok("CHECK", check, pod)
    pod.ip("route", "del", "default")
    err = run.fail("CHECK", check, pod)
    assert err["msg"] == (
        "Expected Route {Dst:{IP:0.0.0.0 Mask:00000000} GW:<nil> MTU:0 AdvMSS:0 Priority:0 "
        "Table:<nil> Scope:<nil>} not found in routing table"
    )
    pod.ip("addr", "del", "10.250.1.2/24", "dev", "eth0")
    assert (
        run.fail("CHECK", check, pod)["msg"]
        == "Failed to match addr 10.250.1.2/24 on interface eth0"
    )
    pod.ip("link", "del", "eth0")
    assert run.fail("CHECK", check, pod)["msg"] == "Interface name eth0 not found"


def test_check_errors(run: bt.Runner, make_pod, data: Path) -> None:
    """P78."""
    pod = make_pod()
    conf = bt.l3_conf(data)
    run.ok("ADD", conf, pod)
    assert run.fail("CHECK", conf, pod)["msg"] == "Required prevResult missing"
    assert run.fail("CHECK", bt.l2_conf(), pod)["msg"] == "no plugin name provided"
    prev = {"cniVersion": "1.0.0", "interfaces": [], "ips": []}
    err = run.fail("CHECK", bt.with_prev(bt.l3_conf(data, version="0.4.0"), prev), pod)
    assert "result type supports [0.3.0 0.3.1 0.4.0]" in err["msg"]


def test_status(run: bt.Runner, data: Path) -> None:
    """P79."""
    run.ok("STATUS", bt.l3_conf(data, version="1.1.0"), cid=None, ifname=None)
    conf = bt.l3_conf(data, version="1.1.0")
    conf["ipam"]["type"] = "nosuch"
    assert run.fail("STATUS", conf, cid=None, ifname=None)["msg"].startswith(
        'failed to find plugin "nosuch" in path'
    )
    run.ok("STATUS", bt.l2_conf(version="1.1.0"), cid=None, ifname=None)


# =========================================================================== failures leave nothing


def _host_state(node_ns: Netns) -> tuple:
    return (sorted(bt.links(node_ns)), bt.nat_rules(node_ns), bt.nat_rules(node_ns, True))


def test_bridge_name_taken_by_non_bridge(
    run: bt.Runner, node_ns: Netns, make_pod, data: Path
) -> None:
    """P49."""
    node_ns.ip("link", "add", "refbrveth", "type", "veth", "peer", "name", "refbrpeer")
    pod = make_pod()
    before = _host_state(node_ns)
    err = run.fail("ADD", bt.l3_conf(data, bridge="refbrveth"), pod)
    assert (
        err["msg"]
        == 'failed to create bridge "refbrveth": "refbrveth" already exists but is not a bridge'
    )
    assert _host_state(node_ns) == before
    assert sorted(bt.links(pod)) == ["lo"]
    assert bt.lease_files(data, "testnet") == []


@pytest.mark.parametrize("mtu", [70000, -1, 20])
def test_mtu_out_of_range(mtu: int, run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    pod = make_pod()
    err = run.fail("ADD", bt.l3_conf(data, mtu=mtu), pod)
    assert err["code"] == 7
    assert err["msg"] == f"invalid MTU {mtu} (must be 0 or between 68 and 65535)"
    assert sorted(bt.links(node_ns)) == ["lo"]


def test_ifname_already_in_pod(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P46, and nothing left behind: not even the bridge this ADD created."""
    pod = make_pod()
    pod.ip("link", "add", "eth0", "type", "veth", "peer", "name", "other")
    err = run.fail("ADD", bt.l3_conf(data), pod)
    assert err["code"] == 999
    assert err["msg"].startswith('container veth name ("eth0") peer provided ("veth')
    assert err["msg"].endswith('") already exists')
    assert sorted(bt.links(node_ns)) == ["lo"]
    assert bt.lease_files(data, "testnet") == []
    # a second ADD on a working attachment says the same and keeps the first intact
    pod2 = make_pod()
    conf = bt.l3_conf(data)
    run.ok("ADD", conf, pod2, cid="c2")
    before = _host_state(node_ns)
    assert "already exists" in run.fail("ADD", conf, pod2, cid="c2")["msg"]
    assert _host_state(node_ns) == before
    assert bt.addrs(pod2, "eth0") == ["10.250.1.2/24"]


@pytest.mark.parametrize(
    "keys, msg",
    [
        ({"vlan": 4095}, "invalid VLAN ID 4095 (must be between 0 and 4094)"),
        ({"vlan": -1}, "invalid VLAN ID -1 (must be between 0 and 4094)"),
        (
            {"vlanTrunk": [{"minID": 5}]},
            "minID and maxID should be configured simultaneously, maxID is missing",
        ),
        (
            {"vlanTrunk": [{"maxID": 5}]},
            "minID and maxID should be configured simultaneously, minID is missing",
        ),
        (
            {"vlanTrunk": [{"minID": 1000, "maxID": 100}]},
            "minID is greater than maxID in trunk parameter",
        ),
        ({"vlanTrunk": [{"id": 0}]}, "incorrect trunk id parameter"),
        ({"vlanTrunk": [{"minID": 0, "maxID": 5}]}, "incorrect trunk minID parameter"),
        ({"vlanTrunk": [{"minID": 1, "maxID": 5000}]}, "incorrect trunk maxID parameter"),
        (
            {"hairpinMode": True, "promiscMode": True},
            "cannot set hairpin mode and promiscuous mode at the same time",
        ),
        (
            {"disableContainerInterface": True},
            "cannot use IPAM when DisableContainerInterface flag is set",
        ),
        ({"ipMasq": True, "ipMasqBackend": "bogus"}, 'unknown ipmasq backend "bogus"'),
        (
            {"runtimeConfig": {"mac": "zz"}},
            "failed to make veth pair: address zz: invalid MAC address",
        ),
    ],
)
def test_bad_config_creates_nothing(keys: dict, msg: str, run: bt.Runner, node_ns: Netns, make_pod,
                                    data: Path) -> None:
    """P47, P48, P60, P66 (bogus backend), 72, 74."""
    pod = make_pod()
    err = run.fail("ADD", bt.l3_conf(data, **keys), pod)
    assert err == {"code": 7, "msg": msg, "cniVersion": "1.0.0"} or (err["code"], err["msg"]) == (
        7,
        msg,
    )
    assert sorted(bt.links(node_ns)) == ["lo"]
    assert sorted(bt.links(pod)) == ["lo"]
    assert bt.lease_files(data, "testnet") == []


def test_wrong_json_types(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    pod = make_pod()
    err = run.fail("ADD", bt.l3_conf(data, mtu="1500"), pod)
    assert err["code"] == 6 and "mtu" in err["msg"]
    assert sorted(bt.links(node_ns)) == ["lo"]


def test_invalid_netns(run: bt.Runner, node_ns: Netns, data: Path) -> None:
    """P52; unlike the reference, the bridge this ADD created is removed again."""
    err = run.fail("ADD", bt.l3_conf(data), netns="/run/netns/does-not-exist")
    assert err["msg"] == (
        'failed to open netns "/run/netns/does-not-exist": failed to Statfs '
        '"/run/netns/does-not-exist": no such file or directory'
    )
    assert sorted(bt.links(node_ns)) == ["lo"]


def test_bridge_address_conflict_rolls_back(
    run: bt.Runner, node_ns: Netns, make_pod, data: Path
) -> None:
    """P56 (the reference leaves the pod configured; we remove it) and 57. A port is
    attached (without one ours re-addresses the bridge: test_bridge_readdress.py)."""
    node_ns.ip("link", "add", "testbr0", "type", "bridge")
    node_ns.ip("addr", "add", "10.250.9.1/24", "dev", "testbr0")
    node_ns.ip("link", "add", "oldport0", "type", "veth", "peer", "name", "oldpeer0")
    node_ns.ip("link", "set", "oldport0", "master", "testbr0")
    pod = make_pod()
    conf = bt.l3_conf(data, subnet="10.250.10.0/24", isGateway=True)
    err = run.fail("ADD", conf, pod)
    assert err["msg"].startswith(
        'failed to set bridge addr: "testbr0" already has an IP address different from '
        "10.250.10.1/24; ports still attached: oldport0 (pod address unknown); fix: "
    )
    assert bt.lease_files(data, "testnet") == []
    assert sorted(bt.links(pod)) == ["lo"]
    assert sorted(bt.links(node_ns)) == ["lo", "oldpeer0", "oldport0", "testbr0"]
    run.ok("ADD", dict(conf, forceAddress=True), pod)
    assert bt.addrs(node_ns, "testbr0") == ["10.250.10.1/24"]


def test_two_ipv6_gateways_coexist(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P58."""
    conf = bt.l3_conf(data, subnet=None, isGateway=True,
                      ranges=[[{"subnet": "fd00:1::/64"}], [{"subnet": "fd00:2::/64"}]])
    run.ok("ADD", conf, make_pod())
    assert set(bt.addrs(node_ns, "testbr0")) == {"fd00:1::1/64", "fd00:2::1/64"}


def test_ipam_failure_relayed_and_rolled_back(run: bt.Runner, node_ns: Netns, make_pod,
                                              data: Path) -> None:
    """P108: exhaustion relayed unchanged; we also remove the veth (the reference keeps it)."""
    conf = bt.l3_conf(data, subnet="10.250.15.0/30")
    run.ok("ADD", conf, make_pod(), cid="first")
    pod = make_pod()
    err = run.fail("ADD", conf, pod, cid="second")
    assert err["msg"].startswith(
        "failed to allocate for range 0: no IP addresses available in range set"
    )
    assert sorted(bt.links(pod)) == ["lo"]
    assert len([n for n in bt.links(node_ns) if bt.is_veth_name(n)]) == 1


def test_missing_ipam_plugin(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P76 for DEL; ADD fails cleanly."""
    conf = bt.l3_conf(data)
    conf["ipam"]["type"] = "nosuchipam"
    pod = make_pod()
    assert run.fail("ADD", conf, pod)["msg"].startswith(
        'failed to find plugin "nosuchipam" in path'
    )
    assert sorted(bt.links(pod)) == ["lo"]
    good = bt.l3_conf(data)
    run.ok("ADD", good, pod)
    err = run.fail("DEL", conf, pod)
    assert err["msg"].startswith('failed to find plugin "nosuchipam" in path')
    assert "eth0" not in bt.links(pod)


# =========================================================================== options


def test_macspoofchk(run: bt.Runner, node_ns: Netns, make_pod, data: Path) -> None:
    """P67."""
    pod = make_pod()
    conf = bt.l3_conf(data, macspoofchk=True)
    res = run.ok("ADD", conf, pod)
    veth, mac = res["interfaces"][1]["name"], res["interfaces"][2]["mac"]
    nft = bt.nft_ruleset(node_ns)
    assert f'iifname "{veth}" jump cni-br-iface-ctr1-eth0 comment "macspoofchk-ctr1-eth0"' in nft
    assert "jump cni-br-iface-ctr1-eth0-mac" in nft
    assert f'ether saddr {mac} return comment "macspoofchk-ctr1-eth0"' in nft
    assert "type filter hook prerouting priority dstnat; policy accept;" in nft  # -300
    run.ok("DEL", conf, pod)
    nft = bt.nft_ruleset(node_ns)
    assert "table bridge nat" in nft and "chain PREROUTING" in nft
    assert "cni-br-iface" not in nft


def test_disable_container_interface(run: bt.Runner, make_pod) -> None:
    """P74: L2, the container end stays down."""
    pod = make_pod()
    run.ok("ADD", bt.l2_conf(disableContainerInterface=True), pod)
    assert "UP" not in bt.links(pod)["eth0"]["flags"]


def test_vlan(run: bt.Runner, node_ns: Netns, make_pod) -> None:
    """P71/P73 where the kernel has VLAN filtering; otherwise a clear error and no bridge."""
    pod = make_pod()
    conf = bt.l2_conf(vlan=100)
    if not bt.vlan_filtering_supported():
        err = run.fail("ADD", conf, pod)
        assert err["msg"] == (
            'failed to create bridge "testbr0": could not add "testbr0": operation not supported'
            " (this kernel has no bridge VLAN filtering, needed by vlan/vlanTrunk)"
        )
        assert sorted(bt.links(node_ns)) == ["lo"]
        pytest.skip("kernel has no bridge VLAN filtering: only the error path was tested")
    res = run.ok("ADD", conf, pod)
    veth = res["interfaces"][1]["name"]
    vlans = node_ns.exec("bridge", "-j", "vlan", "show", "dev", veth).stdout
    assert '"vlan":100' in vlans.replace(" ", "")


# =========================================================================== concurrency


def _concurrency() -> int:
    import os

    return int(os.environ.get("BRIDGE_CONCURRENCY", "8"))


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_concurrent_adds_and_dels(backend: str, run: bt.Runner, node_ns: Netns, make_pod,
                                  data: Path) -> None:
    """N pods attached at once to a bridge that does not exist yet, then detached at once:
    every ADD succeeds with a distinct address, the firewall holds exactly N attachments, and
    after the DELs only the bridge is left. N = BRIDGE_CONCURRENCY (default 8)."""
    from concurrent.futures import ThreadPoolExecutor

    n = _concurrency()
    conf = bt.l3_conf(data, subnet="10.250.0.0/16", isGateway=True, ipMasq=True,
                      ipMasqBackend=backend)
    pods = [make_pod() for _ in range(n)]
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: run("ADD", conf, pods[i], cid=f"c{i}"), range(n)))
    assert [r.returncode for r in results] == [0] * n, [r.stdout for r in results if r.returncode]
    ips = {r.result["ips"][0]["address"] for r in results}
    assert len(ips) == n
    host = bt.links(node_ns)
    assert sum(1 for lk in host.values() if lk.get("master") == "testbr0") == n
    assert bt.addrs(node_ns, "testbr0") == ["10.250.0.1/16"]
    if backend == "iptables":
        assert len([r for r in bt.nat_rules(node_ns) if r.startswith("-A POSTROUTING")]) == n
        assert len([r for r in bt.nat_rules(node_ns) if r.startswith(":CNI-")]) == n
    else:
        assert bt.nft_ruleset(node_ns).count(" masquerade comment ") == n
    first, last = (r.result["ips"][0]["address"].split("/")[0] for r in (results[0], results[-1]))
    assert bt.ping(pods[0], last) and bt.ping(pods[-1], first)
    with ThreadPoolExecutor(n) as pool:
        dels = list(pool.map(lambda i: run("DEL", conf, pods[i], cid=f"c{i}"), range(n)))
    assert [r.returncode for r in dels] == [0] * n, [r.stdout for r in dels if r.returncode]
    assert sorted(bt.links(node_ns)) == ["lo", "testbr0"]
    assert bt.nat_rules(node_ns) == []
    assert " masquerade comment " not in bt.nft_ruleset(node_ns)
    assert bt.lease_files(data, "testnet") == []


# =========================================================================== shared plumbing


def test_link_plumbing_move_rename_routes(node_ns: Netns, make_pod) -> None:
    """plugins/linux/link.py pieces portmap/flannel share: move+rename into a pod, addresses,
    Go-style route add (IPv6 same-dst routes become ECMP, an identical IPv4 route is EEXIST)."""
    import ipaddress
    import os

    from cni.netns import in_netns
    from plugins.linux import link, netlink, rtnl
    from plugins.linux.addr import add_address
    from plugins.linux.routes import Route, add_route, list_routes

    pod = make_pod()
    node_ns.ip("link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
    host = rtnl.iproute_in(node_ns.path)
    p = rtnl.iproute_in(pod.path)
    try:
        with in_netns(pod.path):
            pod_fd = link.current_netns_fd()
        try:
            link.move_to_netns(host, link.get_link(host, "mv0").index, pod_fd, "net1")
        finally:
            os.close(pod_fd)
        assert link.get_link(host, "mv0") is None
        moved = link.get_link(p, "net1")
        assert moved is not None and moved.kind == "veth"
        link.rename(p, moved.index, "net2")
        assert link.get_link(p, "net2").index == moved.index
        add_address(p, moved.index, ipaddress.ip_interface("10.9.0.2/24"))
        add_address(p, moved.index, ipaddress.ip_interface("fd09::2/64"))
        link.set_up(p, moved.index)
        link.set_up(host, link.get_link(host, "mv1").index)
        assert bt.addrs(pod, "net2") == ["10.9.0.2/24", "fd09::2/64"]
        assert "brd 10.9.0.255" in pod.ip("addr", "show", "net2").stdout
        v4 = Route(ipaddress.ip_network("10.77.0.0/16"), ipaddress.ip_address("10.9.0.1"))
        add_route(p, moved.index, v4)
        with pytest.raises(netlink.netlink_error()) as e:
            add_route(p, moved.index, v4)
        assert netlink.errno_text(e.value) == "file exists"
        for gw in ("fd09::1", "fd09::3"):
            add_route(p, moved.index, Route(ipaddress.ip_network("fd77::/64"),
                                                      ipaddress.ip_address(gw)))
        six = [r for r in list_routes(p, netlink.AF_INET6) if str(r.dst) == "fd77::/64"]
        assert sorted(str(r.gw) for r in six) == ["fd09::1", "fd09::3"]
        assert "10.77.0.0/16 via 10.9.0.1 dev net2" in bt.routes(pod)  # proto boot: not printed
    finally:
        host.close()
        p.close()


def test_gateway_of_the_other_family_is_a_clean_error(node_ns, make_pod, tmp_path):
    """An IPv4 `gateway` on an IPv6 range (host-local passes it through, as upstream 3d27709f does)
    is a code-7 error naming both, with nothing left behind; it was an untyped crash (fuzz
    finding)."""
    import os

    from conformance.harness import run_plugin

    exe = str(bt.OURS)
    pod = make_pod()
    conf = {"cniVersion": "1.0.0", "name": "gwfam", "type": "bridge", "bridge": "gwfam0",
            "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "fd77::/120", "gateway": "10.77.0.1",
                     "dataDir": str(tmp_path / "networks")}}
    r = run_plugin(exe, "ADD", conf, containerid="gw1", netns=pod.path, in_netns=node_ns)
    assert r.returncode == 1 and r.result["code"] == 7, r.stdout
    assert r.result["msg"] == "gateway 10.77.0.1 is not of the address family of fd77::1/120"
    assert "Traceback" not in r.stderr
    assert "eth0" not in pod.ip("-o", "link").stdout
    leases = tmp_path / "networks" / "gwfam"
    assert not leases.exists() or not [p for p in os.listdir(leases) if ":" in p]
    assert (
        run_plugin(exe, "DEL", conf, containerid="gw1", netns=pod.path, in_netns=node_ns).returncode
        == 0
    )
