"""Links and bridge ports through an rtnetlink socket (rtnl.py), shared by bridge, flannel,
the doctor and the tests; addresses live in addr.py, routes in routes.py, sysctl knobs in
sysctl.py.

Every function takes an open socket (`rtnl.iproute()`): the socket, not the calling thread,
decides which network namespace an operation acts on (a netlink socket belongs to the netns it
was created in, forever). So a plugin opens one socket in the host netns and one in the pod
netns (`rtnl.iproute_in(path)`) and works with both from its main thread; only /proc/sys writes
need the thread itself inside the pod netns (`cni.netns.in_netns`).

Errors: netlink failures raise pyroute2's NetlinkError; `netlink.errno_text(err)` renders it as
Go's syscall.Errno does ("file exists", "invalid argument"), so messages match the reference's.
Nothing here builds CNI errors.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

from cni.netns import current_netns_path
from plugins.linux import netlink
from plugins.linux.netlink import attr_text, attr_u32, attrs, errno_of, netlink_error, nla

TYPE_CHECKING = False  # typing and dataclasses cost ms at start-up; type checkers honour this
if TYPE_CHECKING:
    from typing import Any

    from plugins.linux.rtnl import RtnlSocket

BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_BRPORT_U8 = {"mode": 4, "isolated": 33}  # IFLA_BRPORT_MODE (hairpin), IFLA_BRPORT_ISOLATED


class Link(namedtuple("Link", "index name kind mac mtu flags operstate master peer_index")):
    """The attributes of one link this plumbing cares about: index, name, kind, mac, mtu,
    flags, operstate, master (an ifindex, 0 for none) and peer_index (IFLA_LINK: for a veth,
    the peer's ifindex in the peer's netns)."""

    __slots__ = ()
    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    flags: int
    operstate: str
    master: int
    peer_index: int

    @property
    def up(self) -> bool:
        """IFF_UP is set."""
        return bool(self.flags & netlink.IFF_UP)

    @property
    def promisc(self) -> bool:
        """IFF_PROMISC is set."""
        return bool(self.flags & netlink.IFF_PROMISC)


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


def _link_from_raw(data: bytes) -> Link | None:
    """The Link of one raw RTM_NEWLINK message, the same as `_link_from_msg` of pyroute2's
    decoding of it; None for anything outside the plain layout (a MAC that is not 6 bytes, a
    name that is not UTF-8, an unknown operstate, a malformed attribute)."""
    if len(data) < 32 or int.from_bytes(data[0:4], "little") != len(data):
        return None
    found = attrs(data, 32, len(data))
    if found is None:
        return None
    kind: str | None = ""
    if netlink.IFLA_LINKINFO in found:
        info = attrs(found[netlink.IFLA_LINKINFO], 0, len(found[netlink.IFLA_LINKINFO]))
        kind = attr_text(info.get(netlink.IFLA_INFO_KIND)) if info is not None else None
    mac = found.get(netlink.IFLA_ADDRESS)
    state = found.get(netlink.IFLA_OPERSTATE)
    name, mtu = attr_text(found.get(netlink.IFLA_IFNAME)), attr_u32(found.get(netlink.IFLA_MTU))
    master, peer = attr_u32(found.get(netlink.IFLA_MASTER)), attr_u32(found.get(netlink.IFLA_LINK))
    if (kind is None or name is None or mtu is None or master is None or peer is None
            or (mac is not None and len(mac) != 6)
            or (state is not None and (len(state) != 1 or state[0] > 6))):
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


def get_link(ipr: RtnlSocket, name: str | None = None, index: int | None = None) -> Link | None:
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
        if errno_of(e) in (netlink.ENODEV, netlink.ENOENT):
            return None
        raise
    for msg in msgs:
        return _link_from_msg(msg)
    return None


def list_links(ipr: RtnlSocket) -> list[Link]:
    """Every link of the socket's netns."""
    return [_link_from_msg(m) for m in ipr.get_links()]


def set_up(ipr: RtnlSocket, index: int) -> None:
    """Set the link administratively up."""
    if hasattr(ipr, "set_link_raw"):  # RtnlSocket: the same request without pyroute2's processors
        ipr.set_link_raw(index, netlink.IFF_UP, netlink.IFF_UP)
    else:
        ipr.link("set", index=index, state="up")


def set_down(ipr: RtnlSocket, index: int) -> None:
    """Set the link administratively down."""
    ipr.set_link_raw(index, 0, netlink.IFF_UP)


def set_promisc(ipr: RtnlSocket, index: int) -> None:
    """Switch promiscuous mode on."""
    ipr.link("set", index=index, flags=netlink.IFF_PROMISC, change=netlink.IFF_PROMISC)


def set_mac(ipr: RtnlSocket, index: int, mac: str) -> None:
    """Set the link's hardware address."""
    ipr.link("set", index=index, address=mac)


