"""Source NAT for container addresses, iptables or nftables, in the reference's layout
(docs/reference-behaviour.md §2.5), so the reference's own DEL and operators' tooling keep working.

iptables (table nat, per family): chain `CNI-<sha512(network+id)[:24]>` holding
`-d <subnet> -j ACCEPT` and `! -d <multicast> -j MASQUERADE`, and a `POSTROUTING -s <ip> -j
<chain>` jump, every rule commented `name: "<network>" id: "<id>"`.
nftables: table `inet cni_plugins_masquerade`, regular chain `masq_checks` with one rule per
address commented `<hash(network)>-<hash(ifname:id)>, net: .., if: .., id: ..`, and the base
chain `postrouting` that skips multicast and jumps there.

Each call changes one family's table with one iptables-restore, or the nft table with one
transaction. Beyond the reference: teardown also finds the iptables rules when the container's
addresses are unknown (its netns or link is already gone), and GC covers both backends.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection, Sequence

from cni.errors import ERR_INTERNAL, CNIError
from cni.gocompat.json import quote as go_quote
from plugins.linux import iptables, nftables
from plugins.linux.naming import chain_name, sha512_hex

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress

    IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

BACKENDS = ("iptables", "nftables")
NFT_TABLE = "cni_plugins_masquerade"
NFT_CHAIN = "masq_checks"
NFT_TABLE_COMMENT = "Masquerading for plugins from github.com/containernetworking/plugins"
NFT_CHAIN_COMMENT = (
    "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
)
NFT_COMMENT_MAX = 128  # knftables.CommentLengthMax
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}


# --------------------------------------------------------------------------- naming


def iptables_chain(network: str, container_id: str) -> str:
    """The per-container nat chain name."""
    return chain_name(network, container_id)


def iptables_comment(network: str, container_id: str) -> str:
    """`name: "<network>" id: "<id>"` with Go %q quoting."""
    return f"name: {go_quote(network)} id: {go_quote(container_id)}"


def nft_network_hash(network: str) -> str:
    """16 hex digits identifying the network in nft rule comments."""
    return sha512_hex(network)[:16]


def nft_instance_hash(network: str, ifname: str, container_id: str) -> str:
    """`<network hash>-<hash(ifname:id)>`: the comment prefix of one attachment's rules."""
    return nft_network_hash(network) + "-" + sha512_hex(ifname + ":" + container_id)[:16]


def nft_comment(network: str, ifname: str, container_id: str) -> str:
    """The full nft rule comment of one attachment, cut to 128 characters."""
    text = "{}, net: {}, if: {}, id: {}".format(
        nft_instance_hash(network, ifname, container_id),
        network.replace('"', ""),
        ifname.replace('"', ""),
        container_id.replace('"', ""),
    )
    return text[:NFT_COMMENT_MAX]


# --------------------------------------------------------------------------- iptables


def _ipt_rules(ip: IPInterface, chain: str, comment: str) -> tuple[str, str, str]:
    """(ACCEPT rule, MASQUERADE rule, POSTROUTING jump) in iptables-save canonical form."""
    c = iptables.comment_arg(comment)
    host = 32 if ip.version == 4 else 128
    return (
        f"-d {ip.network} {c} -j ACCEPT",
        f"! -d {_MULTICAST[ip.version]} {c} -j MASQUERADE",
        f"-s {ip.ip}/{host} {c} -j {chain}",
    )


def _commit_blind(ipv6: bool, build, assumed: dict[str, list[str]]) -> bool:
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


def _ipt_setup(ips: Sequence[IPInterface], network: str, container_id: str) -> None:
    chain = iptables_chain(network, container_id)
    comment = iptables_comment(network, container_id)
    for version in (4, 6):
        mine = [ip for ip in ips if ip.version == version]
        if not mine:
            continue

        def build(batch: iptables.Batch, mine: list = mine) -> None:
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


