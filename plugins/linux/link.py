"""Netlink plumbing through pyroute2, shared by bridge, portmap, flannel and the tests.

Every function takes an open `IPRoute` socket: the socket, not the calling thread, decides which
network namespace an operation acts on (a netlink socket belongs to the netns it was created in,
forever). So a plugin opens one socket in the host netns and one in the pod netns
(`iproute_in(path)`) and works with both from its main thread; only /proc/sys writes need the
thread itself inside the pod netns (`cni.netns.in_netns`).

Errors: netlink failures raise pyroute2's NetlinkError; `errno_text(err)` renders it as Go's
syscall.Errno does ("file exists", "invalid argument"), so messages match the reference's.
Nothing here builds CNI errors except where a function's docstring says so.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# pyroute2's NetlinkError class, for `except netlink_error() as e:` (here and in the plugins).
from plugins.linux.netlink import netlink_error

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
AF_INET = 2
AF_INET6 = 10
RTM_NEWROUTE = 24
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CREATE = 0x400
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RTM_F_CLONED = 0x200
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4

# errno values compared by callers
EEXIST = 17
ENODEV = 19
ENOENT = 2
EOPNOTSUPP = 95

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --------------------------------------------------------------------------- sockets


def iproute() -> Any:
    """A new rtnetlink socket in the calling thread's current network namespace, with the part
    of pyroute2's IPRoute API that this module uses (plugins/linux/rtnl.py: the same requests
    and answers, without IPRoute's asyncio machinery).

    The caller closes it. It spawns no thread; it may be used from any thread afterwards (one
    at a time) and keeps acting on the namespace it was created in.
    """
    from plugins.linux.rtnl import RtnlSocket

    return RtnlSocket()


def iproute_in(netns_path: str) -> Any:
    """An rtnetlink socket (`iproute()`) bound to the netns at `netns_path` (the thread enters
    and returns).

    Raises cni.netns.NetnsError (a CNIError with the reference's wording) when the path is not
    a usable netns.
    """
    from cni.netns import in_netns

    with in_netns(netns_path):
        return iproute()


def errno_of(err: BaseException) -> int | None:
    """The errno carried by a NetlinkError or OSError, else None."""
    code = getattr(err, "code", None)
    if isinstance(code, int):
        return code
    code = getattr(err, "errno", None)
    return code if isinstance(code, int) else None


def errno_text(err: BaseException) -> str:
    """Go's text for an errno error: strerror with a lower-case first letter."""
    from cni.errors import errno_text as go_errno_text

    code = errno_of(err)
    return str(err) if code is None else go_errno_text(code)


# --------------------------------------------------------------------------- links


@dataclass
class Link:
    """The attributes of one link this plumbing cares about."""

    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    flags: int
    operstate: str
    master: int
    peer_index: int  # IFLA_LINK: for a veth, the peer's ifindex (in the peer's netns)

    @property
    def up(self) -> bool:
        """IFF_UP is set."""
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        """IFF_PROMISC is set."""
        return bool(self.flags & IFF_PROMISC)


def _link_from_msg(msg: Any) -> Link:
    kind = ""
    info = msg.get_attr("IFLA_LINKINFO")
    if info is not None:
        kind = info.get_attr("IFLA_INFO_KIND") or ""
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME") or "",
        kind=kind,
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        flags=msg["flags"],
        operstate=msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
        master=msg.get_attr("IFLA_MASTER") or 0,
        peer_index=msg.get_attr("IFLA_LINK") or 0,
    )


_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_LINK, _IFLA_MASTER = 1, 3, 4, 5, 10
_IFLA_OPERSTATE, _IFLA_LINKINFO, _IFLA_INFO_KIND, _IFLA_INFO_SLAVE_DATA = 16, 18, 1, 5
_IFA_ADDRESS, _IFA_LOCAL, _IFA_BROADCAST, _IFA_FLAGS = 1, 2, 4, 8
_RTA_DST, _RTA_OIF, _RTA_GATEWAY = 1, 4, 5
_BRPORT_U8 = {"mode": 4, "isolated": 33}  # IFLA_BRPORT_MODE (hairpin), IFLA_BRPORT_ISOLATED


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes] | None:
    """The netlink attributes in data[off:end] by type, first occurrence of each; None when
    the layout is not the plain one (the caller then lets pyroute2 decode the message)."""
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        length = int.from_bytes(data[off:off + 2], "little")
        kind = int.from_bytes(data[off + 2:off + 4], "little") & 0x3FFF  # minus NESTED, BYTEORDER
        if length < 4 or off + length > end:
            return None
        out.setdefault(kind, data[off + 4:off + length])
        off += (length + 3) & ~3
    return out


