"""The bridge's CHECK (docs/reference-behaviour.md §2.7): the IPAM plugin's CHECK, then the
bridge, the container's veth and its peer on the bridge, and every prevResult address and
route in the pod netns, each mismatch in the reference's words."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from cni import invoke
from cni.gocompat import fmt
from cni.result import new_result_from_result, parse_prev_result
from plugins.bridge import config
from plugins.bridge.common import ifname_utf8, internal, open_pod
from plugins.linux import addr, link, netlink, routes, rtnl

if TYPE_CHECKING:
    from cni.result import Interface, Result100
    from cni.skel import CmdArgs
    from plugins.bridge.config import BridgeNetConf
    from plugins.linux.link import Link
    from plugins.linux.rtnl import RtnlSocket


def _named_link(ipr: RtnlSocket, name: str) -> Link:
    """The link `name` of a result interface; CNIError when the name is empty or not found."""
    if not name:
        raise internal("Interface name missing ")
    lk = link.get_link(ipr, name)
    if lk is None:
        raise internal(f"Interface name {name} not found")
    return lk


def _check_bridge(host: RtnlSocket, br_map: Interface | None, conf: BridgeNetConf) -> Link:
    """Steps 4-5: the result's bridge exists outside any sandbox, is a bridge, and has the
    result's MAC and the configured promiscuous mode."""
    br_name = br_map.name if br_map else ""
    br = _named_link(host, br_name)
    if br_map is not None and br_map.sandbox:
        raise internal(f"Interface {br_name} should not be in sandbox")
    if br.kind != "bridge":
        raise internal(f"Interface {br_name} does not have link type of bridge")
    if br_map is not None and br_map.mac and br_map.mac != br.mac:
        raise internal(f"Bridge interface {br_name} Mac doesn't match: {br_map.mac}")
    if br.promisc != conf.promiscMode:
        raise internal(
            f"Bridge interface {br_name} configured Promisc Mode {fmt.boolean(conf.promiscMode)} "
            f"doesn't match current state: {fmt.boolean(br.promisc)} "
        )
    return br


def _check_container(pod: RtnlSocket, cont_map: Interface | None, args: CmdArgs) -> Link:
    """Steps 6-7: the result's container interface is in CNI_NETNS, a veth, with its MAC."""
    sandbox = cont_map.sandbox if cont_map else ""
    if args.netns != sandbox:
        raise internal(
            f"Sandbox in prevResult {sandbox} doesn't match configured netns: {args.netns}"
        )
    cont_name = cont_map.name if cont_map else ""
    cont = _named_link(pod, cont_name)
    if cont.kind != "veth":
        raise internal(f"Error: Container interface {cont_name} not of type veth")
    if cont_map is not None and cont_map.mac and cont_map.mac != cont.mac:
        raise internal(
            f"Interface {cont_name} Mac {cont_map.mac} doesn't match container Mac: {cont.mac}"
        )
    return cont


def _check_interfaces(host: RtnlSocket, pod: RtnlSocket, result: Result100,
                      conf: BridgeNetConf, args: CmdArgs) -> None:
    """Steps 4-9: the bridge, the container end and its veth peer on the bridge."""
    br_map = cont_map = None
    for intf in result.interfaces:
        if intf.name == conf.bridge:
            br_map = intf
        elif intf.name == args.ifname and intf.sandbox == args.netns:
            cont_map = intf
    br = _check_bridge(host, br_map, conf)
    cont = _check_container(pod, cont_map, args)
    for intf in result.interfaces:
        if intf.name in (conf.bridge, args.ifname):  # the two checked above
            continue
        lk = _named_link(host, intf.name)
        if intf.sandbox:
            raise internal(f"Interface {intf.name} should not be in sandbox")
        if lk.kind != "veth":
            continue
        if lk.index != cont.peer_index or cont.index != lk.peer_index or lk.master != br.index:
            continue
        if intf.mac and intf.mac != lk.mac:
            raise internal(f"Interface {intf.name} Mac doesn't match: {intf.mac} not found")
        return
    raise internal(f"CNI veth created for bridge {conf.bridge} was not found")


def _check_addresses_routes(pod: RtnlSocket, ifname: str, result: Result100) -> None:
    """Step 10: every prevResult address and route is in the pod netns."""
    lk = link.get_link(pod, ifname)
    if lk is None:
        raise internal(f"Cannot find container link {ifname}")
    have = [a.iface for a in addr.list_addresses(pod, lk.index)]
    table = {
        4: routes.list_routes(pod, netlink.AF_INET),
        6: routes.list_routes(pod, netlink.AF_INET6),
    }
    for ipc in result.ips:
        iface = ipaddress.ip_interface(ipc.address)
        prefixlen = iface.network.prefixlen
        if not any(a.ip == iface.ip and a.network.prefixlen == prefixlen for a in have):
            raise internal(f"Failed to match addr {iface} on interface {ifname}")
        if not any(r.dst == iface.network for r in table[iface.version]):
            raise internal(
                f"Failed to find Gateway {ipc.gateway or fmt.NIL} for interface {ifname}"
            )
    for r in result.routes:
        dst = ipaddress.ip_interface(r.dst).network
        gw = ipaddress.ip_address(r.gw) if r.gw else None
        default = dst.prefixlen == 0 and int(dst.network_address) == 0
        ok = any(
            k.dst == dst and (default or gw is None or k.gw == gw) for k in table[dst.version]
        )
        if not ok:
            raise internal(f"Expected Route {fmt.route_plus(r)} not found in routing table")


def cmd_check(args: CmdArgs) -> None:
    """Verify an attachment against its prevResult (docs/reference-behaviour.md §2.7)."""
    conf = config.load(args.config, args.args).conf
    ifname_utf8(args.ifname)
    pod = open_pod(args.netns)
    host = None
    try:
        invoke.delegate_check(conf.ipam_type, args.stdin, args.env)
        prev = parse_prev_result(args.config)
        if prev is None:
            raise internal("Required prevResult missing")
        result = new_result_from_result(prev)
        host = rtnl.iproute()
        _check_interfaces(host, pod, result, conf, args)
        _check_addresses_routes(pod, args.ifname, result)
    finally:
        pod.close()
        if host is not None:
            host.close()
