"""portmap, iptables backend: the reference chain layout (docs/reference-behaviour.md §3.3, §3.5,
§3.6).

Layout (table nat, the same in ip6tables):

    PREROUTING, OUTPUT : -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
    POSTROUTING (first): -m comment --comment "CNI portfwd requiring masquerade"
                         -j CNI-HOSTPORT-MASQ
    CNI-HOSTPORT-SETMARK: -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark M/M
    CNI-HOSTPORT-MASQ  : -m mark --mark M/M -j MASQUERADE
    CNI-HOSTPORT-DNAT  : per container, protocol and 15 ports:
                         -p P -m comment --comment 'dnat name: "N" id: "ID"' -m multiport
                         --dports a,b,.. [conditions] -j CNI-DN-<sha512(N+ID)[:21]>
    CNI-DN-<hash>      : per mapping: hairpin mark, localhost mark (IPv4), DNAT

The first half of this module is pure: it generates the rules as the reference's argument
vectors (so unit tests can compare with the reference's own test vectors) together with the
iptables-save text they become (`plugins.linux.iptables_rules.canonical`). The second half applies
them: one iptables-save and at most one iptables-restore per address family and call, with
existence decided by text comparison, never a process per rule.

GC (the reference has none). The per-container chains of this network are found through their
entry rules in CNI-HOSTPORT-DNAT: a rule whose comment starts with `dnat name: "<network>" id: "`
and that jumps to a `CNI-DN-` chain. A chain is kept when its name is the hash of the network name
and one of the container ids among the valid attachments; every other one of this network is
removed exactly as DEL removes it (entry rules, then the chain). Chains of other networks carry
another name in their comment and are never touched; a CNI-DN chain with no entry rule at all
cannot be attributed to a network and is left alone. Shared chains stay, as after DEL.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from cni.errors import ERR_INTERNAL, CNIError
from plugins.linux import iptables as ipt
from plugins.linux.iptables_rules import canonical, split_saved
from plugins.linux.naming import chain_name
from plugins.portmap.backend import Net
from plugins.portmap.config import Settings
from plugins.portmap.holders import Mapped, from_iptables

TOP_LEVEL_DNAT = "CNI-HOSTPORT-DNAT"
SET_MARK = "CNI-HOSTPORT-SETMARK"
MARK_MASQ = "CNI-HOSTPORT-MASQ"
OLD_TOP_LEVEL_SNAT = "CNI-HOSTPORT-SNAT"
TABLE = "nat"
MULTIPORT_MAX = 15
COMMENT_MAX = 255

# --------------------------------------------------------------------------- generation (pure)


@dataclass
class Chain:
    """A chain to set up: its rules and the rules that jump to it (both as argument vectors).

    `entry_rules` omit the trailing `-j <name>`, as in the reference; `prepend_entry` inserts
    them at position 1 of each entry chain instead of appending.
    """

    name: str
    rules: list[list[str]] = field(default_factory=list)
    entry_chains: list[str] = field(default_factory=list)
    entry_rules: list[list[str]] = field(default_factory=list)
    prepend_entry: bool = False

    def entry_args(self) -> list[list[str]]:
        """The entry rules with their `-j <chain>`."""
        return [[*rule, "-j", self.name] for rule in self.entry_rules]


def mark_value(bit: int) -> str:
    """`<m>/<m>` with m = 1 << bit in Go's %#x form (bit 13 -> 0x2000/0x2000)."""
    return f"{1 << bit:#x}/{1 << bit:#x}"


def set_mark_chain(bit: int) -> Chain:
    """CNI-HOSTPORT-SETMARK: marks packets that need masquerading."""
    return Chain(
        SET_MARK,
        rules=[["-m", "comment", "--comment", "CNI portfwd masquerade mark",
                "-j", "MARK", "--set-xmark", mark_value(bit)]],
    )  # fmt: skip


