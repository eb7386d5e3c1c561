"""portmap.stale: hostPort rules of containers whose namespace is gone, and hostPorts mapped twice.

The mappings in place are read as portmap ADD reads them for its own clash warning
(plugins/portmap/holders.py): from the iptables nat table of both families, and from the
nftables backend's `hostports` chains, whose network is the one whose attachments chain records
the container. Masquerade rules (the bridge's ipMasq, iptables) of gone containers are reported
and removed with them.
"""

from __future__ import annotations

from dataclasses import replace

from cni.errors import CNIError
from plugins.doctor.leftovers import still_dead
from plugins.doctor.node import Node
from plugins.doctor.report import WARN, Check, Repair, ok
from plugins.linux import ipmasq, nftables
from plugins.linux.ipmasq_iptables import iptables_jumps
from plugins.linux.netfilter import nft_installed
from plugins.portmap import iptables as portmap_iptables
from plugins.portmap import nftables as pn
from plugins.portmap.config import Settings
from plugins.portmap.holders import Mapped, from_iptables, from_nftables
from plugins.portmap.iptables import TOP_LEVEL_DNAT


def hostport_mappings(node: Node) -> list[tuple[str, bool, Mapped]]:
    """(backend, ipv6, portmap_holders.Mapped) of every hostPort mapping in place. nftables rules
    name no network: it is taken from the network's attachments chain, "" when none says."""
    out: list[tuple[str, bool, Mapped]] = []
    for v6, state in node.nat.items():
        if state is not None:
            out += [("iptables", v6, m) for m in from_iptables(state.chains, TOP_LEVEL_DNAT)]
    return out + _nft_mappings(node)


def _nft_mappings(node: Node) -> list[tuple[str, bool, Mapped]]:
    if not nft_installed(node.env.get("PATH")):
        return []
    by_chain = {pn.attachments_chain(n.name): n.name for n in node.networks}
    out = []
    for fam in ("ip", "ip6"):
        try:
            rules = nftables.rules(nftables.list_table(fam, pn.TABLE))
        except CNIError:
            continue
        network = {r["comment"]: by_chain[r["chain"]] for r in rules
                   if r.get("chain") in by_chain and isinstance(r.get("comment"), str)}
        for m in from_nftables([r for r in rules if r.get("chain") == pn.HOSTPORTS]):
            named = replace(m, network=network.get(m.container_id, ""))
            out.append(("nftables", fam == "ip6", named))
    return out


def masquerade_owners(node: Node) -> list[tuple[str, str, bool]]:
    """(network, container ID, ipv6) of every masquerade jump in nat POSTROUTING (ipMasq)."""
    out = []
    for v6, state in node.nat.items():
        if state is not None:
            out += [(net, cid, v6) for _, net, cid, _ in iptables_jumps(state)]
    return sorted(set(out))


def _remove_hostports(node: Node, stale: list[tuple[str, str, str]]):
    def run() -> list[str]:
        done = []
        for backend, network, cid in stale:
            if not still_dead(node, cid):
                continue
            module = pn if backend == "nftables" else portmap_iptables
            module.delete(Settings(name=network, backend=backend), cid)
            done.append(f'removed the hostPort rules ({backend}) of {cid} (network "{network}")')
        return done

    return run


def _remove_masquerade(node: Node, owners: list[tuple[str, str]]):
    def run() -> list[str]:
        done = []
        for network, cid in owners:
            if not still_dead(node, cid):
                continue
            ipmasq.teardown(None, network, "eth0", cid)
            done.append(f'removed the masquerade rules of {cid} (network "{network}")')
        return done

    return run


def check_stale(node: Node) -> Check:
    """hostPort (and masquerade) rules of containers whose namespace is gone; hostPorts mapped
    by two containers."""
    mappings = hostport_mappings(node)
    stale = sorted({(backend, m.network, m.container_id) for backend, _, m in mappings
                    if m.network and node.owner(m.container_id).state == "dead"})
    masq = sorted({(n, cid) for n, cid, _ in masquerade_owners(node)
                   if node.owner(cid).state == "dead"})
    by_port: dict[tuple[bool, str, str, int], set[str]] = {}
    for _, v6, m in mappings:
        by_port.setdefault((v6, m.protocol, m.host_ip, m.host_port), set()).add(m.container_id)
    twice = {k: v for k, v in by_port.items() if len(v) > 1}
    problems, objects, repairs = [], [], []
    if stale:
        listed = ", ".join(f"{cid} ({backend}, {node.owner(cid).why})" for backend, _, cid in stale)
        problems.append(f"hostPort rules of containers whose namespace is gone: {listed}")
        objects += [f"{backend}:{cid}" for backend, _, cid in stale]
        repairs.append(Repair("remove the hostPort rules of gone containers",
                              _remove_hostports(node, stale), phase=20))
    if masq:
        problems.append("masquerade rules of containers whose namespace is gone: "
                        + ", ".join(f"{cid} ({net})" for net, cid in masq))
        objects += [cid for _, cid in masq]
        repairs.append(Repair("remove the masquerade rules of gone containers",
                              _remove_masquerade(node, masq), phase=30))
    for (v6, proto, host_ip, port), owners in sorted(twice.items()):
        who = ", ".join(sorted(owners))
        problems.append(f"{'IPv6 ' if v6 else ''}hostPort {host_ip or '*'}:{port}/{proto} is "
                        f"mapped by {len(owners)} containers ({who}); only the first rule ever "
                        "matches")
        objects.append(f"{proto}/{port}")
    if problems:
        fix = []
        if repairs:
            fix.append("cnitool doctor --fix (removes the rules of gone containers)")
        if twice:
            fix.append("give one of the pods sharing a hostPort another port, then re-create it")
        return Check("portmap.stale", WARN, "; ".join(problems), "; ".join(fix), objects, repairs)
    if not mappings:
        return ok("portmap.stale", "no hostPort mapping on this node")
    owners = len({m.container_id for _, _, m in mappings})
    return ok("portmap.stale", f"{len(mappings)} hostPort mapping(s) of {owners} container(s), "
                               "none of a container whose namespace is gone, none mapped twice")


CHECKS = [check_stale]