def _ipt_teardown_family(
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


def _ipt_teardown(ips: Sequence[IPInterface] | None, network: str, container_id: str) -> None:
    errors = []
    for version in (4, 6):
        mine = None if ips is None else [ip for ip in ips if ip.version == version]
        if mine is not None and not mine:
            continue
        try:
            _ipt_teardown_family(version == 6, mine, network, container_id)
        except CNIError as e:
            if iptables.available(version == 6):
                errors.append(str(e))
    if errors:
        raise CNIError(ERR_INTERNAL, "; ".join(errors))


_IPT_JUMP = re.compile(r"^-s \S+ -m comment --comment (?P<c>\S.*) -j (?P<chain>CNI-[0-9a-f]{24})$")
_ID_COMMENT = re.compile(r'^name: "(?P<n>(?:[^"\\]|\\.)*)" id: "(?P<id>(?:[^"\\]|\\.)*)"$')


def _unquote_save(text: str) -> str | None:
    """The string iptables-save printed as `text` (bare or double-quoted), or None."""
    if not text.startswith('"'):
        return text if " " not in text else None
    if len(text) < 2 or not text.endswith('"'):
        return None
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def iptables_jumps(state: iptables.TableState, network: str | None = None) -> list[tuple[str, str, str, str]]:
    """(rule, network, container ID, chain) of every POSTROUTING jump an ADD of ours (or the
    reference's) wrote: comment and chain exactly what (network, id) produce. Only those of
    `network` when it is given."""
    out = []
    for rule in state.chains.get("POSTROUTING", []):
        m = _IPT_JUMP.match(rule)
        if m is None:
            continue
        comment = _unquote_save(m.group("c"))
        parsed = _ID_COMMENT.match(comment or "")
        if parsed is None:
            continue
        net, cid = _go_unquote(parsed.group("n")), _go_unquote(parsed.group("id"))
        if network is not None and net != network:
            continue
        if comment != iptables_comment(net, cid) or m.group("chain") != iptables_chain(net, cid):
            continue
        out.append((rule, net, cid, m.group("chain")))
    return out


def _go_unquote(text: str) -> str:
    """The inside of a Go %q string back to the string (simple backslash escapes)."""
    return re.sub(r"\\(.)", r"\1", text)


def _ipt_gc_family(ipv6: bool, network: str, valid_ids: Collection[str]) -> None:
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


# --------------------------------------------------------------------------- nftables


def _nft_rules() -> list[dict]:
    """The rules of `masq_checks` (empty when the table does not exist)."""
    return nftables.rules(nftables.list_table("inet", NFT_TABLE), NFT_CHAIN)


def _nft_delete_lines(rules: list[dict]) -> list[str]:
    return [f"delete rule inet {NFT_TABLE} {NFT_CHAIN} handle {r['handle']}" for r in rules]


def _nft_setup(ips: Sequence[IPInterface], network: str, ifname: str, container_id: str) -> None:
    prefix = nft_instance_hash(network, ifname, container_id)
    stale = [r for r in _nft_rules() if str(r.get("comment", "")).startswith(prefix)]
    comment = nftables.quote(nft_comment(network, ifname, container_id))
    t = f"inet {NFT_TABLE}"
    lines = [
        f"add table {t} {{ comment {nftables.quote(NFT_TABLE_COMMENT)} ; }}",
        f"add chain {t} {NFT_CHAIN} {{ comment {nftables.quote(NFT_CHAIN_COMMENT)} ; }}",
        f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat ; }}",
        f"flush chain {t} postrouting",
        f"add rule {t} postrouting ip daddr == {_MULTICAST[4]} return",
        f"add rule {t} postrouting ip6 daddr == {_MULTICAST[6]} return",
        f"add rule {t} postrouting goto {NFT_CHAIN}",
    ]
    lines += _nft_delete_lines(stale)
    for ip in ips:
        fam = "ip" if ip.version == 4 else "ip6"
        lines.append(
            f"add rule {t} {NFT_CHAIN} {fam} saddr == {ip.ip} {fam} daddr != {ip.network} "
            f"masquerade comment {comment}"
        )
    nftables.apply("\n".join(lines) + "\n", "failed to set up nftables masquerading")


