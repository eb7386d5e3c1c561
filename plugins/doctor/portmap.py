"""portmap.stale: hostPort rules of containers whose namespace is gone, and hostPorts mapped twice.

Reads the iptables nat table of both families (the reference's layout, plugins/portmap_iptables.py):
entry rules in CNI-HOSTPORT-DNAT carry `dnat name: "<network>" id: "<container>"` and jump to the
container's CNI-DN- chain, whose DNAT rules name the host port and destination. The nftables
backend's rules (plugins/portmap_nftables.py) carry the container ID, and the network's
attachments chain says which network made them. Masquerade rules (the bridge's ipMasq, iptables)
of such containers are reported and removed with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from plugins.doctor.node import Node
from plugins.doctor.report import WARN, Check, Repair, ok
from plugins.linux.iptables_rules import split_saved

_DNAT_COMMENT = re.compile(r'^dnat name: "(?P<n>(?:[^"\\]|\\.)*)" id: "(?P<id>(?:[^"\\]|\\.)*)"$')
_MASQ_COMMENT = re.compile(r'^name: "(?P<n>(?:[^"\\]|\\.)*)" id: "(?P<id>(?:[^"\\]|\\.)*)"$')


@dataclass
class Mapped:
    """One container's hostPort chain in one family."""

    network: str
    container_id: str
    chain: str
    ipv6: bool
    ports: list[tuple[str, str, str, str]] = field(default_factory=list)  # proto, host ip, port, to


def _option(words: list[str], name: str) -> str:
    for i, w in enumerate(words[:-1]):
        if w == name:
            return words[i + 1]
    return ""


def hostport_chains(node: Node) -> list[Mapped]:
    """Every per-container hostPort chain found in the nat tables, with its DNAT mappings."""
    from plugins.portmap_iptables import TOP_LEVEL_DNAT

    out: dict[tuple[bool, str], Mapped] = {}
    for v6, state in node.nat.items():
        if state is None:
            continue
        for rule in state.chains.get(TOP_LEVEL_DNAT, ()):
            words = split_saved(rule)
            target = _option(words, "-j")
            m = _DNAT_COMMENT.match(_option(words, "--comment"))
            if m is None or not target.startswith("CNI-DN-"):
                continue
            mapped = out.setdefault((v6, target), Mapped(m["n"], m["id"], target, v6))
            if mapped.ports:
                continue
            for r in state.chains.get(target, ()):
                w = split_saved(r)
                if _option(w, "-j") == "DNAT":
                    mapped.ports.append((_option(w, "-p"), _option(w, "-d").split("/")[0],
                                         _option(w, "--dport"), _option(w, "--to-destination")))
    return list(out.values())


def _nft_mapping(rule: dict) -> tuple[str, str, str, str] | None:
    """(protocol, host ip, host port, destination) of an nft hostports DNAT rule, or None."""
    proto = host_ip = port = to = ""
    for expr in rule.get("expr") or ():
        match = expr.get("match") if isinstance(expr, dict) else None
        if isinstance(match, dict) and match.get("op") == "==":
            payload = (match.get("left") or {}).get("payload") or {}
            if payload.get("field") == "dport":
                proto, port = str(payload.get("protocol", "")), str(match.get("right"))
            elif payload.get("field") == "daddr":
                host_ip = str(match.get("right"))
        dnat = expr.get("dnat") if isinstance(expr, dict) else None
        if isinstance(dnat, dict):
            addr = str(dnat.get("addr", ""))
            to = f"[{addr}]:{dnat.get('port')}" if ":" in addr else f"{addr}:{dnat.get('port')}"
    return (proto, host_ip, port, to) if port and to else None


def nft_hostports(node: Node) -> list[Mapped]:
    """The nftables backend's per-container hostPort rules, attributed to a network through its
    attachments chain (rules no known network recorded are left out: they cannot be judged)."""
    import shutil

    from cni.errors import CNIError
    from plugins import portmap_nftables as pn
    from plugins.linux import nftables

    if shutil.which("nft", path=node.env.get("PATH")) is None:
        return []
    by_chain = {pn.attachments_chain(n.name): n.name for n in node.networks}
    out: dict[tuple[bool, str, str], Mapped] = {}
    for fam in ("ip", "ip6"):
        try:
            rules = nftables.rules(nftables.list_table(fam, pn.TABLE))
        except CNIError:
            continue
        owners = {}
        for r in rules:
            if r.get("chain") in by_chain and r.get("comment"):
                owners.setdefault(r["comment"], by_chain[r["chain"]])
        for r in rules:
            cid = r.get("comment")
            if r.get("chain") != pn.HOSTPORTS or cid not in owners:
                continue
            m = out.setdefault((fam == "ip6", owners[cid], cid),
                               Mapped(owners[cid], cid, f"nft {fam} {pn.TABLE}", fam == "ip6"))
            mapping = _nft_mapping(r)
            if mapping is not None:
                m.ports.append(mapping)
    return list(out.values())


