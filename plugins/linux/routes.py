"""Routes through netlink: install and list them on an rtnetlink socket (rtnl.py), and ask the
kernel which interface it would route an address out of (`output_interface`).

The lookup is one fixed-format RTM_GETROUTE request on a socket of its own, through
netlink.py's standard-library core: importing pyroute2 would cost about 60 ms, more than a
whole portmap ADD otherwise takes, and one request and a walk over the attributes of the
answer is all a lookup needs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import namedtuple

from plugins.linux import netlink
from plugins.linux.netlink import ask, attr, attr_u32, nla

TYPE_CHECKING = False  # typing and dataclasses cost ms at start-up; type checkers honour this
if TYPE_CHECKING:
    from typing import Any

    from plugins.linux.rtnl import RtnlSocket

    IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
    IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Route(namedtuple("Route", "dst gw priority table scope", defaults=(None, 0, None, None))):
    """A route to install: `dst` network, optional gateway, metric, table and scope."""

    __slots__ = ()
    dst: IPNetwork
    gw: IPAddress | None
    priority: int
    table: int | None
    scope: int | None


def add_route(ipr: RtnlSocket, oif: int, route: Route) -> None:
    """Install `route` via link `oif` with NLM_F_CREATE and no EXCL, as Go's RouteAddEcmp does:
    an IPv6 route with the same destination becomes a multipath sibling, an identical IPv4
    route fails with EEXIST. Raises NetlinkError.
    """
    plain = not route.priority and route.table is None and route.scope is None
    same_family = route.gw is None or route.gw.version == route.dst.version
    family = netlink.AF_INET6 if route.dst.version == 6 else netlink.AF_INET
    if hasattr(ipr, "add_route_raw") and plain and same_family:
        # RtnlSocket: the bytes IPRoute builds for this route (destination when not a default
        # route, output link, gateway), without its request processors
        data = b""
        if route.dst.prefixlen:
            data += nla(netlink.RTA_DST, route.dst.network_address.packed)
        data += nla(netlink.RTA_OIF, oif.to_bytes(4, "little"))
        if route.gw is not None:
            data += nla(netlink.RTA_GATEWAY, route.gw.packed)
        ipr.add_route_raw(family, route.dst.prefixlen, data)
        return
    kwargs: dict[str, Any] = {
        "family": family,
        "dst": str(route.dst.network_address),
        "dst_len": route.dst.prefixlen,
        "oif": oif,
        "proto": netlink.RTPROT_BOOT,  # Go's netlink default; pyroute2 would say "static"
        "type": netlink.RTN_UNICAST,
    }
    optional = {"gateway": str(route.gw) if route.gw is not None else None,
                "priority": route.priority or None, "table": route.table, "scope": route.scope}
    kwargs.update((k, v) for k, v in optional.items() if v is not None)
    ipr.create_route(**kwargs)


class RouteEntry(namedtuple("RouteEntry", "dst gw oif table priority")):
    """A route as read back from the kernel (main table unless asked otherwise)."""

    __slots__ = ()
    dst: IPNetwork
    gw: IPAddress | None
    oif: int
    table: int
    priority: int


def list_routes(ipr: RtnlSocket, family: int,
                table: int | None = netlink.RT_TABLE_MAIN) -> list[RouteEntry]:
    """Routes of one family, cloned entries skipped; only table `table` unless it is None."""
    out = []
    for msg in ipr.get_routes(family=family):
        if msg["flags"] & netlink.RTM_F_CLONED:
            continue
        rt_table = msg.get_attr("RTA_TABLE") or msg["table"]
        if table is not None and rt_table != table:
            continue
        dst = msg.get_attr("RTA_DST")
        zero = "::" if family == netlink.AF_INET6 else "0.0.0.0"
        net = ipaddress.ip_network(f"{dst or zero}/{msg['dst_len']}", strict=False)
        gw = msg.get_attr("RTA_GATEWAY")
        oif = msg.get_attr("RTA_OIF") or 0
        priority = msg.get_attr("RTA_PRIORITY") or 0
        multipath = msg.get_attr("RTA_MULTIPATH")
        if multipath:
            for hop in multipath:
                hop_gw = hop.get_attr("RTA_GATEWAY")
                out.append(RouteEntry(net, ipaddress.ip_address(hop_gw) if hop_gw else None,
                                      hop.get("oif", 0), rt_table, priority))
            continue
        out.append(RouteEntry(net, ipaddress.ip_address(gw) if gw else None, oif, rt_table,
                              priority))
    return out


def output_interface(ip: str) -> str | None:
    """The name of the interface the kernel would route `ip` out of (`ip route get`), or None.

    None when there is no route (or the answer names no interface). Acts in the calling
    thread's network namespace. Raises ValueError for a malformed address, OSError when no
    netlink socket can be had.
    """
    addr = ipaddress.ip_address(ip)
    family = netlink.AF_INET6 if addr.version == 6 else netlink.AF_INET
    dst = addr.packed
    body = netlink.RTMSG.pack(family, len(dst) * 8, 0, 0, 0, 0, 0, 0, 0) + nla(netlink.RTA_DST, dst)
    answers = ask(netlink.NETLINK_ROUTE, netlink.RTM_GETROUTE, netlink.NLM_F_REQUEST, body,
                  timeout=5)
    for kind, data in answers:
        if kind != netlink.RTM_NEWROUTE:  # NLMSG_ERROR: no route (ENETUNREACH and the like)
            return None
        start = netlink.NLMSG.size + netlink.RTMSG.size
        oif = attr_u32(attr(data, start, len(data), netlink.RTA_OIF))
        if not oif:
            return None
        try:
            return socket.if_indextoname(oif)
        except OSError:
            return None
    return None
