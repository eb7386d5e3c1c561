"""bridge: attach a pod to a Linux bridge with a veth pair (docs/reference-behaviour.md §2).

ADD reads like the reference (docs/reference-behaviour.md §2.3): bridge, veth pair, port flags and
VLANs, spoof check, IPAM, container addresses and routes, gateway on the bridge, forwarding,
masquerade, port state, result. The netlink and firewall work lives in plugins/linux/.

Deliberate differences from the reference (upstream 3d27709f):
* A failed ADD undoes everything it created (the reference undoes only the IPAM lease and the
  spoof check): the veth pair, a bridge it created (when no port is left on it), masquerade
  rules; so a bad request leaves nothing behind. Addresses and sysctls on a bridge that
  existed before are left as they are.
* Configuration errors that need no kernel (VLAN range, trunk list, hairpin with promisc,
  IPAM with disableContainerInterface, MTU range, masquerade backend name, MAC syntax) are
  code 7 and are raised before anything is created.
* DEL with an empty or vanished CNI_NETNS, or with the pod's link already gone, still removes
  the masquerade rules (found by their chain name and comment); the reference leaks them.
* GC forwards to the IPAM plugin and removes masquerade rules of attachments not in the
  valid list (the reference's bridge has no GC).
"""

from __future__ import annotations

from cni import __version__
from cni.errors import ERR_INTERNAL, ERR_INVALID_NETWORK_CONFIG, CNIError
from cni.skel import CmdArgs, Plugin
from cni.version import CURRENT

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Any

    from plugins.bridge_config import BridgeNetConf, Loaded
    from plugins.linux.link import Link


