"""The bridge's ADD, step by step as the reference's cmdAdd (docs/reference-behaviour.md §2.3):
bridge, veth pair, port flags and VLANs, spoof check, IPAM, container addresses and routes,
gateway on the bridge, forwarding, masquerade, port state, result.

Every step pushes its undo on a stack that runs when a later step fails, so a failed ADD
leaves nothing behind (plugins/bridge/__init__.py lists where that goes beyond the reference).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from cni import invoke
from cni.gocompat import fmt
from cni.netns import in_netns
from cni.result import DNS, Interface, Result100, new_result_from_result
from cni.version import CURRENT
from plugins.bridge import config
from plugins.bridge.common import Undo, ifname_utf8, internal, open_pod, refused
from plugins.bridge.gateway import Gateways, calc_gateways, set_gateways
from plugins.bridge.port import ensure_bridge, setup_veth
from plugins.linux import addr, link, netlink, routes, rtnl, sysctl

if TYPE_CHECKING:
    from cni.skel import CmdArgs
    from plugins.bridge.config import BridgeNetConf
    from plugins.linux.rtnl import RtnlSocket


def _ipam_add(conf: BridgeNetConf, args: CmdArgs, undo: Undo) -> Result100:
    """Step 8a: the IPAM plugin's result (in the 1.x family); the rollback releases the lease."""
    raw = invoke.delegate_add(conf.ipam_type, args.stdin, args.env)
    undo.push(lambda: invoke.delegate_del(conf.ipam_type, args.stdin, args.env))
    return new_result_from_result(raw)


def configure_iface(pod: RtnlSocket, ifname: str, index: int, result: Result100,
                    gws: Gateways) -> None:
    """Step 8e (ipam.ConfigureIface): addresses, link up, DAD settle, routes, each refusal in
    the reference's words."""
    v4gw = v6gw = None
    for ipc in result.ips:
        if ipc.interface is None:
            continue
        idx = ipc.interface
        prefix = f'failed to add IP addr {fmt.ipconfig_plus(ipc)} to "{ifname}": '
        if idx < 0 or idx >= len(result.interfaces) or result.interfaces[idx].name != ifname:
            raise internal(prefix + "invalid interface index")
        with refused(prefix):
            addr.add_address(pod, index, ipaddress.ip_interface(ipc.address))
        if ipc.gateway is not None:
            gw = ipaddress.ip_address(ipc.gateway)
            if gw.version == 4 and v4gw is None:
                v4gw = gw
            elif gw.version == 6 and v6gw is None:
                v6gw = gw
    with refused(f'failed to set "{ifname}" UP: '):
        link.set_up(pod, index)
    if v6gw is not None:
        try:
            addr.settle_addresses(pod, index, ifname)
        except RuntimeError as e:
            raise internal(f'failed to settle addresses for "{ifname}": {e}') from None
    for pos, r in enumerate(result.routes):
        dst = ipaddress.ip_interface(r.dst).network
        gw = ipaddress.ip_address(r.gw) if r.gw else (v4gw if dst.version == 4 else v6gw)
        route = routes.Route(dst=dst, gw=gw, priority=r.priority, table=r.table, scope=r.scope)
        if gw is not None and gw.version != dst.version:
            # Go netlink's text
            problem = "gateway, source, and destination ip are not the same IP family"
        else:
            try:
                routes.add_route(pod, index, route)
                continue
            except netlink.netlink_error() as e:
                problem = netlink.errno_text(e)
        text = fmt.netlink_route(r.dst, pos in gws.synthesized, gw, ifname, r.priority, r.scope,
                                 r.table)
        raise internal(f"failed to add route '{text}': {problem}")