def _text(value: bytes | None) -> str | None:
    """An asciiz attribute as pyroute2 decodes it; None when it would not give a str."""
    if value is None:
        return ""
    try:
        return value.strip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        return None


def _u32(value: bytes | None) -> int | None:
    """A uint32 attribute (0 when absent); None when it is not 4 bytes."""
    if value is None:
        return 0
    return int.from_bytes(value, "little") if len(value) == 4 else None


def _link_from_raw(data: bytes) -> Link | None:
    """The Link of one raw RTM_NEWLINK message, the same as `_link_from_msg` of pyroute2's
    decoding of it; None for anything outside the plain layout (a MAC that is not 6 bytes, a
    name that is not UTF-8, an unknown operstate, a malformed attribute)."""
    if len(data) < 32 or int.from_bytes(data[0:4], "little") != len(data):
        return None
    attrs = _attrs(data, 32, len(data))
    if attrs is None:
        return None
    kind = ""
    if _IFLA_LINKINFO in attrs:
        info = _attrs(attrs[_IFLA_LINKINFO], 0, len(attrs[_IFLA_LINKINFO]))
        kind = _text(info.get(_IFLA_INFO_KIND)) if info is not None else None
    mac = attrs.get(_IFLA_ADDRESS)
    state = attrs.get(_IFLA_OPERSTATE)
    name, mtu, master, peer = (_text(attrs.get(_IFLA_IFNAME)), _u32(attrs.get(_IFLA_MTU)),
                               _u32(attrs.get(_IFLA_MASTER)), _u32(attrs.get(_IFLA_LINK)))
    if (kind is None or name is None or mtu is None or master is None or peer is None
            or (mac is not None and len(mac) != 6) or (state is not None and (len(state) != 1
                                                                               or state[0] > 6))):
        return None
    return Link(
        index=int.from_bytes(data[20:24], "little", signed=True),
        name=name,
        kind=kind,
        mac=":".join(f"{b:02x}" for b in mac) if mac is not None else "",
        mtu=mtu,
        flags=int.from_bytes(data[24:28], "little"),
        operstate=_OPERSTATES[state[0]] if state is not None else "UNKNOWN",
        master=master,
        peer_index=peer,
    )


def get_link(ipr: Any, name: str | None = None, index: int | None = None) -> Link | None:
    """The link called `name` (or with `index`), or None when there is no such link."""
    raw_get = getattr(ipr, "get_link_raw", None)  # RtnlSocket: decode only what Link holds
    try:
        if raw_get is not None:
            raw = raw_get(index=index or 0, name=name if index is None else None)
            if raw is None:
                return None
            fast = _link_from_raw(raw)
            if fast is not None:
                return fast
            msgs = ipr.parse(raw)
        elif index is not None:
            msgs = ipr.link("get", index=index)
        else:
            msgs = ipr.link("get", ifname=name)
    except netlink_error() as e:
        if errno_of(e) in (ENODEV, ENOENT):
            return None
        raise
    for msg in msgs:
        return _link_from_msg(msg)
    return None


def list_links(ipr: Any) -> list[Link]:
    """Every link of the socket's netns."""
    return [_link_from_msg(m) for m in ipr.get_links()]


def set_up(ipr: Any, index: int) -> None:
    """Set the link administratively up."""
    if hasattr(ipr, "set_link_raw"):  # RtnlSocket: the same request without pyroute2's processors
        ipr.set_link_raw(index, IFF_UP, IFF_UP)
    else:
        ipr.link("set", index=index, state="up")


def set_promisc(ipr: Any, index: int) -> None:
    """Switch promiscuous mode on."""
    ipr.link("set", index=index, flags=IFF_PROMISC, change=IFF_PROMISC)


def set_mac(ipr: Any, index: int, mac: str) -> None:
    """Set the link's hardware address."""
    ipr.link("set", index=index, address=mac)


