"""MTU consistency of a flannel node: FLANNEL_MTU against the bridge, its ports and a pod.

flanneld publishes FLANNEL_MTU; new pods get it, but the bridge and the veths of pods made
before an MTU change keep the old value, and large packets between old and new pods are then
dropped (TLS handshakes hang). These reads let flannel ADD warn and CHECK fail.
"""

from __future__ import annotations

from collections.abc import Iterable

from plugins.linux import link, netlink, rtnl
from plugins.linux.link import Link


def mismatches(bridge: str, mtu: int) -> list[str]:
    """`<name> (MTU <n>)` for the bridge named `bridge` and each of its ports whose MTU is not
    `mtu`, in the current network namespace ([] when the bridge does not exist)."""
    host = rtnl.iproute()
    try:
        links = link.list_links(host)
    finally:
        host.close()
    return [f"{lk.name} (MTU {lk.mtu})" for lk in wrong_mtu(links, bridge, mtu)]


def wrong_mtu(links: Iterable[Link], bridge: str, mtu: int) -> list[Link]:
    """Among `links` (plugins.linux.link.Link), the bridge named `bridge` when its MTU is not
    `mtu`, then each of its ports whose MTU is not `mtu`, by name ([] without such a bridge)."""
    links = list(links)
    br = next((lk for lk in links if lk.name == bridge and lk.kind == "bridge"), None)
    if br is None:
        return []
    wrong = [br] if br.mtu != mtu else []
    wrong += sorted(
        (lk for lk in links if lk.master == br.index and lk.mtu != mtu), key=lambda lk: lk.name
    )
    return wrong


def interface_mtu(netns: str, ifname: str) -> int | None:
    """The MTU of `ifname` in the namespace at `netns`, or None when it cannot be read."""
    try:
        ns = rtnl.iproute_in(netns)
    except Exception:  # noqa: BLE001 - a missing namespace is for the delegate's CHECK to report
        return None
    try:
        found = link.get_link(ns, ifname)
    except netlink.netlink_error():
        found = None
    finally:
        ns.close()
    return found.mtu if found is not None else None
