"""Which containers already map which host ports, read from the rules portmap wrote.

Two pods mapping one hostPort, protocol and host IP do not fail anywhere: one of them silently
gets the traffic. portmap ADD reads the mappings already in place (iptables: from the
iptables-save it loads anyway; nftables: the `hostports` chain) and warns about a clash,
naming the other container. Pure parsing; the callers do the reads.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from plugins.linux.iptables_rules import split_saved

_COMMENT = re.compile(r'^dnat name: "(?P<net>.*)" id: "(?P<id>.*)"$')


@dataclass(frozen=True)
class Mapped:
    """A mapping in place: `container_id` (and `network` when the rules say it) forwards
    `protocol`/`host_port` on `host_ip` ("" for every address)."""

    container_id: str
    network: str
    protocol: str
    host_port: int
    host_ip: str

    def owner(self) -> str:
        """`container <id>` and, when known, `of network <name>`."""
        network = f" of network {self.network}" if self.network else ""
        return f"container {self.container_id}{network}"


def _host(addr: str) -> str:
    """An address match as the rules print it ("10.0.0.1/32", "::1") -> "10.0.0.1"."""
    try:
        return str(ipaddress.ip_interface(addr).ip)
    except ValueError:
        return addr


def from_iptables(chains: dict[str, list[str]], top_chain: str) -> list[Mapped]:
    """The mappings in an iptables-save nat table (`TableState.chains`): each per-container
    chain entered from `top_chain` with a portmap comment, and its DNAT rules."""
    owners: dict[str, tuple[str, str]] = {}
    for rule in chains.get(top_chain, ()):
        words = split_saved(rule)
        if len(words) < 2 or words[-2] != "-j" or "--comment" not in words[:-1]:
            continue
        m = _COMMENT.match(words[words.index("--comment") + 1])
        if m is not None:
            owners[words[-1]] = (m["id"], m["net"])
    out = []
    for chain, (cid, net) in owners.items():
        for rule in chains.get(chain, ()):
            words = split_saved(rule)
            if "DNAT" not in words:
                continue
            opts = dict(zip(words, words[1:], strict=False))
            try:
                port = int(opts.get("--dport", ""))
            except ValueError:
                continue
            out.append(Mapped(cid, net, opts.get("-p", ""), port, _host(opts.get("-d", ""))))
    return out


def from_nftables(rules: list[dict]) -> list[Mapped]:
    """The mappings in the `hostports` chain of a listed cni_hostport table (`nft -j`): one per
    DNAT rule, owned by the container ID in its comment (nft rules do not name the network)."""
    out = []
    for rule in rules:
        cid = rule.get("comment")
        if not isinstance(cid, str):
            continue
        proto, port, host = "", None, ""
        for expr in rule.get("expr") or ():
            match = expr.get("match") if isinstance(expr, dict) else None
            left = match.get("left") if isinstance(match, dict) else None
            payload = left.get("payload") if isinstance(left, dict) else None
            if not isinstance(payload, dict):
                continue
            if payload.get("field") == "dport" and isinstance(match.get("right"), int):
                proto, port = str(payload.get("protocol", "")), match["right"]
            elif payload.get("field") == "daddr" and isinstance(match.get("right"), str):
                host = _host(match["right"])
        if port is not None:
            out.append(Mapped(cid, "", proto, port, host))
    return out


def clashes(
    wanted: list[tuple[str, int, str]], mapped: list[Mapped], container_id: str
) -> list[str]:
    """One sentence per wanted (protocol, host port, host IP) that another container already
    maps on the same host IP (or on every address, or where either side means every address)."""
    out = []
    for proto, port, host in wanted:
        holders = sorted(
            {
                m.owner()
                for m in mapped
                if m.container_id != container_id
                and m.protocol == proto
                and m.host_port == port
                and (not m.host_ip or not host or m.host_ip == host)
            }
        )
        if holders:
            where = host or "every address"
            out.append(
                f"hostPort {port}/{proto} on {where} is already mapped by {', '.join(holders)}"
            )
    return out
