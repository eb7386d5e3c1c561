"""ADD's gateway steps: which gateways the result implies (and the default routes it gains),
the gateway addresses on the bridge or its VLAN gateway interface, and IP forwarding.

A bridge holding another subnet's address is re-addressed when only this ADD's port is
attached (plugins/bridge/readdress.py, docs/self-healing.md).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cni.errors import ERR_INVALID_NETWORK_CONFIG, CNIError
from cni.result import Interface, Route
from plugins.bridge.common import add_gateway_address, conflicting, internal, refused
from plugins.bridge.port import attach_port
from plugins.linux import addr, link, netlink, sysctl

if TYPE_CHECKING:
    from cni.result import Result100
    from plugins.bridge.config import BridgeNetConf
    from plugins.linux.addr import IPInterface
    from plugins.linux.link import Link
    from plugins.linux.rtnl import RtnlSocket

_ZERO_MAC = "00:00:00:00:00:00"


@dataclass
class Gateways:
    """Per family (4, 6): the gateway addresses to put on the bridge; and the positions in the
    result's routes of the default routes `calc_gateways` added."""

    gws: dict[int, list[IPInterface]] = field(default_factory=lambda: {4: [], 6: []})
    synthesized: set[int] = field(default_factory=set)


def _canon_net(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).network)


def calc_gateways(result: Result100, conf: BridgeNetConf) -> Gateways:
    """Step 8c: interface index 2 on every address, gateways filled in (isGateway), a default
    route per family (isDefaultGateway) unless one with a gateway is there, the gateways per
    family. CNIError 7 when a gateway is not of its address's family."""
    out = Gateways()
    default_found = {4: False, 6: False}
    for ipc in result.ips:
        iface = ipaddress.ip_interface(ipc.address)
        fam = iface.version
        ipc.interface = 2
        if ipc.gateway is None and conf.isGateway:
            ipc.gateway = str(iface.network.network_address + 1)
        if conf.isDefaultGateway and not default_found[fam]:
            zero = "0.0.0.0/0" if fam == 4 else "::/0"
            for r in result.routes:
                if r.gw is not None and _canon_net(r.dst) == zero:
                    default_found[fam] = True
                    break
            if not default_found[fam]:
                route = Route(dst=zero, gw=ipc.gateway)
                result.routes = [*result.routes, route]
                out.synthesized.add(len(result.routes) - 1)
                default_found[fam] = True
        if conf.isGateway:
            gateway = ipaddress.ip_address(ipc.gateway)
            if gateway.version != fam:
                raise CNIError(
                    ERR_INVALID_NETWORK_CONFIG,
                    f"gateway {gateway} is not of the address family of {ipc.address}",
                )
            out.gws[fam].append(ipaddress.ip_interface(f"{gateway}/{iface.network.prefixlen}"))
    return out


class AddrConflict(RuntimeError):
    """The target has an address that keeps the gateway off it (forceAddress false)."""


def ensure_addr(host: RtnlSocket, target: Link, gw: IPInterface, force: bool) -> None:
    """ensureAddr: put `gw` (address/prefix) on `target`, resolving conflicts per forceAddress,
    then pin the target's MAC to the value it had when looked up (`target.mac`).

    Raises AddrConflict for a conflicting address without `force`, RuntimeError with the
    reference's text when the kernel refuses a change."""
    family = netlink.AF_INET if gw.version == 4 else netlink.AF_INET6
    for have in addr.list_addresses(host, target.index, family):
        if have.iface == gw:
            return
        if conflicting([have.iface], gw):
            if not force:
                raise AddrConflict(
                    f'"{target.name}" already has an IP address different from {gw}'
                )
            with refused(f'could not remove IP address from "{target.name}": ', RuntimeError):
                addr.del_address(host, target.index, have.iface)
    add_gateway_address(host, target, gw)
    mac = target.mac
    if mac == _ZERO_MAC:
        # A bridge whose ports all left has MAC zero, which cannot be set: pin the MAC it took
        # from its new port instead (the reference fails here with "cannot assign requested
        # address").
        fresh = link.get_link(host, index=target.index)
        mac = fresh.mac if fresh is not None else _ZERO_MAC
        if mac == _ZERO_MAC:
            return
    with refused("could not set bridge's mac: ", RuntimeError):
        link.set_mac(host, target.index, mac)