def _layer3(host: RtnlSocket, pod: RtnlSocket, br: link.Link, veth_index: int, cont_index: int,
            conf: BridgeNetConf, args: CmdArgs, result: Result100, undo: Undo) -> None:
    """Steps 8-9: IPAM, the container's addresses and routes, the gateways, masquerade."""
    ipam = _ipam_add(conf, args, undo)
    result.ips = ipam.ips
    result.routes = ipam.routes
    result.dns = ipam.dns
    if not result.ips:
        raise internal("IPAM plugin returned missing IP config")
    gws = calc_gateways(result, conf)
    has_v6 = any(ipaddress.ip_interface(i.address).version == 6 for i in result.ips)
    with in_netns(args.netns):
        sysctl.configure_announcements(args.ifname, conf.enabledad)
        if has_v6:
            try:
                sysctl.prepare_ipv6(args.ifname)
            except RuntimeError as e:
                raise internal(str(e)) from None
    configure_iface(pod, args.ifname, cont_index, result, gws)
    if conf.isGateway:
        set_gateways(host, br, conf, result, gws, veth_index)
    if conf.ipMasq:
        from plugins.bridge import firewall  # start-up: only when asked (firewall.py docstring)

        ips = [ipaddress.ip_interface(i.address) for i in result.ips]
        firewall.masq_setup(conf, ips, args.ifname, args.container_id, undo)


def _port_up_mac(host: RtnlSocket, conf: BridgeNetConf, veth_name: str, veth_index: int) -> str:
    """Step 10: the host end's MAC, once the port is up (CNIError when it went to an error
    state or vanished)."""
    if not conf.disableContainerInterface:
        fresh = link.wait_oper_up(host, veth_index)
        if fresh is None or fresh.operstate != "UP":
            text = fresh.operstate.lower() if fresh is not None else "notpresent"
            raise internal(f"bridge port in error state: {text}")
    else:
        fresh = link.get_link(host, index=veth_index)
        if fresh is None:
            raise internal(f'failed to lookup "{veth_name}": Link not found')
    return fresh.mac


def cmd_add(args: CmdArgs) -> Result100:
    """Attach the pod (docs/reference-behaviour.md §2.3) and return its result (skel prints it
    in the caller's version, which it is checked to fit).
    On any failure everything this ADD made is undone before the error is raised."""
    settings = config.load(args.config, args.args)
    config.preflight(settings)
    conf = settings.conf
    ifname_utf8(args.ifname)
    undo = Undo()
    host = rtnl.iproute()
    pod = None
    try:
        br = ensure_bridge(host, conf, undo)
        pod = open_pod(args.netns)
        veth, cont = setup_veth(host, pod, br, args.ifname, settings, undo)
        result = Result100(
            cni_version=CURRENT,
            interfaces=[
                Interface(name=br.name, mac=br.mac),
                Interface(name=veth.name, mac=""),  # read below, once the port is up
                Interface(name=cont.name, mac=cont.mac, sandbox=args.netns),
            ],
        )
        if conf.macspoofchk:
            from plugins.bridge import firewall  # start-up: only when asked (firewall.py)

            firewall.spoofcheck_setup(args.container_id, args.ifname, veth.name, cont.mac, undo)
        if conf.is_layer3:
            _layer3(host, pod, br, veth.index, cont.index, conf, args, result, undo)
        elif not conf.disableContainerInterface:
            with refused(f'failed to set "{args.ifname}" up: '):
                link.set_up(pod, cont.index)
        result.interfaces[1].mac = _port_up_mac(host, conf, veth.name, veth.index)
        br_now = link.get_link(host, conf.bridge)
        if br_now is None or br_now.kind != "bridge":
            raise internal(f'"{conf.bridge}" already exists but is not a bridge')
        result.interfaces[0].mac = br_now.mac
        if conf.dns_set() and conf.dns is not None:
            d = conf.dns
            result.dns = DNS(
                nameservers=d.nameservers or [], domain=d.domain or "",
                search=d.search or [], options=d.options or [],
            )
        # Convert now, inside the rollback scope: a result the caller's version cannot carry
        # (an L2 result for 0.1.0/0.2.0) fails before anything is left behind.
        result.convert(args.cni_version or "0.1.0")
        return result
    except BaseException:
        undo.run()
        raise
    finally:
        if pod is not None:
            pod.close()
        host.close()
