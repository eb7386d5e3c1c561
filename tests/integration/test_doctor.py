"""`cnitool doctor`: every check id against a broken state built in a throwaway node namespace,
a healthy demo node, `--fix` then `doctor`, exit codes and output shapes.

Integration tests: real namespaces, veths, bridges, iptables and nft; pods attached by the
built dist/bin/cnitool. Kernel-global state (br_netfilter loaded or not) is never changed: it is
injected through the doctor's /proc root parameter; per-namespace sysctls are set for real inside
the node namespace.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from conformance import harness
from tests.doctor_testlib import (
    ALL_IDS,
    DIST,
    NETWORK,
    SUBNET_ENV,
    DoctorNode,
    fake_proc,
    tree_digest,
)

pytestmark = pytest.mark.netns



@pytest.fixture(scope="module", autouse=True)
def _built():
    if not os.access(DIST / "cnitool", os.X_OK):
        pytest.skip("dist/bin lacks cnitool (run `make build`)")


@pytest.fixture
def dn(node_ns, make_pod, state_dir) -> DoctorNode:
    return DoctorNode(node_ns, make_pod, state_dir)


def _status(checks) -> dict[str, str]:
    return {k: v["status"] for k, v in checks.items()}


def _bridge_conf(dn, name: str, subnet: str, bridge: str = "cni0") -> dict:
    """A plain bridge + host-local conflist (another runtime's, or a second network)."""
    return {
        "name": name, "cniVersion": "1.0.0",
        "plugins": [{"type": "bridge", "bridge": bridge, "ipam": {
            "type": "host-local", "dataDir": str(dn.state.networks),
            "ranges": [[{"subnet": subnet}]]}}],
    }


def _not_ok(checks) -> dict[str, str]:
    return {k: v["status"] for k, v in checks.items() if v["status"] != "ok"}


# --------------------------------------------------------------------------- the healthy node


def test_healthy_demo_node_is_all_ok(dn):
    dn.add_pod("pod-a", host_port=8080)
    dn.add_pod("pod-b")
    rc, checks, doc = dn.doctor()
    assert list(checks) == ALL_IDS
    assert _not_ok(checks) == {}, json.dumps(doc, indent=1)
    assert rc == 0
    assert doc["summary"] == {"ok": len(ALL_IDS), "warn": 0, "fail": 0}
    for c in doc["checks"]:
        assert set(c) == {"id", "status", "message", "fix", "objects"}
        assert c["fix"] is None and c["message"]
    assert "2 held" in checks["ipam.leases"]["message"]
    assert "cni0 has 10.244.1.1/24" in checks["flannel.bridge-addr"]["message"]
    # the built executable prints the same, as text: one line per check and a summary
    proc = dn.doctor_exe()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[1] for ln in lines[:-1]] == ALL_IDS
    assert all(ln.startswith("ok   ") for ln in lines[:-1])
    assert lines[-1] == f"{len(ALL_IDS)} ok, 0 warn, 0 fail"


def test_not_applicable_checks_say_ok_with_the_reason(dn):
    os.unlink(dn.state.netconf / "10-flannel.conflist")
    dn.write_conf("10-bridge.conflist", _bridge_conf(dn, "plain", "10.99.0.0/24", "br9"))
    dn.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    rc, checks, _ = dn.doctor()
    assert rc == 0 and _not_ok(checks) == {}
    for cid in ("flannel.subnet-env", "flannel.bridge-addr", "flannel.mtu", "flannel.saved"):
        assert "not applicable" in checks[cid]["message"]
    assert "not applicable" in checks["overlay.vxlan"]["message"]


# --------------------------------------------------------------------------- conf.*