def _nft_teardown(network: str, ifname: str, container_id: str) -> None:
    prefix = nft_instance_hash(network, ifname, container_id)
    mine = [r for r in _nft_rules() if str(r.get("comment", "")).startswith(prefix)]
    if mine:
        nftables.apply("\n".join(_nft_delete_lines(mine)) + "\n", "failed to remove nftables masquerading")


def _nft_gc(network: str, valid: Collection[tuple[str, str]]) -> None:
    prefix = nft_network_hash(network)
    keep = {nft_comment(network, ifname, cid) for cid, ifname in valid}
    stale = [
        r
        for r in _nft_rules()
        if str(r.get("comment", "")).startswith(prefix) and r.get("comment") not in keep
    ]
    if stale:
        nftables.apply("\n".join(_nft_delete_lines(stale)) + "\n", "failed to garbage-collect nftables masquerading")


# --------------------------------------------------------------------------- public API


def choose_backend(requested: str | None) -> str:
    """The backend to use: the requested one, else iptables unless only nftables is usable.

    Raises CNIError 999 `unknown ipmasq backend "<x>"` for another name. Costs a process only
    when the iptables binaries are missing.
    """
    if requested is not None:
        if requested not in BACKENDS:
            raise CNIError(ERR_INTERNAL, f'unknown ipmasq backend "{requested}"')
        return requested
    if shutil.which("iptables-save") and shutil.which("iptables-restore"):
        return "iptables"
    return "nftables" if nftables.available() else "iptables"


def setup(
    backend: str | None,
    ips: Sequence[IPInterface],
    network: str,
    ifname: str,
    container_id: str,
) -> None:
    """Masquerade traffic from `ips` leaving their subnets, for one attachment; idempotent.

    `backend` None chooses as the reference does: iptables, unless iptables is unusable here
    and nftables is. Raises CNIError 999 when the firewall refuses the change.
    """
    which = choose_backend(backend)
    if which == "nftables":
        _nft_setup(ips, network, ifname, container_id)
        return
    try:
        _ipt_setup(ips, network, container_id)
    except CNIError:
        if backend is None and not iptables.available(False) and nftables.available():
            _nft_setup(ips, network, ifname, container_id)
            return
        raise


def teardown(
    ips: Sequence[IPInterface] | None, network: str, ifname: str, container_id: str
) -> None:
    """Remove one attachment's masquerade rules from both backends; idempotent.

    `ips` None means the addresses are unknown: the iptables jumps are then found by chain name
    in both families. Errors are reported only for a backend that is usable here.
    """
    errors = []
    try:
        _ipt_teardown(ips, network, container_id)
    except CNIError as e:
        errors.append(e.msg)
    try:
        _nft_teardown(network, ifname, container_id)
    except CNIError as e:
        if nftables.available():
            errors.append(e.msg)
    if errors:
        raise CNIError(ERR_INTERNAL, "; ".join(errors))


def gc(network: str, valid: Collection[tuple[str, str]]) -> None:
    """Remove the masquerade rules of `network` whose attachment is not in `valid`.

    `valid` holds (containerID, ifname) pairs. iptables rules carry no ifname, so a container
    ID with any valid attachment keeps its chain. Both backends are tried; errors are reported
    (joined) only for a backend usable here.
    """
    errors = []
    valid_ids = {cid for cid, _ in valid}
    for version in (4, 6):
        try:
            _ipt_gc_family(version == 6, network, valid_ids)
        except CNIError as e:
            if iptables.available(version == 6):
                errors.append(e.msg)
    try:
        _nft_gc(network, valid)
    except CNIError as e:
        if nftables.available():
            errors.append(e.msg)
    if errors:
        raise CNIError(ERR_INTERNAL, "; ".join(errors))