def masquerade_owners(node: Node) -> list[tuple[str, str, bool]]:
    """(network, container ID, ipv6) of every masquerade jump in nat POSTROUTING (ipMasq)."""
    out = []
    for v6, state in node.nat.items():
        if state is None:
            continue
        for rule in state.chains.get("POSTROUTING", ()):
            words = split_saved(rule)
            m = _MASQ_COMMENT.match(_option(words, "--comment"))
            if m is not None and _option(words, "-j").startswith("CNI-"):
                out.append((m["n"], m["id"], v6))
    return sorted(set(out))


def _remove_hostports(node: Node, stale: list[Mapped]):
    def run() -> list[str]:
        from plugins import portmap_iptables
        from plugins.doctor.leftovers import still_dead
        from plugins.portmap_config import Settings

        done = []
        for network, cid in sorted({(m.network, m.container_id) for m in stale}):
            if not still_dead(node, cid):
                continue
            if any(m.chain.startswith("nft ") for m in stale if m.container_id == cid):
                from plugins import portmap_nftables

                portmap_nftables.delete(Settings(name=network, backend="nftables"), cid)
            if any(m.chain.startswith("CNI-") for m in stale if m.container_id == cid):
                portmap_iptables.delete(Settings(name=network, backend="iptables"), cid)
            done.append(f'removed the hostPort chains of {cid} (network "{network}")')
        return done

    return run


def _remove_masquerade(node: Node, owners: list[tuple[str, str]]):
    def run() -> list[str]:
        from plugins.doctor.leftovers import still_dead
        from plugins.linux import ipmasq

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
    chains = hostport_chains(node) + nft_hostports(node)
    stale = [m for m in chains if node.owner(m.container_id).state == "dead"]
    masq = sorted({(n, cid) for n, cid, _ in masquerade_owners(node) if node.owner(cid).state == "dead"})
    by_port: dict[tuple[bool, str, str, str], set[tuple[str, str]]] = {}
    for m in chains:
        for proto, host_ip, port, to in m.ports:
            by_port.setdefault((m.ipv6, proto, host_ip, port), set()).add((m.container_id, to))
    twice = {k: v for k, v in by_port.items() if len({cid for cid, _ in v}) > 1}
    problems, objects, repairs = [], [], []
    if stale:
        listed = ", ".join(sorted({f"{m.chain} of {m.container_id} ({node.owner(m.container_id).why})"
                                   for m in stale}))
        problems.append(f"hostPort chains of containers whose namespace is gone: {listed}")
        objects += sorted({m.chain for m in stale})
        repairs.append(Repair("remove the hostPort rules of gone containers",
                              _remove_hostports(node, stale), phase=20))
    if masq:
        problems.append("masquerade rules of containers whose namespace is gone: "
                        + ", ".join(f"{cid} ({net})" for net, cid in masq))
        objects += [cid for _, cid in masq]
        repairs.append(Repair("remove the masquerade rules of gone containers",
                              _remove_masquerade(node, masq), phase=30))
    for (v6, proto, host_ip, port), owners in sorted(twice.items()):
        who = ", ".join(f"{cid} -> {to}" for cid, to in sorted(owners))
        problems.append(f"{'IPv6 ' if v6 else ''}hostPort {host_ip or '*'}:{port}/{proto} is mapped "
                        f"by {len(owners)} containers ({who}); only the first rule ever matches")
        objects.append(f"{proto}/{port}")
    if problems:
        fix = []
        if repairs:
            fix.append("cnitool doctor --fix (removes the rules of gone containers)")
        if twice:
            fix.append("give one of the pods sharing a hostPort another port, then re-create it")
        return Check("portmap.stale", WARN, "; ".join(problems), "; ".join(fix), objects, repairs)
    if not chains:
        return ok("portmap.stale", "no hostPort mapping on this node")
    ports = sum(len(m.ports) for m in chains)
    owners = len({m.container_id for m in chains})
    return ok("portmap.stale", f"{ports} hostPort mapping(s) of {owners} container(s), none of a "
                               "container whose namespace is gone, none mapped twice")


CHECKS = [check_stale]
