"""ADD's link steps: the bridge itself, the veth pair, and the host end as a bridge port (its
flags and VLANs). Each step wraps a kernel refusal in the reference's message."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cni.gocompat.json import quote  # Go's %q: a name with a newline stays one line
from plugins.bridge.common import internal, refused
from plugins.linux import link, netlink, sysctl

if TYPE_CHECKING:
    from plugins.bridge.common import Undo
    from plugins.bridge.config import BridgeNetConf, Settings
    from plugins.linux.link import Link
    from plugins.linux.rtnl import RtnlSocket


def ensure_bridge(host: RtnlSocket, conf: BridgeNetConf, undo: Undo) -> Link:
    """Step 1: create or reuse the bridge, promisc, accept_ra off, up. A bridge created here
    is removed by the rollback when no port is left on it."""
    name = conf.bridge
    prefix = f"failed to create bridge {quote(name)}: "
    if not name:
        raise internal(f'{prefix}could not add "": LinkAttrs.Name cannot be empty')
    # Look before creating: on a node the bridge exists for every ADD but the first, and the
    # create request would only come back "file exists" (it changes nothing for an existing
    # link, so the outcome is the same). A name the kernel refuses to look up goes to the
    # create request, which reports it as the reference does.
    created = False
    try:
        br = link.get_link(host, name)
    except netlink.netlink_error():
        br = None
    if br is None:
        try:
            created = link.create_bridge(host, name, conf.mtu, conf.vlan_filtering)
        except netlink.netlink_error() as e:
            text = netlink.errno_text(e)
            hint = ""
            if netlink.errno_of(e) == netlink.EOPNOTSUPP and conf.vlan_filtering:
                hint = " (this kernel has no bridge VLAN filtering, needed by vlan/vlanTrunk)"
            raise internal(f"{prefix}could not add {quote(name)}: {text}{hint}") from None
        br = link.get_link(host, name)
        if br is None:
            raise internal(f"{prefix}could not lookup {quote(name)}: Link not found")
    if created:
        index = br.index
        undo.push(lambda: _remove_bridge_if_unused(host, index))
    if br.kind != "bridge":
        raise internal(f"{prefix}{quote(name)} already exists but is not a bridge")
    with refused(f"{prefix}could not set promiscuous mode on {quote(name)}: "):
        if conf.promiscMode and not br.promisc:
            link.set_promisc(host, br.index)
    sysctl.disable_accept_ra(name)
    with refused(prefix):
        if not br.up:
            link.set_up(host, br.index)
    return br


def _remove_bridge_if_unused(host: RtnlSocket, index: int) -> None:
    if any(lk.master == index for lk in link.list_links(host)):
        return
    link.delete_link(host, index)


def _make_veth(pod: RtnlSocket, host: RtnlSocket, ifname: str, conf: BridgeNetConf, mac: str,
               host_fd: int) -> str:
    """Step 3: the veth pair from inside the pod netns, peer created in the host netns.

    Returns the host end's name. Retries a random name taken in the host netns (max 10).
    """
    for _ in range(10):
        peer = link.random_veth_name()
        try:
            link.create_veth(pod, ifname, peer, host_fd, conf.mtu, mac)
            return peer
        except netlink.netlink_error() as e:
            if netlink.errno_of(e) != netlink.EEXIST:
                raise internal(f"failed to make veth pair: {netlink.errno_text(e)}") from None
            if link.get_link(pod, ifname) is None and link.get_link(host, peer) is not None:
                continue
            raise internal(
                f"container veth name ({quote(ifname)}) peer provided ({quote(peer)}) "
                "already exists"
            ) from None
    raise internal("failed to find a unique veth name")


@dataclass(slots=True)
class HostEnd:
    """The host end of a veth pair as known without asking the kernel: the name chosen for it
    and its index (the other end's IFLA_LINK)."""

    name: str
    index: int


def attach_port(host: RtnlSocket, br: Link, veth: Link | HostEnd, hairpin: bool, isolated: bool,
                vlan: int, vlans: list[int], preserve_default: bool, up: bool = False) -> None:
    """Steps 4-5: enslave the host end (and set it up, with `up`), hairpin and isolated flags,
    VLAN entries. CNIError 999 with the reference's message for a step the kernel refuses."""
    name = veth.name
    connect = f'failed to connect "{name}" to bridge {br.name}: '
    try:
        link.set_master(host, veth.index, br.index, up=up)
    except netlink.netlink_error() as e:
        if not up:
            raise internal(connect + netlink.errno_text(e)) from None
        # One request did both: redo them one by one for the reference's message.
        with refused(f'failed to set "{name}" up: '):
            link.set_up(host, veth.index)
        with refused(connect):
            link.set_master(host, veth.index, br.index)
    with refused(f"failed to setup hairpin mode for {name}: "):
        link.set_port_flag(host, veth.index, "mode", hairpin)
    with refused(f"failed to set isolated on for {name}: "):
        link.set_port_flag(host, veth.index, "isolated", isolated)
    if (vlan != 0 or vlans) and not preserve_default:
        with refused(f'failed to remove default vlan on interface "{name}": '):
            link.del_port_vlans(host, veth.index)
    with refused(f'failed to setup vlan tag on interface "{name}": '):
        if vlan != 0:
            link.add_port_vlan(host, veth.index, vlan, pvid=True, untagged=True)
        for vid in vlans:
            link.add_port_vlan(host, veth.index, vid, pvid=False, untagged=False)
    if vlan == 0 and vlans:
        with refused(f'failed to setup default native vlan tag on interface "{name}": '):
            link.add_port_vlan(host, veth.index, 1, pvid=True, untagged=True)


def setup_veth(host: RtnlSocket, pod: RtnlSocket, br: Link, ifname: str, settings: Settings,
               undo: Undo) -> tuple[Link | HostEnd, Link]:
    """Steps 3-5: (host end, container end). The container end stays down; the host end's MAC
    is not known yet (the ADD reads it once the port is up). The rollback deletes the pair."""
    conf = settings.conf
    host_fd = link.current_netns_fd()
    try:
        mac = link.parse_mac(settings.mac) or "" if settings.mac else ""
        peer = _make_veth(pod, host, ifname, conf, mac, host_fd)
    finally:
        os.close(host_fd)
    cont = link.get_link(pod, ifname)
    if cont is None:
        raise internal(f'failed to lookup "{ifname}": Link not found')
    cont_index = cont.index
    undo.push(lambda: link.delete_link(pod, cont_index))
    veth: Link | HostEnd
    if cont.peer_index:
        veth = HostEnd(peer, cont.peer_index)
    else:  # no IFLA_LINK reported: look the host end up by name
        found = link.get_link(host, peer)
        if found is None:
            raise internal(f'failed to lookup "{peer}": Link not found')
        veth = found
    # accept_ra before the link goes up (the reference writes it just after; same end state)
    sysctl.disable_accept_ra(peer)
    attach_port(host, br, veth, conf.hairpinMode, conf.portIsolation, conf.vlan, settings.vlans,
                conf.preserveDefaultVlan, up=True)
    return veth, cont
