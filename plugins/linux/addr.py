"""Addresses of links through an rtnetlink socket (rtnl.py): add, remove, list, and wait for
IPv6 duplicate address detection to settle, with the broadcast Go's netlink sets.

Like link.py, every function takes an open socket, which decides the network namespace.
"""

from __future__ import annotations

import ipaddress
import time
from collections import namedtuple

from plugins.linux import netlink
from plugins.linux.link import get_link
from plugins.linux.netlink import attrs, nla

TYPE_CHECKING = False  # typing and dataclasses cost ms at start-up; type checkers honour this
if TYPE_CHECKING:
    from typing import Any

    from plugins.linux.rtnl import RtnlSocket

    IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def broadcast_for(iface: IPInterface) -> str | None:
    """The IPv4 broadcast Go's netlink adds by default (prefix < 31), else None."""
    if iface.version != 4 or iface.network.prefixlen >= 31:
        return None
    return str(iface.network.broadcast_address)


def add_address(ipr: RtnlSocket, index: int, iface: IPInterface) -> None:
    """Add `iface` (address with prefix) to the link, with the broadcast Go's netlink would set.

    Raises NetlinkError (EEXIST when already present).
    """
    if hasattr(ipr, "add_addr_raw"):  # RtnlSocket: IPRoute's bytes without its processors
        packed = iface.ip.packed
        # IPRoute's order: address, broadcast, local (IPv4)
        attrs = nla(netlink.IFA_ADDRESS, packed)
        brd = broadcast_for(iface)
        if brd is not None:
            attrs += nla(netlink.IFA_BROADCAST, ipaddress.ip_address(brd).packed)
        if iface.version == 4:
            attrs += nla(netlink.IFA_LOCAL, packed)
        family = netlink.AF_INET if iface.version == 4 else netlink.AF_INET6
        ipr.add_addr_raw(family, iface.network.prefixlen, index, attrs)
        return
    kwargs: dict[str, Any] = {
        "index": index,
        "address": str(iface.ip),
        "prefixlen": iface.network.prefixlen,
    }
    brd = broadcast_for(iface)
    if brd is not None:
        kwargs["broadcast"] = brd
    ipr.addr("add", **kwargs)


def del_address(ipr: RtnlSocket, index: int, iface: IPInterface) -> None:
    """Remove `iface` from the link."""
    ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)


class Address(namedtuple("Address", "iface flags scope")):
    """One address of a link, in kernel order: the address with its prefix, IFA flags, scope."""

    __slots__ = ()
    iface: IPInterface
    flags: int
    scope: int


def list_addresses(ipr: RtnlSocket, index: int, family: int | None = None) -> list[Address]:
    """The link's addresses (optionally one family), in the order the kernel lists them."""
    if hasattr(ipr, "dump_addr_raw"):  # RtnlSocket: the same dump, decoded only as far as needed
        out = []
        for raw in ipr.dump_addr_raw(family or 0):
            if len(raw) < 24 or int.from_bytes(raw[20:24], "little") != index:
                continue  # another link's (IPRoute's dump filter on the index)
            addr = _address_from_raw(raw)
            if addr is None:  # outside the plain layout: pyroute2 decodes it
                addr = _address_from_msg(ipr.parse(raw)[0])
            if addr is not False:
                out.append(addr)
        return out
    kwargs: dict[str, Any] = {"index": index}
    if family is not None:
        kwargs["family"] = family
    out = []
    for msg in ipr.get_addr(**kwargs):
        addr = _address_from_msg(msg)
        if addr is not False:
            out.append(addr)
    return out


def _address_from_msg(msg: Any) -> Address | bool:
    """The Address of one pyroute2 RTM_NEWADDR message; False when it has no address."""
    ip = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    if ip is None:
        return False
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return Address(ipaddress.ip_interface(f"{ip}/{msg['prefixlen']}"), flags, msg["scope"])


def _address_from_raw(data: bytes) -> Address | bool | None:
    """`_address_from_msg` of one raw RTM_NEWADDR message without pyroute2: False when it has
    no address, None when the layout is not the plain one (pyroute2 then decodes it)."""
    if len(data) < 24 or int.from_bytes(data[0:4], "little") != len(data):
        return None
    family, prefixlen, flags8, scope = data[16], data[17], data[18], data[19]
    size = {netlink.AF_INET: 4, netlink.AF_INET6: 16}.get(family)
    found = attrs(data, 24, len(data))
    if size is None or found is None:
        return None
    local, address = found.get(netlink.IFA_LOCAL), found.get(netlink.IFA_ADDRESS)
    flags = found.get(netlink.IFA_FLAGS)
    if (any(v is not None and len(v) != size for v in (local, address))
            or (flags is not None and len(flags) != 4)):
        return None
    packed = local if local is not None else address
    if packed is None:
        return False
    return Address(ipaddress.ip_interface((ipaddress.ip_address(packed), prefixlen)),
                   int.from_bytes(flags, "little") if flags is not None else flags8, scope)


def settle_addresses(ipr: RtnlSocket, index: int, ifname: str, timeout: float = 5.0) -> None:
    """Wait until no IPv6 address of the link is tentative (the reference's SettleAddresses).

    Raises RuntimeError with the reference's text on DADFAILED, or when addresses are still
    tentative after `timeout` while the link is oper-up; gives up silently if it is not up.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        tentative = False
        for addr in list_addresses(ipr, index, netlink.AF_INET6):
            if addr.flags & netlink.IFA_F_DADFAILED:
                raise RuntimeError(f"link {ifname} has address {addr.iface.ip} in DADFAILED state")
            if addr.flags & netlink.IFA_F_TENTATIVE:
                tentative = True
        if not tentative:
            return
        if time.monotonic() >= deadline:
            link = get_link(ipr, index=index)
            if link is not None and link.operstate == "UP":
                raise RuntimeError(
                    f"link {ifname} still has tentative addresses after {int(timeout)} seconds"
                )
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