def set_master(ipr: RtnlSocket, index: int, master: int, up: bool = False) -> None:
    """Enslave the link to `master` (a bridge); with `up`, also set it up in the same request.

    The kernel applies the master before the flags, so when going up fails the link is
    enslaved but down, as after two separate requests where the second failed.
    """
    if hasattr(ipr, "set_link_raw"):  # RtnlSocket: the same request without pyroute2's processors
        flags = netlink.IFF_UP if up else 0
        master_attr = nla(netlink.IFLA_MASTER, master.to_bytes(4, "little"))
        ipr.set_link_raw(index, flags, flags, master_attr)
    elif up:
        ipr.link("set", index=index, master=master, state="up")
    else:
        ipr.link("set", index=index, master=master)


def rename(ipr: RtnlSocket, index: int, name: str) -> None:
    """Rename the link (the kernel refuses while it is up: set it down first)."""
    ipr.link("set", index=index, ifname=name)


def move_to_netns(ipr: RtnlSocket, index: int, netns_fd: int, name: str | None = None) -> None:
    """Move the link into the netns behind `netns_fd`, renaming it there when `name` is given
    (one request, so a name clash in the target fails the move and nothing changes)."""
    kwargs: dict[str, Any] = {"index": index, "net_ns_fd": netns_fd}
    if name:
        kwargs["ifname"] = name
    ipr.link("set", **kwargs)


def delete_link(ipr: RtnlSocket, index: int) -> None:
    """Delete the link (for a veth, its peer goes with it)."""
    ipr.link("del", index=index)


def delete_link_named(ipr: RtnlSocket, name: str) -> bool:
    """Delete the link called `name` in one request; False when there is no such link.

    Other failures raise NetlinkError.
    """
    try:
        ipr.link("del", ifname=name)
    except netlink_error() as e:
        if errno_of(e) in (netlink.ENODEV, netlink.ENOENT):
            return False
        raise
    return True


def create_bridge(ipr: RtnlSocket, name: str, mtu: int = 0, vlan_filtering: bool = False) -> bool:
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
        if errno_of(e) == netlink.EEXIST:
            return False
        raise
    return True


def random_veth_name() -> str:
    """`veth` + 8 lowercase hex digits from 4 random bytes, as the reference names host ends."""
    return "veth" + os.urandom(4).hex()


def create_veth(
    pod: RtnlSocket,
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


def set_port_flag(ipr: RtnlSocket, index: int, name: str, value: bool | int) -> None:
    """Write one bridge-port attribute of an enslaved link (`IFLA_BRPORT_<NAME>`, lower case
    without the prefix: "mode" is hairpin, "isolated", "learning", ...)."""
    kind = _BRPORT_U8.get(name)
    if kind is not None and hasattr(ipr, "set_link_raw") and 0 <= int(value) <= 0xFF:
        # RtnlSocket: the bytes IPRoute's brport("set") sends, without its request processors
        data = nla(netlink.IFLA_INFO_KIND, b"bridge_slave\0")
        data += nla(netlink.IFLA_INFO_SLAVE_DATA, nla(kind, bytes([int(value)])))
        ipr.set_link_raw(index, attrs=nla(netlink.IFLA_LINKINFO, data))
    else:
        ipr.brport("set", index=index, **{name: int(value)})


def port_flags(ipr: RtnlSocket, index: int) -> dict[str, int]:
    """The bridge-port attributes of an enslaved link (`IFLA_BRPORT_*` minus the prefix, lower
    case)."""
    for msg in ipr.brport("show", index=index):
        info = msg.get_attr("IFLA_PROTINFO")
        if info is None:
            return {}
        return {k[len("IFLA_BRPORT_") :].lower(): v for k, v in info["attrs"]}
    return {}


def port_vlans(ipr: RtnlSocket, index: int) -> list[dict[str, int]]:
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


def del_port_vlans(ipr: RtnlSocket, index: int) -> None:
    """Remove every bridge-VLAN entry of the port (normally VID 1, PVID untagged)."""
    for entry in port_vlans(ipr, index):
        ipr.vlan_filter("del", index=index, vlan_info={"vid": entry["vid"]})


def add_port_vlan(ipr: RtnlSocket, index: int, vid: int, pvid: bool, untagged: bool) -> None:
    """Add bridge-VLAN `vid` to the port, with the PVID/untagged flags as asked."""
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    ipr.vlan_filter("add", index=index, vlan_info={"vid": vid, "flags": flags})


def wait_oper_up(ipr: RtnlSocket, index: int, budget: float = 2.55) -> Link | None:
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


def parse_mac(text: str) -> str | None:
    """A 6-byte MAC in any form Go's net.ParseMAC takes, as lower-case `aa:bb:..`; None if
    invalid."""
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



def current_netns_fd() -> int:
    """An O_RDONLY fd on the calling thread's netns (the caller closes it)."""
    return os.open(current_netns_path(), os.O_RDONLY | os.O_CLOEXEC)