def test_conf_parse_names_a_truncated_file_with_its_offset(dn):
    text = '{"name": "broken", "cniVersion": "1.0.0", "plugins": [{"type": "bridge"'
    dn.write_conf("20-broken.conflist", text)
    rc, checks, _ = dn.doctor()
    c = checks["conf.parse"]
    assert (rc, c["status"]) == (1, "fail")
    assert str(dn.state.netconf / "20-broken.conflist") in c["message"]
    assert re.search(r"\(char \d+\)|at byte \d+", c["message"]), c["message"]
    assert checks["conf.winner"]["status"] == "ok"  # the flannel file still sorts first


def test_conf_parse_and_winner_fail_without_any_configuration(dn):
    os.unlink(dn.state.netconf / "10-flannel.conflist")
    rc, checks, _ = dn.doctor()
    assert rc == 1
    assert (
        checks["conf.parse"]["status"] == "fail"
        and "no network configuration" in checks["conf.parse"]["message"]
    )
    assert checks["conf.winner"]["status"] == "fail"


def test_conf_winner_warns_when_another_bridge_config_sorts_first(dn):
    dn.write_conf("05-containerd-net.conflist", _bridge_conf(dn, "containerd-net", "10.88.0.0/16"))
    rc, checks, _ = dn.doctor()
    c = checks["conf.winner"]
    assert c["status"] == "warn", c
    assert "containerd-net" in c["message"] and "10.88.0.0/16" in c["message"]
    assert "bridge cni0 is used with different subnets" in c["message"]
    assert "05-containerd-net.conflist" in c["fix"]


def test_conf_winner_warns_on_one_bridge_with_two_subnets(dn):
    dn.write_conf("20-second.conflist", _bridge_conf(dn, "second", "10.99.0.0/24"))
    _, checks, _ = dn.doctor()
    c = checks["conf.winner"]
    assert c["status"] == "warn" and "bridge cni0 is used with different subnets" in c["message"]
    assert 'network "cbr0"' in c["message"]  # the flannel file still wins


