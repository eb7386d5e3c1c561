"""portmap, nftables backend, laid out as the reference (upstream 3d27709f) lays it out
(docs/reference-behaviour.md §3.4).

Per address family a table `ip cni_hostport` / `ip6 cni_hostport` (comment "CNI portmap plugin")
with the chains `hostports` (one DNAT rule per mapping), `hostip_hostports` (legacy, kept empty),
`hostports_all` (jumps to both), the base chains `prerouting` and `output` (nat, priority -100:
`[conditions] fib daddr type local jump hostports_all`) and, with snat, `masquerading` (nat
postrouting, priority 100: hairpin and localhost masquerade rules). Every per-container rule
carries the container id as its comment; that is how DEL finds them. Repeated ADDs append again,
as the reference does.

Generation (`add_lines`) is pure text; applying is one `nft -f` transaction per call covering
both families, and reads are `nft -j list table`.

GC (the reference has none) and how it is scoped to one network. The reference's comment holds
only the container id, so the rules themselves cannot say which network made them (the reference's
own DEL removes every network's rules for that id). To keep upstream 3d27709f's layout unchanged and
still scope GC, ADD also records the attachment in a chain of the same table owned by this network:
`attachments_<sha512(network)[:16]>`, a regular chain nothing jumps to, holding one inert `return`
rule per ADD whose comment is the container id. DEL removes those markers with the rules. GC of
network N then only considers ids that have a marker in N's chain and are not among the valid
attachments: their markers are removed, and their rules in `hostports`, `hostip_hostports` and
`masquerading` too, unless another network's attachments chain still records the same id (its rules
are indistinguishable from ours, so they stay until that network's DEL, which removes them all).
Rules made without a marker (by the reference plugin, say) are never touched by GC.
"""

from __future__ import annotations

import ipaddress

from cni.errors import ERR_INTERNAL, CNIError
from plugins.linux import nftables
from plugins.linux.naming import sha512_hex
from plugins.linux.netfilter import nft_installed
from plugins.portmap.backend import Net
from plugins.portmap.config import Settings
from plugins.portmap.holders import Mapped, from_nftables

TABLE = "cni_hostport"
TABLE_COMMENT = "CNI portmap plugin"
HOSTPORTS = "hostports"
HOSTIP_HOSTPORTS = "hostip_hostports"  # no longer filled; kept so upgrades are transparent
HOSTPORTS_ALL = "hostports_all"
MASQUERADING = "masquerading"
RULE_CHAINS = (HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING)
ATTACHMENTS_PREFIX = "attachments_"


def family(version: int) -> str:
    """The nft family of an address version."""
    return "ip6" if version == 6 else "ip"


def attachments_chain(name: str) -> str:
    """The chain recording this network's attachments (for GC scoping)."""
    return ATTACHMENTS_PREFIX + sha512_hex(name)[:16]


def _quote(text: str) -> str:
    return nftables.quote(text)