def mark_masq_chain(bit: int) -> Chain:
    """CNI-HOSTPORT-MASQ: masquerades marked packets; jumped to first thing in POSTROUTING."""
    return Chain(
        MARK_MASQ,
        rules=[["-m", "mark", "--mark", mark_value(bit), "-j", "MASQUERADE"]],
        entry_chains=["POSTROUTING"],
        entry_rules=[["-m", "comment", "--comment", "CNI portfwd requiring masquerade"]],
        prepend_entry=True,
    )


def top_level_dnat_chain() -> Chain:
    """CNI-HOSTPORT-DNAT, entered from PREROUTING and OUTPUT for locally addressed packets."""
    return Chain(
        TOP_LEVEL_DNAT,
        entry_chains=["PREROUTING", "OUTPUT"],
        entry_rules=[["-m", "addrtype", "--dst-type", "LOCAL"]],
    )


def dnat_chain_name(name: str, container_id: str) -> str:
    """`CNI-DN-` + sha512(name + id), 28 characters in all."""
    return chain_name(name, container_id, "DN-")


def old_snat_chain_name(name: str, container_id: str) -> str:
    """The legacy per-container SNAT chain, still torn down on DEL."""
    return chain_name(name, container_id, "SN-")


def dnat_comment(name: str, container_id: str) -> str:
    """The entry rules' comment as the reference passes it: over 255 characters it becomes the
    first 253 and `...` (256 in all; iptables then keeps 255 of them, see `canonical`)."""
    text = f'dnat name: "{name}" id: "{container_id}"'
    return text if len(text) <= COMMENT_MAX else text[:253] + "..."


