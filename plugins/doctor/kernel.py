"""Kernel settings pod traffic needs: kernel.ip-forward, kernel.br-netfilter.

Read only: sysctls under `<proc_root>/sys` (per network namespace for net.*), the bridge's own
nf_call_iptables flags over netlink. Nothing here loads a module or writes a sysctl; the fixes
are printed for the operator.
"""

from __future__ import annotations

from typing import Any

from plugins.doctor.node import Node
from plugins.doctor.report import FAIL, WARN, Check, ok

_FORWARD = {4: "net/ipv4/ip_forward", 6: "net/ipv6/conf/all/forwarding"}
_NF_CALL = {4: "bridge-nf-call-iptables", 6: "bridge-nf-call-ip6tables"}
_BR_ATTR = {4: "IFLA_BR_NF_CALL_IPTABLES", 6: "IFLA_BR_NF_CALL_IP6TABLES"}


def families(node: Node) -> list[int]:
    """The address families the networks hand out (4, 6)."""
    out: set[int] = set()
    for net in node.networks:
        if net.ipam is not None:
            out |= {4 if rs.bits == 32 else 6 for rs in net.ipam.range_sets}
        elif net.subnet_env is not None:
            if net.subnet_env.subnet:
                out.add(4)
            if net.subnet_env.ip6_subnet:
                out.add(6)
    return sorted(out)


def check_ip_forward(node: Node) -> Check:
    """Forwarding is on in this namespace for each family the networks use."""
    fams = families(node)
    if not fams:
        return ok("kernel.ip-forward", "no network with known address ranges: not applicable")
    off, on = [], []
    for fam in fams:
        name = "net.ipv4.ip_forward" if fam == 4 else "net.ipv6.conf.all.forwarding"
        value = node.proc("sys/" + _FORWARD[fam])
        shown = value if value is not None else "unreadable"
        (on if value == "1" else off).append(f"{name}={shown}")
    if off:
        settings = " ".join(s.split("=")[0] + "=1" for s in off)
        return Check(
            "kernel.ip-forward", FAIL,
            f"{', '.join(off)} in this network namespace: pod traffic to other nodes and the "
            "outside is dropped",
            f"sysctl -w {settings}, and keep it in /etc/sysctl.d/99-kubernetes.conf",
            [s.split("=")[0] for s in off],
        )
    return ok("kernel.ip-forward", f"{', '.join(on)} in this network namespace")


def _bridge_flags(node: Node, bridge: str) -> dict[int, int | None]:
    """The bridge's own nf_call_iptables / ip6tables flags (None when unreadable)."""
    out: dict[int, int | None] = {4: None, 6: None}
    link = node.links.get(bridge)
    if link is None:
        return out
    try:
        msgs: Any = node.ipr.link("get", index=link.index)
        for msg in msgs:
            data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
            for fam in (4, 6):
                out[fam] = data.get_attr(_BR_ATTR[fam]) if data is not None else None
    except Exception:  # noqa: BLE001 - a flag we cannot read counts as unknown
        pass
    return out


def check_br_netfilter(node: Node) -> Check:
    """br_netfilter is loaded and bridged pod traffic passes iptables (the namespace's
    bridge-nf-call-iptables sysctl, or cni0's own nf_call_iptables flag)."""
    bridges = sorted({n.bridge for n in node.networks if n.bridge})
    if not bridges:
        return ok("kernel.br-netfilter", "no bridge network: not applicable")
    fams = families(node) or [4]
    if node.proc("sys/net/bridge/" + _NF_CALL[4]) is None:
        return Check(
            "kernel.br-netfilter", WARN,
            f"br_netfilter is not loaded: traffic between pods on {', '.join(bridges)} bypasses "
            "iptables, so Service and DNS traffic between pods of this node fails",
            "modprobe br_netfilter, and list it in /etc/modules-load.d/br_netfilter.conf",
            ["br_netfilter"],
        )
    off, on = [], []
    for bridge in bridges:
        flags = _bridge_flags(node, bridge) if bridge in node.links else {4: None, 6: None}
        for fam in fams:
            sysctl = node.proc("sys/net/bridge/" + _NF_CALL[fam])
            name = "net.bridge." + _NF_CALL[fam]
            flag = flags.get(fam)
            knob = f"{bridge} nf_call_{'ip6' if fam == 6 else 'ip'}tables"
            if sysctl == "1" or flag == 1:
                on.append(f"{name}={sysctl}" + (f", {knob}={flag}" if flag is not None else ""))
            else:
                off.append(f"{name}={sysctl} and {knob}={flag if flag is not None else 'n/a'}")
    if off:
        return Check(
            "kernel.br-netfilter", WARN,
            f"br_netfilter is loaded, but {'; '.join(off)}: bridged pod traffic bypasses iptables "
            "(Service and DNS traffic between pods of this node fails)",
            "sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1, "
            "and keep them in /etc/sysctl.d/99-kubernetes.conf",
            bridges,
        )
    return ok("kernel.br-netfilter", f"br_netfilter is loaded; {'; '.join(dict.fromkeys(on))}")


CHECKS = [check_ip_forward, check_br_netfilter]