def _join_host_port(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


# --------------------------------------------------------------------------- generation (pure)


def add_lines(settings: Settings, container_id: str, net: Net) -> list[str]:
    """The nft commands of one ADD for one container address (reference `forwardPorts`)."""
    version = net.version
    fam = family(version)
    t = f"{fam} {TABLE}"
    comment = f"comment {_quote(container_id)}"
    cond = " ".join(settings.conditions(version))
    entry = f"{cond} fib daddr type local jump {HOSTPORTS_ALL}".lstrip()
    lines = [
        f"add table {t} {{ comment {_quote(TABLE_COMMENT)} ; }}",
        f"add chain {t} {HOSTPORTS}",
        f"add chain {t} {HOSTIP_HOSTPORTS}",
        f"add chain {t} {HOSTPORTS_ALL}",
        f"flush chain {t} {HOSTPORTS_ALL}",
        f"add rule {t} {HOSTPORTS_ALL} jump {HOSTIP_HOSTPORTS}",
        f"add rule {t} {HOSTPORTS_ALL} jump {HOSTPORTS}",
        f"add chain {t} prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"flush chain {t} prerouting",
        f"add rule {t} prerouting {entry}",
        f"add chain {t} output {{ type nat hook output priority -100 ; }}",
        f"flush chain {t} output",
        f"add rule {t} output {entry}",
    ]
    if settings.snat:
        lines.append(f"add chain {t} {MASQUERADING} {{ type nat hook postrouting priority 100 ; }}")
    for m in settings.mappings:
        if not m.applies_to(version):
            continue
        daddr = m.destination(version)
        match = f"{fam} daddr {daddr} " if daddr else ""
        lines.append(
            f"add rule {t} {HOSTPORTS} {match}{m.proto} dport {m.host_port} "
            f"dnat to {_join_host_port(net.ip, m.container_port)} {comment}"
        )
    if settings.snat:
        source = ("::/0" if version == 6 else "0.0.0.0/0") if settings.masq_all else str(net.ip)
        lines.append(
            f"add rule {t} {MASQUERADING} {fam} saddr {source} {fam} daddr {net.ip} "
            f"masquerade {comment}"
        )
        if version == 4 and not settings.masq_all:
            lines.append(
                f"add rule {t} {MASQUERADING} {fam} saddr 127.0.0.1 {fam} daddr {net.ip} "
                f"masquerade {comment}"
            )
    marker = attachments_chain(settings.name)
    lines += [f"add chain {t} {marker}", f"add rule {t} {marker} return {comment}"]
    return lines


def expected_counts(settings: Settings, net: Net) -> tuple[int, int]:
    """How many rules with the container's comment CHECK wants in hostports and masquerading."""
    version = net.version
    hostports = sum(1 for m in settings.mappings if m.applies_to(version))
    masq = 0
    if settings.snat:
        masq = 2 if version == 4 and not settings.masq_all else 1
    return hostports, masq


# --------------------------------------------------------------------------- applying


def _list(fam: str) -> list[dict]:
    """The rules of this family's table ([] when the table does not exist)."""
    return nftables.rules(nftables.list_table(fam, TABLE))


def available() -> bool:
    """Whether nftables can be used (STATUS)."""
    return nftables.available()


def _nft_missing() -> bool:
    """True when there is no nft binary: nothing can have been set up with it."""
    return not nft_installed()


def add(
    settings: Settings, container_id: str, nets: list[Net], seen: dict[int, list[Mapped]]
) -> None:
    """Set up the mappings for every container address in one nft transaction (both
    families). `seen[version]` receives the mappings that were in place before."""
    for version in {net.version for net in nets}:
        seen[version] = mapped(version)
    lines: list[str] = []
    for net in nets:
        lines += add_lines(settings, container_id, net)
    nftables.apply("\n".join(lines) + "\n", "unable to set up nftables rules for port mappings")


def mapped(version: int) -> list[Mapped]:
    """The mappings in place in the `hostports` chain of this address version
    (portmap_holders.Mapped); [] when nft is missing or the table cannot be listed."""
    if _nft_missing():
        return []
    try:
        rules = _list(family(version))
    except CNIError:
        return []
    return from_nftables([r for r in rules if r.get("chain") == HOSTPORTS])


def _delete_line(rule: dict) -> str:
    return f"delete rule {rule['family']} {rule['table']} {rule['chain']} handle {rule['handle']}"


def delete(settings: Settings, container_id: str) -> None:
    """Remove every rule commented with the container id, in both families (idempotent)."""
    if _nft_missing():  # the reference skips a family whose nftables cannot be opened
        return
    marker = attachments_chain(settings.name)
    lines = []
    for fam in ("ip", "ip6"):
        try:
            rules = _list(fam)
        except CNIError as e:
            raise CNIError(
                ERR_INTERNAL, f"could not list rules in table {TABLE}: {e.msg}"
            ) from None
        for rule in rules:
            if rule.get("comment") == container_id and rule.get("chain") in (*RULE_CHAINS, marker):
                lines.append(_delete_line(rule))
    if lines:
        nftables.apply("\n".join(lines) + "\n", "error deleting nftables rules")


def check(settings: Settings, container_id: str, net: Net) -> None:
    """Count the container's rules as the reference does; a missing table counts as none."""
    want_hostports, want_masq = expected_counts(settings, net)
    rules = _list(family(net.version))
    for chain, want in ((HOSTPORTS, want_hostports), (MASQUERADING, want_masq)):
        if want <= 0:
            continue
        found = sum(
            1 for r in rules if r.get("chain") == chain and r.get("comment") == container_id
        )
        if found < want:
            raise CNIError(ERR_INTERNAL, f'missing hostport rules in "{chain}" chain')


def gc_lines(
    rules: list[dict], name: str, valid_container_ids: set[str]
) -> tuple[list[str], list[str]]:
    """(nft delete commands, stale container ids) for one family's rules (see module docstring)."""
    marker = attachments_chain(name)
    ours: set[str] = set()
    others: set[str] = set()
    for rule in rules:
        chain, cid = rule.get("chain", ""), rule.get("comment")
        if cid is None or not chain.startswith(ATTACHMENTS_PREFIX):
            continue
        (ours if chain == marker else others).add(cid)
    stale = ours - valid_container_ids
    lines = []
    for rule in rules:
        cid, chain = rule.get("comment"), rule.get("chain")
        if cid not in stale:
            continue
        if chain == marker or (chain in RULE_CHAINS and cid not in others):
            lines.append(_delete_line(rule))
    return lines, sorted(stale)


def gc(settings: Settings, valid_container_ids: set[str]) -> list[str]:
    """Remove what this network recorded for containers no longer valid; return `fam:id`s."""
    if _nft_missing():
        return []
    lines: list[str] = []
    removed: list[str] = []
    for fam in ("ip", "ip6"):
        fam_lines, stale = gc_lines(_list(fam), settings.name, valid_container_ids)
        lines += fam_lines
        removed += [f"{fam}:{cid}" for cid in stale]
    if lines:
        nftables.apply("\n".join(lines) + "\n", "error deleting nftables rules")
    return removed