def set_master(ipr: Any, index: int, master: int, up: bool = False) -> None:
    """Enslave the link to `master` (a bridge); with `up`, also set it up in the same request.

    The kernel applies the master before the flags, so when going up fails the link is
    enslaved but down, as after two separate requests where the second failed.
    """
    if hasattr(ipr, "set_link_raw"):  # RtnlSocket: the same request without pyroute2's processors
        from plugins.linux.rtnl import nla

        flags = IFF_UP if up else 0
        ipr.set_link_raw(index, flags, flags, nla(_IFLA_MASTER, master.to_bytes(4, "little")))
    elif up:
        ipr.link("set", index=index, master=master, state="up")
    else:
        ipr.link("set", index=index, master=master)


def rename(ipr: Any, index: int, name: str) -> None:
    """Rename the link (the kernel refuses while it is up: set it down first)."""
    ipr.link("set", index=index, ifname=name)


def move_to_netns(ipr: Any, index: int, netns_fd: int, name: str | None = None) -> None:
    """Move the link into the netns behind `netns_fd`, renaming it there when `name` is given
    (one request, so a name clash in the target fails the move and nothing changes)."""
    kwargs: dict[str, Any] = {"index": index, "net_ns_fd": netns_fd}
    if name:
        kwargs["ifname"] = name
    ipr.link("set", **kwargs)


def delete_link(ipr: Any, index: int) -> None:
    """Delete the link (for a veth, its peer goes with it)."""
    ipr.link("del", index=index)


def delete_link_named(ipr: Any, name: str) -> bool:
    """Delete the link called `name` in one request; False when there is no such link.

    Other failures raise NetlinkError.
    """
    try:
        ipr.link("del", ifname=name)
    except netlink_error() as e:
        if errno_of(e) in (ENODEV, ENOENT):
            return False
        raise
    return True


def create_bridge(ipr: Any, name: str, mtu: int = 0, vlan_filtering: bool = False) -> bool:
    """Create bridge `name`; True when created, False when a link of that name already exists.

    An existing link is left as it is (MTU, VLAN filtering): the caller checks its kind.
    Other failures raise NetlinkError.
    """
    kwargs: dict[str, Any] = {"ifname": name, "kind": "bridge"}
    if mtu > 0:
        kwargs["mtu"] = mtu
    if vlan_filtering:
        kwargs["br_vlan_filtering"] = 1
    try:
        ipr.link("add", **kwargs)
    except netlink_error() as e:
        if errno_of(e) == EEXIST:
            return False
        raise
    return True


def random_veth_name() -> str:
    """`veth` + 8 lowercase hex digits from 4 random bytes, as the reference names host ends."""
    return "veth" + os.urandom(4).hex()


def create_veth(
    pod: Any,
    ifname: str,
    peer_name: str,
    peer_netns_fd: int,
    mtu: int = 0,
    mac: str = "",
) -> None:
    """Create veth `ifname` in the netns of socket `pod`, its peer `peer_name` directly in the
    netns behind `peer_netns_fd`. Both ends get `mtu` when > 0; `ifname` gets `mac` when given.

    Both ends stay down. Raises NetlinkError (EEXIST when either name is taken).
    """
    peer: dict[str, Any] = {"ifname": peer_name, "net_ns_fd": peer_netns_fd}
    kwargs: dict[str, Any] = {"ifname": ifname, "kind": "veth", "peer": peer}
    if mtu > 0:
        kwargs["mtu"] = mtu
        peer["mtu"] = mtu
    if mac:
        kwargs["address"] = mac
    pod.link("add", **kwargs)


def set_port_flag(ipr: Any, index: int, name: str, value: bool | int) -> None:
    """Write one bridge-port attribute of an enslaved link (`IFLA_BRPORT_<NAME>`, lower case
    without the prefix: "mode" is hairpin, "isolated", "learning", ...)."""
    kind = _BRPORT_U8.get(name)
    if kind is not None and hasattr(ipr, "set_link_raw") and 0 <= int(value) <= 0xFF:
        # RtnlSocket: the bytes IPRoute's brport("set") sends, without its request processors
        from plugins.linux.rtnl import nla

        data = nla(_IFLA_INFO_KIND, b"bridge_slave\0") + nla(_IFLA_INFO_SLAVE_DATA, nla(kind, bytes([int(value)])))
        ipr.set_link_raw(index, attrs=nla(_IFLA_LINKINFO, data))
    else:
        ipr.brport("set", index=index, **{name: int(value)})


