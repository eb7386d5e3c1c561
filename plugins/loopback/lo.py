"""loopback's steps: `lo` up or down, its state and its loopback addresses, through an
rtnetlink socket opened inside the container's network namespace (a CNIError with the
reference's wording when the path is no usable namespace)."""

from __future__ import annotations

from cni.errors import ERR_INTERNAL, CNIError
from cni.netns import NetnsNotFoundError, in_netns
from plugins.linux.addr import list_addresses
from plugins.linux.link import get_link, set_down, set_up
from plugins.linux.netlink import AF_INET, AF_INET6
from plugins.linux.rtnl import RtnlSocket, iproute


def _lo_index(ipr: RtnlSocket) -> int:
    found = get_link(ipr, name="lo")
    if found is None:
        raise CNIError(ERR_INTERNAL, "failed to find loopback interface: Link not found")
    return found.index


def _loopback_addresses(ipr: RtnlSocket, index: int) -> tuple[str | None, str | None]:
    """The first IPv4 and IPv6 address of lo, refusing any that is not a loopback address."""
    first: dict[int, str] = {}
    for family in (AF_INET, AF_INET6):
        for found in list_addresses(ipr, index, family):
            if not found.iface.ip.is_loopback:
                raise CNIError(
                    ERR_INTERNAL,
                    f'loopback interface found with non-loopback address "{found.iface.ip}"',
                )
            first.setdefault(family, str(found.iface))
    return first.get(AF_INET), first.get(AF_INET6)


def bring_up(netns: str) -> tuple[str | None, str | None]:
    """Set lo up in `netns`; its first IPv4 and first IPv6 address (`a.b.c.d/n`), None where
    it has none. CNIError 999 when there is no lo or it holds a non-loopback address."""
    with in_netns(netns), iproute() as ipr:
        index = _lo_index(ipr)
        set_up(ipr, index)
        return _loopback_addresses(ipr, index)


def bring_down(netns: str) -> None:
    """Set lo down in `netns`; a vanished namespace is success. CNIError 999 when there is no
    lo."""
    try:
        with in_netns(netns), iproute() as ipr:
            set_down(ipr, _lo_index(ipr))
    except NetnsNotFoundError:
        return  # only entering raises this: the namespace is already gone


def check_up(netns: str) -> None:
    """CNIError 999 `loopback interface is down` unless lo is up in `netns`."""
    with in_netns(netns), iproute() as ipr:
        link = get_link(ipr, index=_lo_index(ipr))
        if link is None or not link.up:
            raise CNIError(ERR_INTERNAL, "loopback interface is down")
