"""MAC spoof check in nftables' bridge family, in the reference's layout (pkg/link/spoofcheck.go).

Table `bridge nat`, base chain `PREROUTING` (filter, hook prerouting, priority -300, policy
accept), and per attachment two regular chains `cni-br-iface-<ref>` and `cni-br-iface-<ref>-mac`
that let only the container's MAC through from its host veth. Every rule is commented
`macspoofchk-<ref>`, where ref is `<containerID>-<ifname>`. Setup is one nft transaction
(the reference uses two); teardown is one listing plus one transaction. The table and the base
chain stay, as with the reference.
"""

from __future__ import annotations

from plugins.linux import nftables

TABLE = "bridge nat"
BASE_CHAIN = "PREROUTING"


def ref_id(container_id: str, ifname: str) -> str:
    """The attachment reference used in chain names and comments."""
    return f"{container_id}-{ifname}"


def _chains(ref: str) -> tuple[str, str]:
    iface = "cni-br-iface-" + ref
    return iface, iface + "-mac"


def _comment(ref: str) -> str:
    return nftables.quote("macspoofchk-" + ref)


def setup(host_iface: str, container_mac: str, ref: str) -> None:
    """Allow only `container_mac` as source MAC of frames entering the bridge from `host_iface`.

    Idempotent for the per-attachment chains (they are flushed and rewritten). Raises CNIError
    999 `failed to setup spoof-check: <nft error>`.
    """
    iface, mac = _chains(ref)
    c = _comment(ref)
    lines = [
        f"add table {TABLE}",
        f"add chain {TABLE} {BASE_CHAIN} "
        "{ type filter hook prerouting priority -300 ; policy accept ; }",
        f"add chain {TABLE} {iface}",
        f"add chain {TABLE} {mac}",
        f"flush chain {TABLE} {iface}",
        f"flush chain {TABLE} {mac}",
        f"add rule {TABLE} {BASE_CHAIN} iifname {nftables.quote(host_iface)} "
        f"jump {iface} comment {c}",
        f"add rule {TABLE} {iface} jump {mac} comment {c}",
        f"add rule {TABLE} {mac} ether saddr {container_mac} return comment {c}",
        f"add rule {TABLE} {mac} drop comment {c}",
    ]
    nftables.apply("\n".join(lines) + "\n", "failed to setup spoof-check")


def teardown(ref: str) -> None:
    """Remove the attachment's PREROUTING jump(s) and its two chains; absent parts are fine.

    Raises CNIError 999 `failed to teardown spoof-check: ...` when nft refuses.
    """
    items = nftables.list_table("bridge", "nat")
    if items is None:
        return
    iface, mac = _chains(ref)
    comment = "macspoofchk-" + ref
    chains = {item["chain"]["name"] for item in items if "chain" in item}
    lines = [
        f"delete rule {TABLE} {BASE_CHAIN} handle {rule['handle']}"
        for rule in nftables.rules(items, BASE_CHAIN)
        if rule.get("comment") == comment
    ]
    for chain in (iface, mac):
        if chain in chains:
            lines.append(f"flush chain {TABLE} {chain}")
    for chain in (iface, mac):
        if chain in chains:
            lines.append(f"delete chain {TABLE} {chain}")
    if lines:
        nftables.apply("\n".join(lines) + "\n", "failed to teardown spoof-check")