def port_flags(ipr: Any, index: int) -> dict[str, int]:
    """The bridge-port attributes of an enslaved link (`IFLA_BRPORT_*` minus the prefix, lower case)."""
    for msg in ipr.brport("show", index=index):
        info = msg.get_attr("IFLA_PROTINFO")
        if info is None:
            return {}
        return {k[len("IFLA_BRPORT_") :].lower(): v for k, v in info["attrs"]}
    return {}


def port_vlans(ipr: Any, index: int) -> list[dict[str, int]]:
    """The bridge-VLAN entries of a port: [{'vid': n, 'flags': f}]."""
    out = []
    for msg in ipr.get_vlans(index=index):
        spec = msg.get_attr("IFLA_AF_SPEC")
        if spec is None:
            continue
        for name, value in spec["attrs"]:
            if name == "IFLA_BRIDGE_VLAN_INFO":
                out.append({"vid": value["vid"], "flags": value["flags"]})
    return out


def del_port_vlans(ipr: Any, index: int) -> None:
    """Remove every bridge-VLAN entry of the port (normally VID 1, PVID untagged)."""
    for entry in port_vlans(ipr, index):
        ipr.vlan_filter("del", index=index, vlan_info={"vid": entry["vid"]})


def add_port_vlan(ipr: Any, index: int, vid: int, pvid: bool, untagged: bool) -> None:
    """Add bridge-VLAN `vid` to the port, with the PVID/untagged flags as asked."""
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    ipr.vlan_filter("add", index=index, vlan_info={"vid": vid, "flags": flags})


def wait_oper_up(ipr: Any, index: int, budget: float = 2.55) -> Link | None:
    """Poll until the link's operstate is UP, at most `budget` seconds; the last view of the link.

    The reference sleeps 0, 50, 500, 1000, 1000 ms between looks; the same total budget is
    spent here in short steps, so an ADD returns as soon as the port is up.
    """
    deadline = time.monotonic() + budget
    delay = 0.002
    while True:
        link = get_link(ipr, index=index)
        if link is None or link.operstate == "UP":
            return link
        if time.monotonic() >= deadline:
            return link
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# --------------------------------------------------------------------------- addresses


def parse_mac(text: str) -> str | None:
    """A 6-byte MAC in any form Go's net.ParseMAC takes, as lower-case `aa:bb:..`; None if invalid."""
    s = text.strip()
    if len(s) == 17 and s[2] in ":-":
        parts = s.split(s[2])
    elif len(s) == 14 and s[4] == "." and s[9] == ".":
        parts = [p[i : i + 2] for p in s.split(".") for i in (0, 2)]
    else:
        return None
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        return None
    try:
        return ":".join(f"{int(p, 16):02x}" for p in parts)
    except ValueError:
        return None


def broadcast_for(iface: IPInterface) -> str | None:
    """The IPv4 broadcast Go's netlink adds by default (prefix < 31), else None."""
    if iface.version != 4 or iface.network.prefixlen >= 31:
        return None
    return str(iface.network.broadcast_address)


def add_address(ipr: Any, index: int, iface: IPInterface) -> None:
    """Add `iface` (address with prefix) to the link, with the broadcast Go's netlink would set.

    Raises NetlinkError (EEXIST when already present).
    """
    if hasattr(ipr, "add_addr_raw"):  # RtnlSocket: IPRoute's bytes without its processors
        from plugins.linux.rtnl import nla

        packed = iface.ip.packed
        attrs = nla(_IFA_ADDRESS, packed)  # IPRoute's order: address, broadcast, local (IPv4)
        brd = broadcast_for(iface)
        if brd is not None:
            attrs += nla(_IFA_BROADCAST, ipaddress.ip_address(brd).packed)
        if iface.version == 4:
            attrs += nla(_IFA_LOCAL, packed)
        family = AF_INET if iface.version == 4 else AF_INET6
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


def del_address(ipr: Any, index: int, iface: IPInterface) -> None:
    """Remove `iface` from the link."""
    ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)


@dataclass
class Address:
    """One address of a link, in kernel order."""

    iface: IPInterface
    flags: int
    scope: int