def _ip_port(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def dnat_chain(settings: Settings, container_id: str, net: Net) -> Chain:
    """The per-container chain for one container address (reference `fillDnatRules`)."""
    version = net.version
    chain = Chain(dnat_chain_name(settings.name, container_id), entry_chains=[TOP_LEVEL_DNAT])
    comment = dnat_comment(settings.name, container_id)
    set_mark = settings.external_set_mark_chain or SET_MARK
    conditions = settings.conditions(version)

    ports_by_proto: dict[str, list[int]] = {}
    for m in settings.mappings:  # every mapping, even one with the other family's hostIP
        ports_by_proto.setdefault(m.protocol, []).append(m.host_port)
    for proto in sorted(ports_by_proto):
        ports = ports_by_proto[proto]
        for start in range(0, len(ports), MULTIPORT_MAX):
            spec = ",".join(str(p) for p in ports[start : start + MULTIPORT_MAX])
            chain.entry_rules.append(
                ["-m", "comment", "--comment", comment, "-m", "multiport",
                 "-p", proto, "--destination-ports", spec, *conditions]
            )  # fmt: skip

    for m in settings.mappings:
        if not m.applies_to(version):
            continue
        base = ["-p", m.protocol, "--dport", str(m.host_port)]
        if m.destination(version):
            base += ["-d", m.destination(version)]
        if settings.snat:
            if settings.masq_all:
                source = "::/0" if version == 6 else "0.0.0.0/0"
            else:
                source = net.with_prefixlen
            chain.rules.append([*base, "-s", source, "-j", set_mark])
            if version == 4 and not settings.masq_all:
                chain.rules.append([*base, "-s", "127.0.0.1", "-j", set_mark])
        chain.rules.append(
            [*base, "-j", "DNAT", "--to-destination", _ip_port(net.ip, m.container_port)]
        )
    return chain


def plan(settings: Settings, container_id: str, net: Net) -> list[Chain]:
    """Every chain ADD sets up for one container address, in the reference's order."""
    chains = []
    if settings.snat and settings.external_set_mark_chain is None:
        chains += [set_mark_chain(settings.mark_bit), mark_masq_chain(settings.mark_bit)]
    chains += [top_level_dnat_chain(), dnat_chain(settings, container_id, net)]
    return chains


def save_lines(chains: list[Chain], ipv6: bool) -> list[str]:
    """The `-A` lines iptables-save shows for these chains on an empty table (tests, docs)."""
    out = []
    for ch in chains:
        out += [f"-A {ch.name} {canonical(r, ipv6).text}" for r in ch.rules]
        for entry in ch.entry_chains:
            out += [f"-A {entry} {canonical(r, ipv6).text}" for r in ch.entry_args()]
    return out


def go_rules(rules: list[list[str]]) -> str:
    """Go's %s of a [][]string, as the reference's CHECK messages print rule lists."""
    return "[" + " ".join("[" + " ".join(r) + "]" for r in rules) + "]"


# --------------------------------------------------------------------------- applying


def available() -> bool:
    """Whether iptables can be used (STATUS)."""
    return ipt.available(False)


def _has(batch, chain: str, args: list[str], existed: bool) -> bool:
    """Is `args` already in `chain`? By text; by `iptables -C` when the text is uncertain."""
    text, exact = canonical(args, batch.ipv6)
    if batch.state.has_rule(chain, text):
        return True
    if exact or not existed:
        return False
    return ipt.rule_exists(batch.ipv6, batch.table, chain, args)


def _setup(batch, chain: Chain) -> None:
    """Queue the chain, its missing rules and its missing entry rules (reference `setup`)."""
    existed = batch.state.has_chain(chain.name)
    batch.ensure_chain(chain.name)
    for args in chain.rules:
        if not _has(batch, chain.name, args, existed):
            batch.append(chain.name, canonical(args, batch.ipv6).text)
    for entry in chain.entry_chains:
        for args in chain.entry_args():
            if _has(batch, entry, args, existed):
                continue
            text = canonical(args, batch.ipv6).text
            if chain.prepend_entry:
                batch.insert_first(entry, text)
            else:
                batch.append(entry, text)


def add(
    settings: Settings, container_id: str, nets: list[Net], seen: dict[int, list[Mapped]]
) -> None:
    """Set up the mappings of every container address: one save and one restore per family.
    `seen[version]` receives the mappings that were in place before (portmap_holders.Mapped)."""
    for net in nets:
        seen[net.version] = []
        _add_family(settings, container_id, net, seen[net.version])


def _add_family(settings: Settings, container_id: str, net: Net, seen: list) -> None:
    ipv6 = net.version == 6
    chains = plan(settings, container_id, net)
    try:
        state_read = []

        def build(batch) -> None:
            state_read.append(True)
            seen[:] = from_iptables(batch.state.chains, TOP_LEVEL_DNAT)
            for ch in chains:
                _setup(batch, ch)

        ipt.apply(ipv6, TABLE, build)
    except CNIError as e:
        what = "failed to open iptables" if not state_read else "unable to setup DNAT"
        raise CNIError(ERR_INTERNAL, f"{what}: {e.msg}") from None


def _teardown(batch, chain: str, entry_chain: str) -> None:
    """Remove every rule of `entry_chain` that jumps to `chain`, then the chain itself."""
    if not batch.state.has_chain(chain):
        return
    suffix = "-j " + chain
    for rule in list(batch.state.chains.get(entry_chain, ())):
        if rule.endswith(suffix):
            batch.delete(entry_chain, rule)
    batch.delete_chain(chain)


def _each_family(what: str, build_for) -> None:
    """Run `build_for(ipv6)` through apply() for IPv4 and IPv6, skipping an unusable family.

    Fails like the reference: `neither iptables nor ip6tables is usable, ...` when both are
    unusable, `could not <what> ipv4 dnat: ...` when a usable family fails.
    """
    unusable: dict[bool, str] = {}
    for ipv6 in (False, True):
        started = []

        def build(batch, ipv6=ipv6, started=started) -> None:
            started.append(True)
            build_for(batch)

        try:
            ipt.apply(ipv6, TABLE, build)
        except CNIError as e:
            if not started:
                unusable[ipv6] = e.msg
                continue
            family = "ipv6" if ipv6 else "ipv4"
            raise CNIError(ERR_INTERNAL, f"could not {what} {family} dnat: {e.msg}") from None
    if len(unusable) == 2:
        raise CNIError(
            ERR_INTERNAL,
            "neither iptables nor ip6tables is usable, "
            f"(iptables) {unusable[False]}, (ip6tables) {unusable[True]}",
        )


def delete(settings: Settings, container_id: str) -> None:
    """Remove this container's chains and their entry rules in both families (idempotent)."""
    dn = dnat_chain_name(settings.name, container_id)
    sn = old_snat_chain_name(settings.name, container_id)

    def build(batch) -> None:
        _teardown(batch, dn, TOP_LEVEL_DNAT)
        _teardown(batch, sn, OLD_TOP_LEVEL_SNAT)

    _each_family("teardown", build)


def check(settings: Settings, container_id: str, net: Net) -> None:
    """Verify the container's chain, rules and entry rules for this address's family (upstream
    3d27709f)."""
    ipv6 = net.version == 6
    family = "ipv6" if ipv6 else "ipv4"
    chain = dnat_chain(settings, container_id, net)
    try:
        state = ipt.load(ipv6, TABLE)
    except CNIError as e:
        err4, err6 = ("<nil>", e.msg) if ipv6 else (e.msg, "<nil>")
        raise CNIError(
            ERR_INTERNAL,
            f"neither iptables nor ip6tables is usable, (iptables) {err4}, (ip6tables) {err6}",
        ) from None

    def present(chain_name_: str, args: list[str]) -> bool:
        text, exact = canonical(args, ipv6)
        if state.has_rule(chain_name_, text):
            return True
        return not exact and ipt.rule_exists(ipv6, TABLE, chain_name_, args)

    def fail(msg: str) -> CNIError:
        return CNIError(ERR_INTERNAL, f"could not check {family} dnat: {msg}")

    if not state.has_chain(chain.name):
        raise fail(f"chain {chain.name} not found in iptables table {TABLE}")
    for args in reversed(chain.rules):
        if not present(chain.name, args):
            raise fail(
                f"rule {go_rules(chain.rules)} in chain {chain.name} not found in table {TABLE}"
            )
    for entry in chain.entry_chains:
        for args in reversed(chain.entry_args()):
            if not present(entry, args):
                raise fail(
                    f"rule {go_rules(chain.entry_rules)} in chain {entry} "
                    f"not found in table {TABLE}"
                )


def owned_chains(state, name: str) -> set[str]:
    """CNI-DN chains of network `name`: targets of CNI-HOSTPORT-DNAT rules carrying its comment."""
    prefix = f'dnat name: "{name}" id: "'
    found: set[str] = set()
    for rule in state.chains.get(TOP_LEVEL_DNAT, ()):
        words = split_saved(rule)
        if len(words) < 2 or words[-2] != "-j" or not words[-1].startswith("CNI-DN-"):
            continue
        for i, word in enumerate(words[:-1]):
            if word == "--comment":
                comment = words[i + 1]
                # a very long network name leaves only a cut prefix in the stored comment
                if comment.startswith(prefix) or (
                    len(comment.encode()) >= ipt.COMMENT_MAX_BYTES
                    and prefix.startswith(comment[:-2])
                ):
                    found.add(words[-1])
                break
    return found


def gc(settings: Settings, valid_container_ids: set[str]) -> list[str]:
    """Remove this network's per-container chains whose container is not valid; return them."""
    keep = {dnat_chain_name(settings.name, cid) for cid in valid_container_ids}
    removed: dict[bool, list[str]] = {}

    def build(batch) -> None:
        stale = sorted(owned_chains(batch.state, settings.name) - keep)
        for chain in stale:
            _teardown(batch, chain, TOP_LEVEL_DNAT)
        tool = "ip6tables" if batch.ipv6 else "iptables"
        removed[batch.ipv6] = [f"{tool}:{c}" for c in stale]  # the last (committed) attempt

    _each_family("gc", build)
    return removed.get(False, []) + removed.get(True, [])
