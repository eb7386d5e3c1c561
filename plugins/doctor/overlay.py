"""overlay.vxlan: flannel.1's MTU against its underlay, its counters, and its peers' FDB entries.

Read only (`ip -d -s -j link`, `ip -j neigh`, `bridge -j fdb`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from plugins.doctor.node import Node
from plugins.doctor.report import WARN, Check, ok

VXLAN = "flannel.1"
VXLAN_OVERHEAD = 50


def _json(node: Node, argv: list[str]) -> Any:
    exe = shutil.which(argv[0], path=node.env.get("PATH"))
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    except (OSError, ValueError):
        return None


def _underlay(node: Node, info: dict[str, Any]) -> tuple[str, int] | None:
    """(name, MTU) of the link flannel.1 sends through: its `dev`, else the default route's."""
    name = info.get("link")
    if isinstance(name, str) and name in node.links:
        return name, node.links[name].mtu
    from plugins.linux.netlink import AF_INET
    from plugins.linux.routes import list_routes

    for route in list_routes(node.ipr, AF_INET):
        if route.dst.prefixlen == 0 and route.oif:
            link = node.link_by_index(route.oif)
            if link is not None:
                return link.name, link.mtu
    return None


def check_vxlan(node: Node) -> Check:
    """flannel.1 (if present): MTU at most the underlay's minus 50; RX 0 while TX > 0; one FDB
    entry per peer."""
    if VXLAN not in node.links:
        return ok("overlay.vxlan", f"no {VXLAN} on this node: not applicable (no flannel vxlan backend here)")
    shown = _json(node, ["ip", "-d", "-s", "-j", "link", "show", "dev", VXLAN]) or [{}]
    link = shown[0]
    info = (link.get("linkinfo") or {}).get("info_data") or {}
    mtu = int(link.get("mtu") or node.links[VXLAN].mtu)
    problems, facts, objects = [], [f"{VXLAN} MTU {mtu}"], [VXLAN]
    fixes = []
    under = _underlay(node, info)
    if under is not None:
        facts.append(f"underlay {under[0]} MTU {under[1]}")
        if mtu > under[1] - VXLAN_OVERHEAD:
            problems.append(f"{VXLAN} MTU {mtu} is above {under[0]}'s {under[1]} minus {VXLAN_OVERHEAD}, "
                            "so full-size packets are dropped (TLS handshakes hang)")
            fixes.append(f"restart flanneld so that it sets {VXLAN} to MTU {under[1] - VXLAN_OVERHEAD} "
                         "(or set the underlay MTU it should use), then re-create the pods")
            objects.append(under[0])
    stats = link.get("stats64") or {}
    rx = int((stats.get("rx") or {}).get("packets", 0))
    tx = int((stats.get("tx") or {}).get("packets", 0))
    facts.append(f"RX {rx} / TX {tx} packets")
    port = info.get("port", 8472)
    if rx == 0 and tx > 0:
        problems.append(f"{VXLAN} sent {tx} packets and received none: UDP {port} is probably blocked "
                        "between the nodes")
        fixes.append(f"allow UDP {port} between the nodes (security group, host firewall)")
    neigh = _json(node, ["ip", "-j", "neigh", "show", "dev", VXLAN]) or []
    fdb = _json(node, ["bridge", "-j", "fdb", "show", "dev", VXLAN]) or []
    peers = {n.get("lladdr"): n.get("dst") for n in neigh if n.get("lladdr")}
    entries: dict[str, list[str]] = {}
    for e in fdb:
        if e.get("dst") and e.get("mac") and e.get("mac") != "00:00:00:00:00:00":
            entries.setdefault(e["mac"], []).append(e["dst"])
    missing = [f"{ip} ({mac})" for mac, ip in peers.items() if mac not in entries]
    doubled = [f"{mac} -> {', '.join(d)}" for mac, d in entries.items() if len(d) > 1]
    facts.append(f"{len(peers)} peer(s), {sum(map(len, entries.values()))} FDB entries")
    if missing:
        problems.append(f"peer(s) without an FDB entry on {VXLAN}: {', '.join(missing)}")
    if doubled:
        problems.append(f"MAC(s) with more than one FDB entry on {VXLAN}: {'; '.join(doubled)}")
    if missing or doubled:
        fixes.append("restart flanneld on this node (it rewrites the neighbour and FDB entries)")
    if problems:
        return Check("overlay.vxlan", WARN, "; ".join(problems), "; ".join(fixes), objects)
    return ok("overlay.vxlan", ", ".join(facts), objects)


CHECKS = [check_vxlan]