def list_addresses(ipr: Any, index: int, family: int | None = None) -> list[Address]:
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
    size = {AF_INET: 4, AF_INET6: 16}.get(family)
    attrs = _attrs(data, 24, len(data))
    if size is None or attrs is None:
        return None
    local, address, flags = attrs.get(_IFA_LOCAL), attrs.get(_IFA_ADDRESS), attrs.get(_IFA_FLAGS)
    if any(v is not None and len(v) != size for v in (local, address)) or (flags is not None and len(flags) != 4):
        return None
    packed = local if local is not None else address
    if packed is None:
        return False
    return Address(ipaddress.ip_interface((ipaddress.ip_address(packed), prefixlen)),
                   int.from_bytes(flags, "little") if flags is not None else flags8, scope)


def settle_addresses(ipr: Any, index: int, ifname: str, timeout: float = 5.0) -> None:
    """Wait until no IPv6 address of the link is tentative (the reference's SettleAddresses).

    Raises RuntimeError with the reference's text on DADFAILED, or when addresses are still
    tentative after `timeout` while the link is oper-up; gives up silently if it is not up.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        tentative = False
        for addr in list_addresses(ipr, index, AF_INET6):
            if addr.flags & IFA_F_DADFAILED:
                raise RuntimeError(f"link {ifname} has address {addr.iface.ip} in DADFAILED state")
            if addr.flags & IFA_F_TENTATIVE:
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


# --------------------------------------------------------------------------- routes


@dataclass
class Route:
    """A route to install: `dst` network, optional gateway, metric, table and scope."""

    dst: IPNetwork
    gw: IPAddress | None = None
    priority: int = 0
    table: int | None = None
    scope: int | None = None


def add_route(ipr: Any, oif: int, route: Route) -> None:
    """Install `route` via link `oif` with NLM_F_CREATE and no EXCL, as Go's RouteAddEcmp does:
    an IPv6 route with the same destination becomes a multipath sibling, an identical IPv4
    route fails with EEXIST. Raises NetlinkError.
    """
    plain = not route.priority and route.table is None and route.scope is None
    if hasattr(ipr, "add_route_raw") and plain and (route.gw is None or route.gw.version == route.dst.version):
        # RtnlSocket: the bytes IPRoute builds for this route (destination when not a default
        # route, output link, gateway), without its request processors
        from plugins.linux.rtnl import nla

        attrs = nla(_RTA_DST, route.dst.network_address.packed) if route.dst.prefixlen else b""
        attrs += nla(_RTA_OIF, oif.to_bytes(4, "little"))
        if route.gw is not None:
            attrs += nla(_RTA_GATEWAY, route.gw.packed)
        ipr.add_route_raw(AF_INET6 if route.dst.version == 6 else AF_INET, route.dst.prefixlen, attrs)
        return
    kwargs: dict[str, Any] = {
        "family": AF_INET6 if route.dst.version == 6 else AF_INET,
        "dst": str(route.dst.network_address),
        "dst_len": route.dst.prefixlen,
        "oif": oif,
        "proto": RTPROT_BOOT,  # Go's netlink default; pyroute2 would say "static"
        "type": RTN_UNICAST,
    }
    if route.gw is not None:
        kwargs["gateway"] = str(route.gw)
    if route.priority:
        kwargs["priority"] = route.priority
    if route.table is not None:
        kwargs["table"] = route.table
    if route.scope is not None:
        kwargs["scope"] = route.scope
    # pyroute2's "add" means CREATE|EXCL; build the request as "add" would, then send it with
    # the flags Go uses.
    from pyroute2.iproute.linux import get_arguments_processor

    request = get_arguments_processor("route", "add", kwargs, {"strict_check": False})
    ipr.route((RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE), request_filter=request)


@dataclass
class RouteEntry:
    """A route as read back from the kernel (main table unless asked otherwise)."""

    dst: IPNetwork
    gw: IPAddress | None
    oif: int
    table: int
    priority: int


def list_routes(ipr: Any, family: int, table: int | None = RT_TABLE_MAIN) -> list[RouteEntry]:
    """Routes of one family, cloned entries skipped; only table `table` unless it is None."""
    out = []
    for msg in ipr.get_routes(family=family):
        if msg["flags"] & RTM_F_CLONED:
            continue
        rt_table = msg.get_attr("RTA_TABLE") or msg["table"]
        if table is not None and rt_table != table:
            continue
        dst = msg.get_attr("RTA_DST")
        zero = "::" if family == AF_INET6 else "0.0.0.0"
        net = ipaddress.ip_network(f"{dst or zero}/{msg['dst_len']}", strict=False)
        gw = msg.get_attr("RTA_GATEWAY")
        oif = msg.get_attr("RTA_OIF") or 0
        multipath = msg.get_attr("RTA_MULTIPATH")
        if multipath:
            for hop in multipath:
                hop_gw = hop.get_attr("RTA_GATEWAY")
                out.append(
                    RouteEntry(net, ipaddress.ip_address(hop_gw) if hop_gw else None,
                               hop.get("oif", 0), rt_table, msg.get_attr("RTA_PRIORITY") or 0)
                )
            continue
        out.append(
            RouteEntry(net, ipaddress.ip_address(gw) if gw else None, oif, rt_table,
                       msg.get_attr("RTA_PRIORITY") or 0)
        )
    return out


# --------------------------------------------------------------------------- sysctls


def sysctl_quiet(name: str, value: str) -> None:
    """Write a sysctl (slash notation), ignoring failures, as the reference does for best-effort knobs."""
    from plugins.linux import sysctl

    try:
        sysctl.write(name, value)
    except OSError:
        pass


def disable_accept_ra(ifname: str) -> None:
    """`net/ipv6/conf/<if>/accept_ra = 0` (we own this link's routes); errors ignored."""
    sysctl_quiet(f"net/ipv6/conf/{ifname}/accept_ra", "0")


def enable_ip_forward(version: int) -> None:
    """Enable IPv4 (`net/ipv4/ip_forward`) or IPv6 (`net/ipv6/conf/all/forwarding`) forwarding.

    Skipped when already 1; raises OSError when the write fails.
    """
    from plugins.linux import sysctl

    name = "net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding"
    sysctl.write(name, "1")


def configure_announcements(ifname: str, enable_dad: bool) -> None:
    """Container-side neighbour knobs of the reference, errors ignored (call inside the pod netns).

    `arp_notify=1` makes the kernel send gratuitous ARP when the link comes up or its address
    changes, so neighbours learn the new MAC at once. IPv6 duplicate address detection is off
    (`accept_dad=0`) unless `enable_dad`, which sets `enhanced_dad=1` and `accept_dad=1`.
    """
    if enable_dad:
        sysctl_quiet(f"net/ipv6/conf/{ifname}/enhanced_dad", "1")
        sysctl_quiet(f"net/ipv6/conf/{ifname}/accept_dad", "1")
    else:
        sysctl_quiet(f"net/ipv6/conf/{ifname}/accept_dad", "0")
    sysctl_quiet(f"net/ipv4/conf/{ifname}/arp_notify", "1")


def prepare_ipv6(ifname: str) -> None:
    """Before the first IPv6 address (inside the pod netns): IPv6 on for `lo` and `ifname`,
    `keep_addr_on_down=1` on `ifname` (upstream 3d27709f). Raises RuntimeError with the reference's
    text when a write fails; an unreadable value is reported on stderr and skipped.
    """
    import sys

    from plugins.linux import sysctl

    for name in ("lo", ifname):
        key = f"net/ipv6/conf/{name}/disable_ipv6"
        try:
            value = sysctl.read(key)
        except OSError as e:
            sys.stderr.write(f'ipam_linux: failed to read sysctl "{key}": {errno_text(e)}\n')
            continue
        if value == "0":
            continue
        try:
            sysctl.write(key, "0")
        except OSError as e:
            raise RuntimeError(
                f'failed to enable IPv6 for interface "{name}" ({key}={value}): {errno_text(e)}'
            ) from None
    try:
        sysctl.write(f"net/ipv6/conf/{ifname}/keep_addr_on_down", "1")
    except OSError as e:
        raise RuntimeError(
            f'failed to enable keep_addr_on_down for interface "{ifname}": {errno_text(e)}'
        ) from None


# --------------------------------------------------------------------------- helpers


def families(ips: Iterable[IPInterface]) -> Sequence[int]:
    """The IP versions present in `ips`, 4 before 6."""
    seen = {i.version for i in ips}
    return [v for v in (4, 6) if v in seen]


def current_netns_fd() -> int:
    """An O_RDONLY fd on the calling thread's netns (the caller closes it)."""
    from cni.netns import current_netns_path

    return os.open(current_netns_path(), os.O_RDONLY | os.O_CLOEXEC)
