"""ipMasq's iptables half: per attachment, table nat of each family holds the chain
`CNI-<sha512(network+id)[:24]>` with `-d <subnet> -j ACCEPT` and `! -d <multicast> -j
MASQUERADE`, and a `POSTROUTING -s <ip> -j <chain>` jump, every rule commented `name:
"<network>" id: "<id>"` (the reference's layout, so its DEL and operators' tooling work).

Each call changes one family's table with one iptables-restore. Beyond the reference, teardown
also finds the jumps when the container's addresses are unknown (its netns or link is gone).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

from cni.errors import ERR_INTERNAL, CNIError
from cni.gocompat.json import quote as go_quote
from plugins.linux import iptables
from plugins.linux.iptables_rules import save_unquote
from plugins.linux.naming import chain_name

TYPE_CHECKING = False  # typing costs ms at start-up; type checkers honour this idiom
if TYPE_CHECKING:
    import ipaddress

    IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}


def iptables_chain(network: str, container_id: str) -> str:
    """The per-container nat chain name."""
    return chain_name(network, container_id)


def iptables_comment(network: str, container_id: str) -> str:
    """`name: "<network>" id: "<id>"` with Go %q quoting."""
    return f"name: {go_quote(network)} id: {go_quote(container_id)}"




def _ipt_rules(ip: IPInterface, chain: str, comment: str) -> tuple[str, str, str]:
    """(ACCEPT rule, MASQUERADE rule, POSTROUTING jump) in iptables-save canonical form."""
    c = iptables.comment_arg(comment)
    host = 32 if ip.version == 4 else 128
    return (
        f"-d {ip.network} {c} -j ACCEPT",
        f"! -d {MULTICAST[ip.version]} {c} -j MASQUERADE",
        f"-s {ip.ip}/{host} {c} -j {chain}",
    )


def _commit_blind(ipv6: bool, build: Callable[[iptables.Batch], None],
                  assumed: dict[str, list[str]]) -> bool:
    """Apply what `build` queues against the table content `assumed` instead of a read of
    the table: one iptables-restore instead of iptables-save + iptables-restore. False when
    the restore refused the batch.

    Only for an `assumed` state under which the batch fails as a whole unless the table
    really is that way where it matters (-N of an existing chain, -D of a missing rule, -X of
    a chain still referenced): the restore is atomic, so a refusal changed nothing and the
    caller goes the read-decide-write way (`iptables.apply`).
    """
    state = iptables.TableState({k: list(v) for k, v in assumed.items()})
    batch = iptables.Batch(ipv6, "nat", state, exclusive_create=True)
    build(batch)
    try:
        batch.commit()
    except CNIError:
        return False
    return True


def setup(ips: Sequence[IPInterface], network: str, container_id: str) -> None:
    """Add one attachment's chain, its ACCEPT and MASQUERADE rules and the POSTROUTING jumps,
    per family of `ips`, each family with one iptables-restore. CNIError 999 when refused."""
    chain = iptables_chain(network, container_id)
    comment = iptables_comment(network, container_id)
    for version in (4, 6):
        mine = [ip for ip in ips if ip.version == version]
        if not mine:
            continue

        def build(batch: iptables.Batch, mine: list[IPInterface] = mine) -> None:
            batch.ensure_chain(chain)
            for ip in mine:
                accept, masq, jump = _ipt_rules(ip, chain, comment)
                batch.append(chain, accept)
                batch.append(chain, masq)
                batch.append("POSTROUTING", jump)

        # A first ADD of this attachment finds no chain of its name, hence none of its rules
        # (they all live in or jump to that chain, which iptables cannot reference before it
        # exists). Assuming that, the batch creates the chain with -N, which fails the whole
        # restore when the chain is there (a repeated or concurrent ADD); then the table is read.
        if not _commit_blind(version == 6, build, {}):
            iptables.apply(version == 6, "nat", build)


def _jumps_to(state: iptables.TableState, chain: str) -> list[tuple[str, str]]:
    """(chain, rule) for every rule that jumps or goes to `chain`."""
    out = []
    for name, rules in state.chains.items():
        for rule in rules:
            if rule.endswith(f" -j {chain}") or rule.endswith(f" -g {chain}"):
                out.append((name, rule))
    return out


def _teardown_family(
    ipv6: bool, ips: Sequence[IPInterface] | None, network: str, container_id: str
) -> None:
    chain = iptables_chain(network, container_id)
    comment = iptables.comment_arg(iptables_comment(network, container_id))
    host = 128 if ipv6 else 32

    def build(batch: iptables.Batch) -> None:
        state = batch.state
        if ips is None:
            # Addresses unknown: every jump to this attachment's chain goes.
            for name, rule in _jumps_to(state, chain):
                batch.delete(name, rule)
        else:
            for ip in ips:
                for src in (f"{ip.ip}/{host}", str(ip.network)):  # current and legacy forms
                    batch.delete("POSTROUTING", f"-s {src} {comment} -j {chain}")
        if state.has_chain(chain) and not _jumps_to(state, chain):
            batch.delete_chain(chain)

    if ips is not None:
        # Assume what an ADD left: one jump per address, and the chain. The batch then deletes
        # those jumps and the chain; it fails as a whole when a jump is missing, when another
        # jump (legacy form, duplicate) still references the chain (-X refuses), or when the
        # chain is gone already (a repeated DEL). Then the table is read.
        jumps = list(dict.fromkeys(f"-s {ip.ip}/{host} {comment} -j {chain}" for ip in ips))
        if _commit_blind(ipv6, build, {"POSTROUTING": jumps, chain: []}):
            return
    iptables.apply(ipv6, "nat", build)


def teardown(ips: Sequence[IPInterface] | None, network: str, container_id: str) -> None:
    """Remove one attachment's jumps and chain in both families (`ips` None: the addresses are
    unknown, every jump to the chain goes). CNIError 999 joining the errors of the families
    whose iptables is usable here."""
    errors = []
    for version in (4, 6):
        mine = None if ips is None else [ip for ip in ips if ip.version == version]
        if mine is not None and not mine:
            continue
        try:
            _teardown_family(version == 6, mine, network, container_id)
        except CNIError as e:
            if iptables.available(version == 6):
                errors.append(str(e))
    if errors:
        raise CNIError(ERR_INTERNAL, "; ".join(errors))


_IPT_JUMP = re.compile(
    r"^-s \S+ -m comment --comment (?P<c>\S.*) -j (?P<chain>CNI-[0-9a-f]{24})$"
)
_ID_COMMENT = re.compile(
    r'^name: "(?P<n>(?:[^"\\]|\\.)*)" id: "(?P<id>(?:[^"\\]|\\.)*)"$'
)


def iptables_jumps(state: iptables.TableState,
                   network: str | None = None) -> list[tuple[str, str, str, str]]:
    """(rule, network, container ID, chain) of every POSTROUTING jump an ADD of ours (or the
    reference's) wrote: comment and chain exactly what (network, id) produce. Only those of
    `network` when it is given."""
    out = []
    for rule in state.chains.get("POSTROUTING", []):
        m = _IPT_JUMP.match(rule)
        if m is None:
            continue
        comment = save_unquote(m.group("c"))
        parsed = _ID_COMMENT.match(comment or "")
        if parsed is None:
            continue
        # the inside of Go's %q: the same backslash escapes as iptables-save's quoting (the
        # comment is compared with what (network, id) produce below, so a misread never counts)
        net, cid = save_unquote(f'"{parsed.group("n")}"'), save_unquote(f'"{parsed.group("id")}"')
        if net is None or cid is None:
            continue
        if network is not None and net != network:
            continue
        if comment != iptables_comment(net, cid) or m.group("chain") != iptables_chain(net, cid):
            continue
        out.append((rule, net, cid, m.group("chain")))
    return out


def gc_family(ipv6: bool, network: str, valid_ids: Collection[str]) -> None:
    """Remove the jumps and chains of `network` whose container ID is not in `valid_ids`, in
    one family. CNIError 999 when the table cannot be read or changed."""

    def build(batch: iptables.Batch) -> None:
        stale: set[str] = set()
        for rule, _, cid, chain in iptables_jumps(batch.state, network):
            if cid in valid_ids:
                continue
            batch.delete("POSTROUTING", rule)
            stale.add(chain)
        for chain in sorted(stale):
            if batch.state.has_chain(chain) and not _jumps_to(batch.state, chain):
                batch.delete_chain(chain)

    iptables.apply(ipv6, "nat", build)