def _ensure_vlan_interface(host: RtnlSocket, br: Link, vlan: int, preserve_default: bool) -> Link:
    """The VLAN gateway interface `<bridge>.<vlan>`: a veth pair in the host netns whose other
    end is a bridge port in that VLAN (created on first need)."""
    name = f"{br.name}.{vlan}"
    existing = link.get_link(host, name)
    if existing is not None:
        return existing
    host_fd = link.current_netns_fd()
    try:
        peer = None
        for _ in range(10):
            candidate = link.random_veth_name()
            try:
                link.create_veth(host, name, candidate, host_fd, br.mtu)
                peer = candidate
                break
            except netlink.netlink_error() as e:
                if netlink.errno_of(e) != netlink.EEXIST or link.get_link(host, name) is not None:
                    raise internal(
                        f'faild to create vlan gateway "{name}": {netlink.errno_text(e)}'
                    ) from None
        if peer is None:
            raise internal(
                f'faild to create vlan gateway "{name}": failed to find a unique veth name'
            )
    finally:
        os.close(host_fd)
    veth = link.get_link(host, peer)
    gw_link = link.get_link(host, name)
    if veth is None or gw_link is None:
        raise internal(f'failed to lookup "{name}": Link not found')
    link.set_up(host, veth.index)
    sysctl.disable_accept_ra(peer)
    attach_port(host, br, veth, False, False, vlan, [], preserve_default)
    link.set_up(host, gw_link.index)
    return gw_link


def set_gateways(host: RtnlSocket, br: Link, conf: BridgeNetConf, result: Result100,
                 gws: Gateways, own_port: int = 0) -> None:
    """Step 8f: gateway addresses on the bridge (or the VLAN gateway interface, then added to
    the result's interfaces), forwarding on for each family with a gateway.

    A bridge holding another subnet's address is re-addressed when no port but this ADD's
    (`own_port`) is attached; otherwise the error names the ports."""
    vlan_iface = None
    for fam in (4, 6):
        for gw in gws.gws[fam]:
            if conf.vlan != 0:
                try:
                    target = _ensure_vlan_interface(host, br, conf.vlan, conf.preserveDefaultVlan)
                except CNIError as e:
                    raise internal(f"failed to create vlan interface: {e.msg}") from None
                if vlan_iface is None:
                    vlan_iface = target
                    result.interfaces = [
                        *result.interfaces, Interface(name=target.name, mac=target.mac)
                    ]
                wrap = "failed to set vlan interface for bridge with addr: "
            else:
                target, wrap = br, "failed to set bridge addr: "
            try:
                try:
                    ensure_addr(host, target, gw, conf.forceAddress)
                except AddrConflict as e:
                    if target is not br:
                        raise
                    own_gws = frozenset(g for f in (4, 6) for g in gws.gws[f] if g != gw)
                    if not _readdress(host, br, gw, own_port, own_gws, wrap + str(e)):
                        raise
                    ensure_addr(host, target, gw, conf.forceAddress)
            except RuntimeError as e:
                raise internal(wrap + str(e)) from None
        if gws.gws[fam]:
            try:
                sysctl.enable_ip_forward(fam)
            except OSError as e:
                raise internal(f"failed to enable forwarding: {e}") from None


def _readdress(host: RtnlSocket, br: Link, gw: IPInterface, own_port: int,
               own_gws: frozenset[IPInterface], refusal: str) -> bool:
    """Replace the bridge's conflicting address by `gw` when only `own_port` is attached and
    say so on stderr (True); False when the conflict is with another gateway of this ADD
    (`own_gws`); else fail with `refusal` (the reference's text) and the attached ports."""
    # Imported here, on a conflict only: readdress brings `subprocess` (its port diagnosis),
    # ≈4.5 ms of start-up that an ADD without a conflict does not pay (measured).
    from plugins.bridge import readdress

    try:
        done = readdress.readdress(host, br, gw, frozenset({own_port}), own_gws)
    except readdress.PortsAttached as e:
        raise internal(f"{refusal}; {e.detail}") from None
    if done is None:
        return False
    if done:
        sys.stderr.write(f"bridge: re-addressed \"{br.name}\": {'; '.join(done)}\n")
    return True