def test_conf_plugins_fails_for_a_missing_chained_plugin(dn, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("flannel", "bridge", "host-local"):
        os.symlink(DIST / name, bindir / name)
    dn.cni_path = str(bindir)
    rc, checks, _ = dn.doctor()
    c = checks["conf.plugins"]
    assert (rc, c["status"]) == (1, "fail")
    assert 'plugin "portmap" of network "cbr0"' in c["message"] and str(bindir) in c["message"]
    assert c["objects"] == ["portmap"]


def test_conf_plugins_fails_for_an_unsupported_cni_version(dn):
    conf = json.loads((dn.state.netconf / "10-flannel.conflist").read_text())
    conf["cniVersion"] = "0.9.9"
    dn.write_conf("10-flannel.conflist", conf)
    _, checks, _ = dn.doctor()
    c = checks["conf.plugins"]
    assert c["status"] == "fail" and "does not support cniVersion 0.9.9" in c["message"]


# --------------------------------------------------------------------------- flannel.*


def test_subnet_env_missing_names_flanneld_and_the_conflist(dn):
    dn.state.subnet_env.unlink()
    rc, checks, _ = dn.doctor()
    c = checks["flannel.subnet-env"]
    assert (rc, c["status"]) == (1, "fail")
    assert str(dn.state.subnet_env) in c["message"] and "flanneld" in c["fix"]
    assert "10-flannel.conflist" in c["fix"]


@pytest.mark.parametrize("text, words", [
    (SUBNET_ENV.replace("FLANNEL_MTU=1450\n", ""), "missing FLANNEL_MTU"),
    (SUBNET_ENV.replace("10.244.1.1/24", "10.245.1.1/24"), "not inside"),
])  # fmt: skip
def test_subnet_env_missing_key_or_subnet_outside_network(dn, text, words):
    dn.state.subnet_env.write_text(text)
    _, checks, _ = dn.doctor()
    c = checks["flannel.subnet-env"]
    assert c["status"] == "fail" and words in c["message"], c


def test_bridge_addr_wrong_without_pods_is_re_addressed_by_fix(dn):
    dn.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    dn.sh("ip", "link", "add", "cni0", "type", "bridge")  # left by an earlier join: 10.244.2.0/24
    dn.sh("ip", "addr", "add", "10.244.2.1/24", "dev", "cni0")
    dn.sh("ip", "link", "set", "cni0", "up")
    rc, checks, _ = dn.doctor()
    c = checks["flannel.bridge-addr"]
    assert (rc, c["status"]) == (1, "fail")
    assert "cni0 has 10.244.2.1/24, not the FLANNEL_SUBNET gateway 10.244.1.1/24" in c["message"]
    assert "no pod is attached" in c["message"] and "cnitool doctor --fix" in c["fix"]
    rc, checks, doc = dn.doctor("--fix")
    assert (rc, _not_ok(checks)) == (0, {}), doc
    assert any("10.244.1.1/24" in a for a in doc["actions"]), doc["actions"]
    addrs = dn.sh("ip", "-o", "-4", "addr", "show", "cni0").stdout
    assert "10.244.1.1/24" in addrs and "10.244.2.1" not in addrs
    dn.add_pod("pod-a")  # and the next pod gets an address of the new subnet
    assert dn.doctor()[0] == 0


def test_bridge_addr_with_pods_attached_names_them_and_is_not_fixed(dn):
    pod = dn.add_pod("pod-a")
    dn.state.subnet_env.write_text(SUBNET_ENV.replace("10.244.1.1/24", "10.244.2.1/24"))
    rc, checks, _ = dn.doctor()
    c = checks["flannel.bridge-addr"]
    assert (rc, c["status"]) == (1, "fail")
    assert "10.244.1.1/24" in c["message"] and "10.244.2.1/24" in c["message"]
    assert "pods still attached: veth" in c["message"] and "drain" in c["fix"]
    rc, checks, _ = dn.doctor("--fix")
    assert checks["flannel.bridge-addr"]["status"] == "fail"
    assert "10.244.1.1/24" in dn.sh("ip", "-o", "addr", "show", "cni0").stdout
    assert "eth0" in harness.ns_ip(pod, "-o", "link").stdout


def test_mtu_mismatch_names_the_pod(dn):
    dn.add_pod("pod-a")
    dn.state.subnet_env.write_text(SUBNET_ENV.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=1400"))
    _, checks, _ = dn.doctor()
    c = checks["flannel.mtu"]
    assert c["status"] == "warn", c
    assert "FLANNEL_MTU is 1400" in c["message"] and "has MTU 1450" in c["message"]
    assert "(pod cnitool-" in c["message"]


def test_dead_pod_leftovers_are_found_and_fixed_without_touching_the_live_pod(dn):
    dn.add_pod("pod-a", host_port=8080)
    live = dn.add_pod("pod-b", host_port=9090)
    dn.kill_pod("pod-a")
    rc, checks, _ = dn.doctor()
    assert rc == 0
    assert _not_ok(checks) == {
        "flannel.saved": "warn",
        "ipam.leases": "warn",
        "portmap.stale": "warn",
    }
    assert (
        "namespace" in checks["flannel.saved"]["message"]
        and "gone" in checks["flannel.saved"]["message"]
    )
    assert "1 provably dead" in checks["ipam.leases"]["message"]
    assert (
        "hostPort rules of containers whose namespace is gone: cnitool-"
        in checks["portmap.stale"]["message"]
    )
    for cid in ("flannel.saved", "ipam.leases", "portmap.stale"):
        assert "cnitool doctor --fix" in checks[cid]["fix"]
    rc, checks, doc = dn.doctor("--fix")
    assert rc == 0 and _not_ok(checks) == {}, json.dumps(doc, indent=1)
    assert any("DEL of network" in a for a in doc["actions"])
    # the live pod keeps its lease, its saved configuration, its rules and its interface
    assert len([n for n in os.listdir(dn.state.networks / NETWORK) if n.startswith("10.")]) == 1
    assert len(os.listdir(dn.state.flannel)) == 1
    assert "dport 9090" in dn.sh("iptables-save", "-t", "nat").stdout
    assert "dport 8080" not in dn.sh("iptables-save", "-t", "nat").stdout
    assert "eth0" in harness.ns_ip(live, "-o", "link").stdout
    # idempotent: a second --fix has nothing to do
    proc = dn.doctor_exe("--fix")
    assert proc.returncode == 0
    assert proc.stdout.startswith("--fix: nothing to repair that is provably safe\n")


@pytest.mark.parametrize("ipmasq", [False, True])
def test_leases_and_rules_proven_dead_by_the_lease_record_alone(dn, ipmasq):
    if ipmasq:  # the bridge masquerades (FLANNEL_IPMASQ=true would leave it to flanneld)
        conf = json.loads((dn.state.netconf / "10-flannel.conflist").read_text())
        conf["plugins"][0]["delegate"]["ipMasq"] = True
        dn.write_conf("10-flannel.conflist", conf)
    dn.add_pod("pod-a", host_port=8080)
    dn.kill_pod("pod-a")
    for d in (dn.state.cache / "results", dn.state.flannel):  # a runtime that lost its state
        for name in os.listdir(d):
            os.unlink(d / name)
    _, checks, _ = dn.doctor()
    assert _not_ok(checks) == {"ipam.leases": "warn", "portmap.stale": "warn"}
    assert "namespace gone" in checks["ipam.leases"]["message"]
    assert (
        "masquerade rules of containers whose namespace is gone"
        in checks["portmap.stale"]["message"]
    ) == ipmasq
    rc, checks, doc = dn.doctor("--fix")
    assert _not_ok(checks) == {}, doc["actions"]
    assert any(a.startswith("freed lease 10.244.1.") for a in doc["actions"])
    nat = dn.sh("iptables-save", "-t", "nat").stdout
    assert "dport 8080" not in nat and 'name: \\"cbr0\\" id:' not in nat
    assert any(a.startswith("removed the masquerade rules") for a in doc["actions"]) == ipmasq


def test_reference_leases_without_a_record_are_never_freed(dn):
    netdir = dn.state.networks / NETWORK
    netdir.mkdir(parents=True)
    (netdir / "10.244.1.7").write_bytes(b"gone-container\r\neth0")
    _, checks, _ = dn.doctor("--fix")
    assert checks["ipam.leases"]["status"] == "ok"
    assert "1 without proof either way" in checks["ipam.leases"]["message"]
    assert (netdir / "10.244.1.7").exists()


def test_leases_of_any_host_local_network_are_counted(dn):
    dn.write_conf("20-macvlan.conflist", {
        "name": "mv", "cniVersion": "1.0.0",
        "plugins": [{"type": "macvlan", "master": "eth0", "ipam": {
            "type": "host-local", "dataDir": str(dn.state.networks),
            "ranges": [[{"subnet": "10.77.0.0/24"}]]}}],
    })
    (dn.state.networks / "mv").mkdir()
    (dn.state.networks / "mv" / "10.77.0.9").write_bytes(b"someone\r\neth0")
    _, checks, _ = dn.doctor()
    assert 'network "mv"' in checks["ipam.leases"]["message"]
    assert (
        '"mv" range set 0 (10.77.0.1-10.77.0.254): 1 of 253 used'
        in checks["ipam.exhaustion"]["message"]
    )


def test_leases_fail_for_a_host_local_configuration_that_does_not_load(dn):
    dn.write_conf("30-bad.conflist", _bridge_conf(dn, "bad", "300.1.1.0/24", "br9"))
    rc, checks, _ = dn.doctor()
    c = checks["ipam.leases"]
    assert (rc, c["status"]) == (1, "fail")
    assert 'network "bad"' in c["message"] and "300.1.1.0/24" in c["message"], c


@pytest.mark.parametrize("count, status", [(12, "warn"), (13, "fail")])
def test_exhaustion(dn, count, status):
    dn.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    dn.state.subnet_env.write_text(SUBNET_ENV.replace("10.244.1.1/24", "10.244.1.1/28"))
    netdir = dn.state.networks / NETWORK
    netdir.mkdir(parents=True)
    for i in range(count):
        (netdir / f"10.244.1.{2 + i}").write_bytes(f"ctr{i}\r\neth0".encode())
    rc, checks, _ = dn.doctor()
    c = checks["ipam.exhaustion"]
    assert c["status"] == status, c
    assert f"{count} of 13 used" in c["message"]
    assert rc == (1 if status == "fail" else 0)


# --------------------------------------------------------------------------- kernel.*


def test_ip_forward_off_fails_per_namespace(dn):
    rc, checks, _ = dn.doctor()  # a fresh namespace forwards nothing
    c = checks["kernel.ip-forward"]
    assert (rc, c["status"]) == (1, "fail")
    assert "net.ipv4.ip_forward=0" in c["message"] and "sysctl -w net.ipv4.ip_forward=1" in c["fix"]
    dn.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    _, checks, _ = dn.doctor()
    assert checks["kernel.ip-forward"]["status"] == "ok"


def test_br_netfilter_off_for_cni0(dn):
    dn.add_pod("pod-a")
    dn.sh("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")  # this namespace only
    _, checks, _ = dn.doctor()
    c = checks["kernel.br-netfilter"]
    assert c["status"] == "warn", c
    assert "bridge-nf-call-iptables=0" in c["message"] and "cni0 nf_call_iptables=0" in c["message"]
    dn.sh("ip", "link", "set", "cni0", "type", "bridge", "nf_call_iptables", "1")
    _, checks, _ = dn.doctor()
    assert checks["kernel.br-netfilter"]["status"] == "ok"


def test_br_netfilter_not_loaded_through_the_proc_seam(dn, tmp_path):
    dn.add_pod("pod-a")
    _, checks, _ = dn.doctor(proc_root=fake_proc(tmp_path / "proc", br_netfilter=False))
    c = checks["kernel.br-netfilter"]
    assert c["status"] == "warn" and "br_netfilter is not loaded" in c["message"]
    assert "modprobe br_netfilter" in c["fix"]
    _, checks, _ = dn.doctor(proc_root=fake_proc(tmp_path / "proc2"))
    assert checks["kernel.br-netfilter"]["status"] == "ok"
    assert checks["kernel.ip-forward"]["status"] == "ok"


# --------------------------------------------------------------------------- netfilter.*


def test_forward_policy_drop_without_an_accept_rule(dn):
    dn.add_pod("pod-a")
    dn.sh("iptables", "-P", "FORWARD", "DROP")
    rc, checks, _ = dn.doctor()
    c = checks["netfilter.forward"]
    assert (rc, c["status"]) == (1, "fail")
    assert "FORWARD policy is DROP" in c["message"] and "10.244.0.0/16" in c["fix"]
    dn.sh("iptables", "-N", "FLANNEL-FWD")
    dn.sh("iptables", "-A", "FLANNEL-FWD", "-s", "10.244.0.0/16", "-j", "ACCEPT")
    dn.sh("iptables", "-A", "FORWARD", "-j", "FLANNEL-FWD")
    _, checks, _ = dn.doctor()
    assert checks["netfilter.forward"]["status"] == "ok"
    assert "FLANNEL-FWD" in checks["netfilter.forward"]["message"]


def test_forward_policy_drop_in_a_native_nftables_chain(dn):
    dn.add_pod("pod-a")
    dn.sh("nft", "add table inet fw; add chain inet fw forward "
          "{ type filter hook forward priority 0 ; policy drop ; }")
    rc, checks, _ = dn.doctor()
    c = checks["netfilter.forward"]
    assert (rc, c["status"]) == (1, "fail")
    assert "nft chain inet fw forward has policy drop" in c["message"], c
    dn.sh("nft", "add rule inet fw forward ip saddr 10.244.0.0/16 accept")
    _, checks, _ = dn.doctor()
    assert checks["netfilter.forward"]["status"] == "ok", checks["netfilter.forward"]


def test_backend_warns_on_cni_chains_in_legacy_and_nf_tables(dn):
    dn.add_pod("pod-a", host_port=8080)  # CNI chains in nf_tables (iptables-nft)
    _, checks, _ = dn.doctor()
    assert checks["netfilter.backend"]["status"] == "ok"
    assert "the plugins use iptables" in checks["netfilter.backend"]["message"]
    dn.sh("iptables-legacy", "-t", "nat", "-N", "CNI-HOSTPORT-DNAT")  # this namespace only
    _, checks, _ = dn.doctor()
    c = checks["netfilter.backend"]
    assert c["status"] == "warn", c
    assert "legacy nat CNI-HOSTPORT-DNAT" in c["message"]


# --------------------------------------------------------------------------- portmap.stale


def test_nftables_hostport_rules_of_a_gone_pod_and_a_port_mapped_twice(dn):
    conf = json.loads((dn.state.netconf / "10-flannel.conflist").read_text())
    conf["plugins"][1]["backend"] = "nftables"
    dn.write_conf("10-flannel.conflist", conf)
    dn.add_pod("pod-a", host_port=8080)
    dn.add_pod("pod-b", host_port=8080)
    _, checks, _ = dn.doctor()
    c = checks["portmap.stale"]
    assert (
        c["status"] == "warn" and "hostPort *:8080/tcp is mapped by 2 containers" in c["message"]
    ), c
    dn.kill_pod("pod-a")
    for d in (dn.state.cache / "results", dn.state.flannel):  # only the lease record is left
        for name in os.listdir(d):
            os.unlink(d / name)
    _, checks, _ = dn.doctor()
    c = checks["portmap.stale"]
    assert "(nftables, lease 10.244.1." in c["message"] and "namespace gone" in c["message"], c
    rc, checks, doc = dn.doctor("--fix")
    assert _not_ok(checks) == {}, doc["actions"]
    rules = dn.sh("nft", "list", "table", "ip", "cni_hostport").stdout
    assert rules.count("dport 8080") == 1  # pod-b's rule stays


def test_hostport_mapped_twice(dn):
    dn.add_pod("pod-a", host_port=8080)
    dn.add_pod("pod-b", host_port=8080)
    _, checks, _ = dn.doctor()
    c = checks["portmap.stale"]
    assert c["status"] == "warn", c
    assert "hostPort *:8080/tcp is mapped by 2 containers" in c["message"]
    assert c["objects"] == ["tcp/8080"]


# --------------------------------------------------------------------------- overlay.vxlan


def _underlay(dn, mtu: int = 1500) -> None:
    dn.sh("ip", "link", "add", "eth0", "mtu", str(mtu), "type", "veth", "peer", "name", "eth0-peer")
    dn.sh("ip", "link", "set", "eth0", "up")
    dn.sh("ip", "addr", "add", "192.168.77.2/24", "dev", "eth0")


def test_vxlan_mtu_above_the_underlay_minus_50(dn):
    _underlay(dn)
    dn.sh("ip", "link", "add", "flannel.1", "mtu", "1450", "type", "vxlan", "id", "1",
          "local", "192.168.77.2", "dev", "eth0", "dstport", "8472", "nolearning")
    dn.sh("ip", "link", "set", "eth0", "mtu", "1400")  # the underlay's MTU changed afterwards
    _, checks, _ = dn.doctor()
    c = checks["overlay.vxlan"]
    assert c["status"] == "warn" and "MTU 1450 is above eth0's 1400 minus 50" in c["message"], c
    dn.sh("ip", "link", "set", "flannel.1", "mtu", "1350")
    _, checks, _ = dn.doctor()
    assert checks["overlay.vxlan"]["status"] == "ok", checks["overlay.vxlan"]


def test_vxlan_peer_without_fdb_entry_and_rx_zero(dn):
    _underlay(dn)
    dn.sh("ip", "link", "add", "flannel.1", "mtu", "1450", "type", "vxlan", "id", "1",
          "local", "192.168.77.2", "dev", "eth0", "dstport", "8472", "nolearning")
    dn.sh("ip", "link", "set", "flannel.1", "up")
    dn.sh("ip", "addr", "add", "10.244.1.0/32", "dev", "flannel.1")
    dn.sh("ip", "neigh", "add", "10.244.2.0", "lladdr", "02:11:22:33:44:55", "dev", "flannel.1",
          "nud", "permanent")
    _, checks, _ = dn.doctor()
    c = checks["overlay.vxlan"]
    assert c["status"] == "warn" and "without an FDB entry" in c["message"], c
    dn.sh("bridge", "fdb", "append", "02:11:22:33:44:55", "dev", "flannel.1", "dst", "192.168.77.3",
          "self", "permanent")
    _, checks, _ = dn.doctor()
    assert checks["overlay.vxlan"]["status"] == "ok", checks["overlay.vxlan"]
    dn.sh("ip", "route", "add", "10.244.2.0/24", "via", "10.244.2.0", "dev", "flannel.1", "onlink")
    harness.ns_exec(dn.node, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.244.2.5", check=False)
    _, checks, _ = dn.doctor()
    c = checks["overlay.vxlan"]
    assert c["status"] == "warn" and "UDP 8472 is probably blocked" in c["message"], c


# --------------------------------------------------------------------------- the command


def test_exit_codes_and_usage_errors(dn):
    assert dn.doctor_exe("--bogus").returncode == 2
    proc = dn.doctor_exe("--network", "nope")
    assert proc.returncode == 2 and 'no network configuration named "nope"' in proc.stderr
    assert dn.doctor_exe("--help").returncode == 0
    dn.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    assert dn.doctor_exe("--network", NETWORK).returncode == 0
    dn.sh("sysctl", "-qw", "net.ipv4.ip_forward=0")
    proc = dn.doctor_exe()
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("FAIL kernel.ip-forward"))
    assert lines[i + 1].startswith("     fix: sysctl -w net.ipv4.ip_forward=1")
    proc = dn.doctor_exe("--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["summary"]["fail"] == 1
    assert {c["id"]: c["status"] for c in doc["checks"]}["kernel.ip-forward"] == "fail"


def _snapshot(dn) -> dict[str, str]:
    """The node's kernel state without what ticks by itself (bridge timers, address lifetimes)."""
    snap = harness.snapshot_ns(dn.node)
    return {k: re.sub(r"(_timer|_lft) +\S+", r"\1", v) for k, v in snap.items()}


def test_network_option_limits_the_checks_to_that_network(dn):
    dn.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    dn.write_conf("20-second.conflist", _bridge_conf(dn, "second", "10.99.0.0/24", "br9"))
    dn.state.subnet_env.unlink()  # the flannel network is broken, "second" is not
    assert dn.doctor()[1]["flannel.subnet-env"]["status"] == "fail"
    rc, checks, _ = dn.doctor("--network", "second")
    assert (rc, _not_ok(checks)) == (0, {})
    assert "not applicable" in checks["flannel.subnet-env"]["message"]
    assert 'network "second"' in checks["ipam.leases"]["message"]
    assert "--network second is not the one a runtime picks" in checks["conf.winner"]["message"]


def test_doctor_without_fix_changes_nothing(dn):
    dn.add_pod("pod-a", host_port=8080)
    dn.add_pod("pod-b")
    dn.kill_pod("pod-a")
    dn.state.subnet_env.write_text(SUBNET_ENV.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=1400"))
    time.sleep(2.5)  # let IPv6 duplicate address detection of the new links finish
    before = (_snapshot(dn), tree_digest(dn.state.root))
    assert dn.doctor_exe().returncode == 0
    dn.doctor()
    after = (_snapshot(dn), tree_digest(dn.state.root))
    diff = harness.snapshot_diff(before[0], after[0])
    assert diff == {}, "\n".join(diff.values())
    assert before[1] == after[1]
