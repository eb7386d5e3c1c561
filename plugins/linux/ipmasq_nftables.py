"""ipMasq's nftables half: table `inet cni_plugins_masquerade`, regular chain `masq_checks`
with one rule per address commented `<hash(network)>-<hash(ifname:id)>, net: .., if: .., id:
..`, and the base chain `postrouting` that skips multicast and jumps there (the reference's
layout). Each change is one nft transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from plugins.linux import nftables
from plugins.linux.ipmasq_iptables import MULTICAST
from plugins.linux.naming import sha512_hex

TYPE_CHECKING = False  # typing costs ms at start-up; type checkers honour this idiom
if TYPE_CHECKING:
    import ipaddress

    IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

NFT_TABLE = "cni_plugins_masquerade"
NFT_CHAIN = "masq_checks"
NFT_TABLE_COMMENT = "Masquerading for plugins from github.com/containernetworking/plugins"
NFT_CHAIN_COMMENT = (
    "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
)
NFT_COMMENT_MAX = 128  # knftables.CommentLengthMax


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




def _rules() -> list[dict]:
    """The rules of `masq_checks` (empty when the table does not exist)."""
    return nftables.rules(nftables.list_table("inet", NFT_TABLE), NFT_CHAIN)


def _delete_lines(rules: list[dict]) -> list[str]:
    return [f"delete rule inet {NFT_TABLE} {NFT_CHAIN} handle {r['handle']}" for r in rules]


def setup(ips: Sequence[IPInterface], network: str, ifname: str, container_id: str) -> None:
    """Replace one attachment's masquerade rules (and create the table and chains when
    missing) in one nft transaction. CNIError 999 when nft refuses."""
    prefix = nft_instance_hash(network, ifname, container_id)
    stale = [r for r in _rules() if str(r.get("comment", "")).startswith(prefix)]
    comment = nftables.quote(nft_comment(network, ifname, container_id))
    t = f"inet {NFT_TABLE}"
    lines = [
        f"add table {t} {{ comment {nftables.quote(NFT_TABLE_COMMENT)} ; }}",
        f"add chain {t} {NFT_CHAIN} {{ comment {nftables.quote(NFT_CHAIN_COMMENT)} ; }}",
        f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat ; }}",
        f"flush chain {t} postrouting",
        f"add rule {t} postrouting ip daddr == {MULTICAST[4]} return",
        f"add rule {t} postrouting ip6 daddr == {MULTICAST[6]} return",
        f"add rule {t} postrouting goto {NFT_CHAIN}",
    ]
    lines += _delete_lines(stale)
    for ip in ips:
        fam = "ip" if ip.version == 4 else "ip6"
        lines.append(
            f"add rule {t} {NFT_CHAIN} {fam} saddr == {ip.ip} {fam} daddr != {ip.network} "
            f"masquerade comment {comment}"
        )
    nftables.apply("\n".join(lines) + "\n", "failed to set up nftables masquerading")


def teardown(network: str, ifname: str, container_id: str) -> None:
    """Remove one attachment's masquerade rules; nothing to do without them. CNIError 999 when
    nft refuses."""
    prefix = nft_instance_hash(network, ifname, container_id)
    mine = [r for r in _rules() if str(r.get("comment", "")).startswith(prefix)]
    if mine:
        nftables.apply("\n".join(_delete_lines(mine)) + "\n",
                       "failed to remove nftables masquerading")


def gc(network: str, valid: Collection[tuple[str, str]]) -> None:
    """Remove the rules of `network` whose (containerID, ifname) is not in `valid`. CNIError
    999 when nft refuses."""
    prefix = nft_network_hash(network)
    keep = {nft_comment(network, ifname, cid) for cid, ifname in valid}
    stale = [
        r
        for r in _rules()
        if str(r.get("comment", "")).startswith(prefix) and r.get("comment") not in keep
    ]
    if stale:
        nftables.apply("\n".join(_delete_lines(stale)) + "\n",
                       "failed to garbage-collect nftables masquerading")