def _err(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


class _Undo:
    """Compensating actions for a failing ADD, run in reverse order, best effort."""

    def __init__(self) -> None:
        self._steps: list[Any] = []

    def push(self, step: Any) -> None:
        self._steps.append(step)

    def run(self) -> None:
        while self._steps:
            step = self._steps.pop()
            try:
                step()
            except Exception:  # noqa: BLE001 - rollback must go on; the original error wins
                pass


# --------------------------------------------------------------------------- ADD pieces


def _ensure_bridge(host: Any, conf: BridgeNetConf, undo: _Undo) -> Link:
    """Step 1: create or reuse the bridge, promisc, accept_ra off, up."""
    from cni.gocompat.json import quote as q  # Go's %q: a name with a newline stays one line
    from plugins.linux import link, netlink
    from plugins.linux.sysctl import disable_accept_ra

    name = conf.bridge
    prefix = f"failed to create bridge {q(name)}: "
    if not name:
        raise _err(f'{prefix}could not add "": LinkAttrs.Name cannot be empty')
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
            raise _err(f'{prefix}could not add {q(name)}: {text}{hint}') from None
        br = link.get_link(host, name)
        if br is None:
            raise _err(f'{prefix}could not lookup {q(name)}: Link not found')
    if created:
        undo.push(lambda: _remove_bridge_if_unused(host, br.index))
    if br.kind != "bridge":
        raise _err(f"{prefix}{q(name)} already exists but is not a bridge")
    try:
        if conf.promiscMode and not br.promisc:
            link.set_promisc(host, br.index)
    except netlink.netlink_error() as e:
        raise _err(f'{prefix}could not set promiscuous mode on {q(name)}: {netlink.errno_text(e)}') from None
    disable_accept_ra(name)
    try:
        if not br.up:
            link.set_up(host, br.index)
    except netlink.netlink_error() as e:
        raise _err(prefix + netlink.errno_text(e)) from None
    return br


def _remove_bridge_if_unused(host: Any, index: int) -> None:
    from plugins.linux import link

    if any(lk.master == index for lk in link.list_links(host)):
        return
    link.delete_link(host, index)


def _make_veth(pod: Any, host: Any, ifname: str, conf: BridgeNetConf, mac: str, host_fd: int) -> str:
    """Step 3: the veth pair from inside the pod netns, peer created in the host netns.

    Returns the host end's name. Retries a random name taken in the host netns (max 10).
    """
    from cni.gocompat.json import quote as go_quote
    from plugins.linux import link, netlink

    for _ in range(10):
        peer = link.random_veth_name()
        try:
            link.create_veth(pod, ifname, peer, host_fd, conf.mtu, mac)
            return peer
        except netlink.netlink_error() as e:
            if netlink.errno_of(e) != netlink.EEXIST:
                raise _err(f"failed to make veth pair: {netlink.errno_text(e)}") from None
            if link.get_link(pod, ifname) is None and link.get_link(host, peer) is not None:
                continue
            raise _err(
                f"container veth name ({go_quote(ifname)}) peer provided ({go_quote(peer)}) already exists"
            ) from None
    raise _err("failed to find a unique veth name")


class _HostEnd:
    """The host end of a veth pair as known without asking the kernel: the name chosen for it
    and its index (the other end's IFLA_LINK)."""

    __slots__ = ("name", "index")

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index


def _attach_port(host: Any, br: Link, veth: Link | _HostEnd, hairpin: bool, isolated: bool,
                 vlan: int, vlans: list[int], preserve_default: bool, up: bool = False) -> None:
    """Step 4-5: enslave the host end (and set it up, with `up`), hairpin and isolated flags,
    VLAN entries."""
    from plugins.linux import link, netlink

    name = veth.name
    nlerr = netlink.netlink_error()
    try:
        link.set_master(host, veth.index, br.index, up=up)
    except nlerr as e:
        if not up:
            raise _err(f'failed to connect "{name}" to bridge {br.name}: {netlink.errno_text(e)}') from None
        # One request did both: redo them one by one for the reference's message.
        try:
            link.set_up(host, veth.index)
        except nlerr as e2:
            raise _err(f'failed to set "{name}" up: {netlink.errno_text(e2)}') from None
        try:
            link.set_master(host, veth.index, br.index)
        except nlerr as e2:
            raise _err(f'failed to connect "{name}" to bridge {br.name}: {netlink.errno_text(e2)}') from None
    try:
        link.set_port_flag(host, veth.index, "mode", hairpin)
    except nlerr as e:
        raise _err(f"failed to setup hairpin mode for {name}: {netlink.errno_text(e)}") from None
    try:
        link.set_port_flag(host, veth.index, "isolated", isolated)
    except nlerr as e:
        raise _err(f"failed to set isolated on for {name}: {netlink.errno_text(e)}") from None
    if (vlan != 0 or vlans) and not preserve_default:
        try:
            link.del_port_vlans(host, veth.index)
        except nlerr as e:
            raise _err(f'failed to remove default vlan on interface "{name}": {netlink.errno_text(e)}') from None
    try:
        if vlan != 0:
            link.add_port_vlan(host, veth.index, vlan, pvid=True, untagged=True)
        for vid in vlans:
            link.add_port_vlan(host, veth.index, vid, pvid=False, untagged=False)
    except nlerr as e:
        raise _err(f'failed to setup vlan tag on interface "{name}": {netlink.errno_text(e)}') from None
    if vlan == 0 and vlans:
        try:
            link.add_port_vlan(host, veth.index, 1, pvid=True, untagged=True)
        except nlerr as e:
            raise _err(
                f'failed to setup default native vlan tag on interface "{name}": {netlink.errno_text(e)}'
            ) from None


def _setup_veth(host: Any, pod: Any, br: Link, ifname: str, conf: BridgeNetConf, loaded: Loaded,
                undo: _Undo) -> tuple[Link | _HostEnd, Link]:
    """Steps 3-5: (host end, container end). The container end stays down; the host end's MAC
    is not known yet (cmd_add reads it once the port is up)."""
    from plugins.linux import link
    from plugins.linux.sysctl import disable_accept_ra

    host_fd = link.current_netns_fd()
    try:
        mac = link.parse_mac(loaded.mac) or "" if loaded.mac else ""
        peer = _make_veth(pod, host, ifname, conf, mac, host_fd)
    finally:
        import os

        os.close(host_fd)
    cont = link.get_link(pod, ifname)
    if cont is None:
        raise _err(f'failed to lookup "{ifname}": Link not found')
    undo.push(lambda: link.delete_link(pod, cont.index))
    if cont.peer_index:
        veth: Link | _HostEnd = _HostEnd(peer, cont.peer_index)
    else:  # no IFLA_LINK reported: look the host end up by name
        found = link.get_link(host, peer)
        if found is None:
            raise _err(f'failed to lookup "{peer}": Link not found')
        veth = found
    # accept_ra before the link goes up (the reference writes it just after; same end state)
    disable_accept_ra(peer)
    _attach_port(host, br, veth, conf.hairpinMode, conf.portIsolation, conf.vlan, loaded.vlans,
                 conf.preserveDefaultVlan, up=True)
    return veth, cont


class _Gateways:
    """Per family: the gateway addresses to put on the bridge."""

    def __init__(self) -> None:
        self.gws: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {4: [], 6: []}
        self.synthesized: set[int] = set()  # ids of default routes added by calc_gateways


def _calc_gateways(result: Any, conf: BridgeNetConf) -> _Gateways:
    """Step 8c: interface index 2, gateways filled in, default routes, gateways per family."""
    import ipaddress

    from cni.result import Route

    out = _Gateways()
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


def _canon_net(cidr: str) -> str:
    import ipaddress

    return str(ipaddress.ip_interface(cidr).network)


def _go_ipnet_value(cidr: str, synthesized: bool) -> str:
    """Go's %v of a net.IPNet value: `{<ip> <hex mask>}` (the reference's route-error text)."""
    import ipaddress

    iface = ipaddress.ip_interface(cidr)
    if synthesized and iface.version == 4:
        mask = "00000000000000000000ffff00000000"  # net.IPMask(net.IPv4zero), a 16-byte mask
    else:
        mask = iface.netmask.packed.hex()
    return f"{{{iface.ip} {mask}}}"


_SCOPES = {0: "universe", 200: "site", 253: "link", 254: "host", 255: "nowhere"}


def _configure_iface(pod: Any, ifname: str, index: int, result: Any, gws: _Gateways) -> None:
    """Step 8e (ipam.ConfigureIface): addresses, link up, DAD settle, routes."""
    import ipaddress

    from plugins.linux import link, netlink
    from plugins.linux.addr import add_address, settle_addresses
    from plugins.linux.routes import Route, add_route

    nlerr = netlink.netlink_error()
    v4gw = v6gw = None
    for ipc in result.ips:
        if ipc.interface is None:
            continue
        idx = ipc.interface
        if idx < 0 or idx >= len(result.interfaces) or result.interfaces[idx].name != ifname:
            raise _err(f'failed to add IP addr {_ipc_text(ipc)} to "{ifname}": invalid interface index')
        iface = ipaddress.ip_interface(ipc.address)
        try:
            add_address(pod, index, iface)
        except nlerr as e:
            raise _err(f'failed to add IP addr {_ipc_text(ipc)} to "{ifname}": {netlink.errno_text(e)}') from None
        if ipc.gateway is not None:
            gw = ipaddress.ip_address(ipc.gateway)
            if gw.version == 4 and v4gw is None:
                v4gw = gw
            elif gw.version == 6 and v6gw is None:
                v6gw = gw
    try:
        link.set_up(pod, index)
    except nlerr as e:
        raise _err(f'failed to set "{ifname}" UP: {netlink.errno_text(e)}') from None
    if v6gw is not None:
        try:
            settle_addresses(pod, index, ifname)
        except RuntimeError as e:
            raise _err(f'failed to settle addresses for "{ifname}": {e}') from None
    for pos, r in enumerate(result.routes):
        dst = ipaddress.ip_interface(r.dst).network
        gw = ipaddress.ip_address(r.gw) if r.gw else (v4gw if dst.version == 4 else v6gw)
        route = Route(dst=dst, gw=gw, priority=r.priority, table=r.table, scope=r.scope)
        if gw is not None and gw.version != dst.version:
            problem = "gateway, source, and destination ip are not the same IP family"  # Go netlink's
        else:
            try:
                add_route(pod, index, route)
                continue
            except nlerr as e:
                problem = netlink.errno_text(e)
        scope = _SCOPES.get(r.scope or 0, str(r.scope))
        raise _err(
            f"failed to add route '{_go_ipnet_value(r.dst, pos in gws.synthesized)} via "
            f"{gw if gw is not None else '<nil>'} dev {ifname} metric {r.priority} "
            f"(Scope: {scope}, Table: {r.table or 0})': {problem}"
        )


def _ipc_text(ipc: Any) -> str:
    import ipaddress

    iface = ipaddress.ip_interface(ipc.address)
    mask = iface.netmask.packed.hex()
    gw = ipc.gateway if ipc.gateway else "<nil>"
    return f"{{Interface:{ipc.interface} Address:{{IP:{iface.ip} Mask:{mask}}} Gateway:{gw}}}"


_ZERO_MAC = "00:00:00:00:00:00"


class _AddrConflict(RuntimeError):
    """The target has an address that keeps the gateway off it (forceAddress false)."""


def _ensure_addr(host: Any, target: Link, gw: Any, force: bool) -> None:
    """ensureAddr: put `gw` (address/prefix) on `target`, resolving conflicts per forceAddress,
    then pin the target's MAC to the value it had when looked up (`target.mac`)."""
    from plugins.linux import link, netlink
    from plugins.linux.addr import add_address, del_address, list_addresses

    family = netlink.AF_INET if gw.version == 4 else netlink.AF_INET6
    nlerr = netlink.netlink_error()
    for addr in list_addresses(host, target.index, family):
        if addr.iface == gw:
            return
        a = addr.iface
        overlap = a.network.overlaps(gw.network) and (gw.ip in a.network or a.ip in gw.network)
        if gw.version == 4 or overlap:
            if not force:
                raise _AddrConflict(f'"{target.name}" already has an IP address different from {gw}')
            try:
                del_address(host, target.index, a)
            except nlerr as e:
                raise RuntimeError(
                    f'could not remove IP address from "{target.name}": {netlink.errno_text(e)}'
                ) from None
    try:
        add_address(host, target.index, gw)
    except nlerr as e:
        if netlink.errno_of(e) != netlink.EEXIST:
            raise RuntimeError(
                f'could not add IP address {gw} to "{target.name}": {netlink.errno_text(e)}'
            ) from None
    mac = target.mac
    if mac == _ZERO_MAC:
        # A bridge whose ports all left has MAC zero, which cannot be set: pin the MAC it took
        # from its new port instead (the reference fails here with "cannot assign requested address").
        fresh = link.get_link(host, index=target.index)
        mac = fresh.mac if fresh is not None else _ZERO_MAC
        if mac == _ZERO_MAC:
            return
    try:
        link.set_mac(host, target.index, mac)
    except nlerr as e:
        raise RuntimeError(f"could not set bridge's mac: {netlink.errno_text(e)}") from None


def _ensure_vlan_interface(host: Any, br: Link, vlan: int, preserve_default: bool) -> Link:
    """The VLAN gateway interface `<bridge>.<vlan>`: a veth pair in the host netns whose other
    end is a bridge port in that VLAN (created on first need)."""
    from plugins.linux import link, netlink
    from plugins.linux.sysctl import disable_accept_ra

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
                    raise _err(f'faild to create vlan gateway "{name}": {netlink.errno_text(e)}') from None
        if peer is None:
            raise _err(f'faild to create vlan gateway "{name}": failed to find a unique veth name')
    finally:
        import os

        os.close(host_fd)
    veth = link.get_link(host, peer)
    gw_link = link.get_link(host, name)
    if veth is None or gw_link is None:
        raise _err(f'failed to lookup "{name}": Link not found')
    link.set_up(host, veth.index)
    disable_accept_ra(peer)
    _attach_port(host, br, veth, False, False, vlan, [], preserve_default)
    link.set_up(host, gw_link.index)
    return gw_link


def _set_gateways(host: Any, br: Link, conf: BridgeNetConf, result: Any, gws: _Gateways,
                  own_port: int = 0) -> None:
    """Step 8f: gateway addresses on the bridge (or the VLAN gateway interface), forwarding.

    A bridge holding another subnet's address is re-addressed when no port but this ADD's
    (`own_port`) is attached (plugins/bridge_readdress.py); otherwise the error names the ports."""
    from cni.result import Interface
    from plugins.linux.sysctl import enable_ip_forward

    vlan_iface = None
    for fam in (4, 6):
        for gw in gws.gws[fam]:
            if conf.vlan != 0:
                try:
                    target = _ensure_vlan_interface(host, br, conf.vlan, conf.preserveDefaultVlan)
                except CNIError as e:
                    raise _err(f"failed to create vlan interface: {e.msg}") from None
                if vlan_iface is None:
                    vlan_iface = target
                    result.interfaces = [*result.interfaces, Interface(name=target.name, mac=target.mac)]
                wrap = "failed to set vlan interface for bridge with addr: "
            else:
                target, wrap = br, "failed to set bridge addr: "
            try:
                try:
                    _ensure_addr(host, target, gw, conf.forceAddress)
                except _AddrConflict as e:
                    if target is not br:
                        raise
                    own_gws = frozenset(g for f in (4, 6) for g in gws.gws[f] if g != gw)
                    if not _readdress(host, br, gw, own_port, own_gws, wrap + str(e)):
                        raise
                    _ensure_addr(host, target, gw, conf.forceAddress)
            except RuntimeError as e:
                raise _err(wrap + str(e)) from None
        if gws.gws[fam]:
            try:
                enable_ip_forward(fam)
            except OSError as e:
                raise _err(f"failed to enable forwarding: {e}") from None


def _readdress(host: Any, br: Link, gw: Any, own_port: int, own_gws: frozenset,
               refusal: str) -> bool:
    """Replace the bridge's conflicting address by `gw` when only `own_port` is attached and
    say so on stderr (True); False when the conflict is with another gateway of this ADD
    (`own_gws`); else fail with `refusal` (the reference's text) and the attached ports."""
    import sys

    from plugins import bridge_readdress

    try:
        done = bridge_readdress.readdress(host, br, gw, frozenset({own_port}), own_gws)
    except bridge_readdress.PortsAttached as e:
        raise _err(f"{refusal}; {e.detail}") from None
    if done is None:
        return False
    if done:
        sys.stderr.write(f"bridge: re-addressed \"{br.name}\": {'; '.join(done)}\n")
    return True


def _ifname_utf8(ifname: str) -> None:
    """CNIError 4 when CNI_IFNAME is not UTF-8 text (the kernel is handed it as such)."""
    from cni.validate import utf8_name

    utf8_name(ifname, "interface name")


def _open_pod(netns: str) -> Any:
    from plugins.linux import rtnl

    try:
        return rtnl.iproute_in(netns)
    except CNIError as e:
        from cni.gocompat.json import quote

        raise _err(f"failed to open netns {quote(netns)}: {e.msg}") from None


def _ipam_add(conf: BridgeNetConf, args: CmdArgs, undo: _Undo) -> Any:
    from cni import invoke
    from cni.result import new_result_from_result

    raw = invoke.delegate_add(conf.ipam_type, args.stdin, args.env)
    undo.push(lambda: invoke.delegate_del(conf.ipam_type, args.stdin, args.env))
    return new_result_from_result(raw)


def cmd_add(args: CmdArgs) -> Any:
    """Attach the pod: see the module docstring and docs/reference-behaviour.md §2.3."""
    import ipaddress

    from cni.netns import in_netns
    from cni.result import DNS, Interface, new_result
    from plugins import bridge_config
    from plugins.linux import link, netlink, rtnl
    from plugins.linux.sysctl import configure_announcements, prepare_ipv6

    loaded = bridge_config.load(args.config, args.args)
    bridge_config.preflight(loaded)
    conf = loaded.conf
    _ifname_utf8(args.ifname)
    undo = _Undo()
    host = rtnl.iproute()
    pod = None
    try:
        br = _ensure_bridge(host, conf, undo)
        pod = _open_pod(args.netns)
        veth, cont = _setup_veth(host, pod, br, args.ifname, conf, loaded, undo)
        result = new_result(
            CURRENT,
            interfaces=[
                Interface(name=br.name, mac=br.mac),
                Interface(name=veth.name, mac=""),  # read below, once the port is up
                Interface(name=cont.name, mac=cont.mac, sandbox=args.netns),
            ],
        )
        if conf.macspoofchk:
            from plugins.linux import spoofcheck

            ref = spoofcheck.ref_id(args.container_id, args.ifname)
            spoofcheck.setup(veth.name, cont.mac, ref)
            undo.push(lambda: spoofcheck.teardown(ref))
        if conf.is_layer3:
            ipam = _ipam_add(conf, args, undo)
            result.ips = ipam.ips
            result.routes = ipam.routes
            result.dns = ipam.dns
            if not result.ips:
                raise _err("IPAM plugin returned missing IP config")
            gws = _calc_gateways(result, conf)
            has_v6 = any(ipaddress.ip_interface(i.address).version == 6 for i in result.ips)
            with in_netns(args.netns):
                configure_announcements(args.ifname, conf.enabledad)
                if has_v6:
                    try:
                        prepare_ipv6(args.ifname)
                    except RuntimeError as e:
                        raise _err(str(e)) from None
            _configure_iface(pod, args.ifname, cont.index, result, gws)
            if conf.isGateway:
                _set_gateways(host, br, conf, result, gws, veth.index)
            if conf.ipMasq:
                from plugins.linux import ipmasq

                ips = [ipaddress.ip_interface(i.address) for i in result.ips]
                undo.push(lambda: ipmasq.teardown(ips, conf.name, args.ifname, args.container_id))
                ipmasq.setup(conf.ipMasqBackend, ips, conf.name, args.ifname, args.container_id)
        elif not conf.disableContainerInterface:
            try:
                link.set_up(pod, cont.index)
            except netlink.netlink_error() as e:
                raise _err(f'failed to set "{args.ifname}" up: {netlink.errno_text(e)}') from None
        if not conf.disableContainerInterface:
            fresh = link.wait_oper_up(host, veth.index)
            if fresh is None or fresh.operstate != "UP":
                text = fresh.operstate.lower() if fresh is not None else "notpresent"
                raise _err(f"bridge port in error state: {text}")
        else:
            fresh = link.get_link(host, index=veth.index)
            if fresh is None:
                raise _err(f'failed to lookup "{veth.name}": Link not found')
        result.interfaces[1].mac = fresh.mac
        br_now = link.get_link(host, conf.bridge)
        if br_now is None or br_now.kind != "bridge":
            raise _err(f'"{conf.bridge}" already exists but is not a bridge')
        result.interfaces[0].mac = br_now.mac
        if conf.dns_set():
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


# --------------------------------------------------------------------------- DEL


def _global_unicast(iface: Any) -> bool:
    ip = iface.ip
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    return not (ip.version == 4 and int(ip) == 0xFFFFFFFF)


def _delete_pod_link(netns: str, ifname: str, want_addrs: bool = True) -> list | None:
    """Delete CNI_IFNAME in the pod netns; its global unicast addresses (an empty list unless
    `want_addrs`), or None when the link was not there. Raises NetnsNotFoundError when the
    netns is gone, other CNIErrors as is."""
    from plugins.linux import link, netlink, rtnl
    from plugins.linux.addr import list_addresses

    pod = rtnl.iproute_in(netns)
    try:
        if not want_addrs:  # one request: delete by name
            try:
                return [] if link.delete_link_named(pod, ifname) else None
            except netlink.netlink_error() as e:
                raise _err(f'failed to delete "{ifname}": {netlink.errno_text(e)}') from None
        lk = link.get_link(pod, ifname)
        if lk is None:
            return None
        addrs = [a.iface for a in list_addresses(pod, lk.index) if _global_unicast(a.iface)]
        try:
            link.delete_link(pod, lk.index)
        except netlink.netlink_error() as e:
            raise _err(f'failed to delete "{ifname}": {netlink.errno_text(e)}') from None
        return addrs
    finally:
        pod.close()


def cmd_del(args: CmdArgs) -> None:
    """Detach the pod (docs/reference-behaviour.md §2.6); idempotent, tolerates a vanished
    netns."""
    import sys

    from cni import invoke
    from cni.netns import NetnsNotFoundError
    from plugins import bridge_config

    conf = bridge_config.load(args.config, args.args).conf
    try:
        _ifname_utf8(args.ifname)
    except CNIError:  # ADD refuses such a name: the pod side cannot exist, the lease can
        if conf.is_layer3:
            invoke.delegate_del(conf.ipam_type, args.stdin, args.env)
        return
    addrs = None
    if args.netns:
        try:
            # the addresses only matter to the masquerade teardown
            addrs = _delete_pod_link(args.netns, args.ifname, conf.is_layer3 and conf.ipMasq)
        except NetnsNotFoundError:
            addrs = None
    if conf.is_layer3:
        invoke.delegate_del(conf.ipam_type, args.stdin, args.env)
    if conf.macspoofchk:
        from plugins.linux import spoofcheck

        try:
            spoofcheck.teardown(spoofcheck.ref_id(args.container_id, args.ifname))
        except CNIError as e:
            sys.stderr.write(f"{e.msg}\n")
    if conf.is_layer3 and conf.ipMasq:
        from plugins.linux import ipmasq

        ipmasq.teardown(addrs or None, conf.name, args.ifname, args.container_id)


# --------------------------------------------------------------------------- CHECK


def _go_bool(v: bool) -> str:
    return "true" if v else "false"


def _route_text(r: Any) -> str:
    """Go's %+v of a types.Route, as the reference prints it in CHECK errors (upstream 3d27709f)."""
    import ipaddress

    dst = ipaddress.ip_interface(r.dst)
    mask = dst.netmask.packed.hex()
    gw = r.gw if r.gw else "<nil>"
    table = "<nil>" if r.table is None else str(r.table)
    scope = "<nil>" if r.scope is None else str(r.scope)
    return (
        f"{{Dst:{{IP:{dst.ip} Mask:{mask}}} GW:{gw} MTU:{r.mtu} AdvMSS:{r.advmss} "
        f"Priority:{r.priority} Table:{table} Scope:{scope}}}"
    )


def _check_interfaces(host: Any, pod: Any, result: Any, conf: BridgeNetConf, args: CmdArgs) -> None:
    """Steps 4-9 of docs/reference-behaviour.md §2.7: the bridge, the container end and its veth
    peer on the bridge."""
    from plugins.linux import link

    br_map = cont_map = None
    for intf in result.interfaces:
        if intf.name == conf.bridge:
            br_map = intf
        elif intf.name == args.ifname and intf.sandbox == args.netns:
            cont_map = intf
    br_name = br_map.name if br_map else ""
    if not br_name:
        raise _err("Interface name missing ")
    br = link.get_link(host, br_name)
    if br is None:
        raise _err(f"Interface name {br_name} not found")
    if br_map.sandbox:
        raise _err(f"Interface {br_name} should not be in sandbox")
    if br.kind != "bridge":
        raise _err(f"Interface {br_name} does not have link type of bridge")
    if br_map.mac and br_map.mac != br.mac:
        raise _err(f"Bridge interface {br_name} Mac doesn't match: {br_map.mac}")
    if br.promisc != conf.promiscMode:
        raise _err(
            f"Bridge interface {br_name} configured Promisc Mode {_go_bool(conf.promiscMode)} "
            f"doesn't match current state: {_go_bool(br.promisc)} "
        )
    sandbox = cont_map.sandbox if cont_map else ""
    if args.netns != sandbox:
        raise _err(f"Sandbox in prevResult {sandbox} doesn't match configured netns: {args.netns}")
    cont_name = cont_map.name if cont_map else ""
    if not cont_name:
        raise _err("Interface name missing ")
    cont = link.get_link(pod, cont_name)
    if cont is None:
        raise _err(f"Interface name {cont_name} not found")
    if cont.kind != "veth":
        raise _err(f"Error: Container interface {cont_name} not of type veth")
    if cont_map.mac and cont_map.mac != cont.mac:
        raise _err(f"Interface {cont_name} Mac {cont_map.mac} doesn't match container Mac: {cont.mac}")
    found_veth = False
    for intf in result.interfaces:
        if intf.name in (br_name, cont_name):
            continue
        if not intf.name:
            raise _err("Interface name missing ")
        lk = link.get_link(host, intf.name)
        if lk is None:
            raise _err(f"Interface name {intf.name} not found")
        if intf.sandbox:
            raise _err(f"Interface {intf.name} should not be in sandbox")
        if lk.kind != "veth":
            continue
        if lk.index != cont.peer_index or cont.index != lk.peer_index or lk.master != br.index:
            continue
        if intf.mac and intf.mac != lk.mac:
            raise _err(f"Interface {intf.name} Mac doesn't match: {intf.mac} not found")
        found_veth = True
        break
    if not found_veth:
        raise _err(f"CNI veth created for bridge {conf.bridge} was not found")


def _check_addresses_routes(pod: Any, ifname: str, result: Any) -> None:
    """Step 10 of docs/reference-behaviour.md §2.7: every prevResult address and route is in the
    pod netns."""
    import ipaddress

    from plugins.linux import link, netlink
    from plugins.linux.addr import list_addresses
    from plugins.linux.routes import list_routes

    lk = link.get_link(pod, ifname)
    if lk is None:
        raise _err(f"Cannot find container link {ifname}")
    have = [a.iface for a in list_addresses(pod, lk.index)]
    routes = {4: list_routes(pod, netlink.AF_INET), 6: list_routes(pod, netlink.AF_INET6)}
    for ipc in result.ips:
        iface = ipaddress.ip_interface(ipc.address)
        if not any(a.ip == iface.ip and a.network.prefixlen == iface.network.prefixlen for a in have):
            raise _err(f"Failed to match addr {iface} on interface {ifname}")
        if not any(r.dst == iface.network for r in routes[iface.version]):
            gw = ipc.gateway if ipc.gateway else "<nil>"
            raise _err(f"Failed to find Gateway {gw} for interface {ifname}")
    for r in result.routes:
        dst = ipaddress.ip_interface(r.dst).network
        gw = ipaddress.ip_address(r.gw) if r.gw else None
        default = dst.prefixlen == 0 and int(dst.network_address) == 0
        ok = any(
            k.dst == dst and (default or gw is None or k.gw == gw) for k in routes[dst.version]
        )
        if not ok:
            raise _err(f"Expected Route {_route_text(r)} not found in routing table")


def cmd_check(args: CmdArgs) -> None:
    """Verify an attachment against its prevResult (docs/reference-behaviour.md §2.7)."""
    from cni import invoke
    from cni.result import new_result_from_result, parse_prev_result
    from plugins import bridge_config
    from plugins.linux import rtnl

    conf = bridge_config.load(args.config, args.args).conf
    _ifname_utf8(args.ifname)
    pod = _open_pod(args.netns)
    host = None
    try:
        invoke.delegate_check(conf.ipam_type, args.stdin, args.env)
        prev = parse_prev_result(args.config)
        if prev is None:
            raise _err("Required prevResult missing")
        result = new_result_from_result(prev)
        host = rtnl.iproute()
        _check_interfaces(host, pod, result, conf, args)
        _check_addresses_routes(pod, args.ifname, result)
    finally:
        pod.close()
        if host is not None:
            host.close()


# --------------------------------------------------------------------------- STATUS / GC


def cmd_status(args: CmdArgs) -> None:
    """Ready when the IPAM plugin (if any) says so."""
    from cni import invoke
    from plugins import bridge_config

    conf = bridge_config.load(args.config, "").conf
    if conf.ipam_type:
        invoke.delegate_status(conf.ipam_type, args.stdin, args.env)


def cmd_gc(args: CmdArgs) -> None:
    """Forward GC to IPAM, then drop masquerade rules of attachments not in the valid list.

    Both run even when one fails; the errors are reported together.
    """
    from cni import invoke
    from cni.config import valid_attachments
    from plugins import bridge_config
    from plugins.linux import ipmasq

    conf = bridge_config.load(args.config, "").conf
    valid = valid_attachments(args.config)
    errors: list[str] = []
    if conf.ipam_type:
        try:
            invoke.delegate_gc(conf.ipam_type, args.stdin, args.env)
        except CNIError as e:
            errors.append(e.msg)
    try:
        ipmasq.gc(conf.name, valid)
    except CNIError as e:
        errors.append(e.msg)
    if errors:
        raise _err("; ".join(errors))


PLUGIN = Plugin(
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
    about=f"CNI bridge plugin {__version__} (pycni)",
)

