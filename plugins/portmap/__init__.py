"""portmap: hostPort mappings for a chained plugin result (docs/reference-behaviour.md §3).

Chained after the network plugin, portmap reads `runtimeConfig.portMappings` and forwards each
host port to the container address found in the prevResult: the first IPv4 and the first IPv6
address that belongs to CNI_IFNAME inside the sandbox (or names no interface). The firewall work
is one batch per address family and call (iptables: one iptables-save plus at most one
iptables-restore; nftables: one transaction), see plugins/portmap/iptables.py and
plugins/portmap/nftables.py; UDP conntrack entries to the mapped host ports are flushed after the
rules are in place; with snat, `route_localnet` is set on the interface that routes to the
container so 127.0.0.1:hostPort works.

Verbs: ADD, DEL, CHECK as the reference (upstream 3d27709f) does them; GC (the reference has none)
removes this network's rules of containers not among `cni.dev/valid-attachments`; STATUS reports
whether the configured firewall backend can be used.

Deliberate differences from the reference: invalid mappings (port outside 1-65535, protocol other
than tcp/udp/sctp, hostIP that is not an address) are refused with code 7 before anything is
written; config errors use code 7 rather than 999; DEL neither judges mapping values nor parses the
prevResult, so it cannot be refused for them (without mappings it does not look at the config at
all); nftables rules use the protocol in lower case (the reference passes `TCP` through and nft
rejects it); an ADD with both address families is one nft transaction; the backend is
auto-detected by the presence of the iptables tools rather than by running them; nftables ADDs
also record the attachment for GC (plugins/portmap/nftables.py); DEL flushes the UDP conntrack
entries of its mappings as ADD does; ADD warns on stderr when another container already maps the
same hostPort, protocol and host IP (plugins/portmap/holders.py).
"""

from __future__ import annotations

import sys

from cni import __version__
from cni.errors import ERR_INTERNAL, ERR_PLUGIN_NOT_AVAILABLE, CNIError
from cni.gocompat.decode import field
from cni.skel import CmdArgs, plugin_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from plugins.portmap.config import Settings


def detect_backend() -> str:
    """The reference's default: iptables, unless only nftables is available."""
    import shutil

    if shutil.which("iptables-restore") and shutil.which("iptables-save"):
        return "iptables"
    return "nftables" if shutil.which("nft") else "iptables"


def _parse(args: CmdArgs, *, strict: bool, prefix: str, prev_result: bool = False,
           config: dict | None = None):
    """(Settings, prevResult as given or None, its 1.x form or None), checked in the
    reference's order: JSON shape, prevResult, then the portmap keys. Errors are prefixed as
    the reference prefixes them (`failed to parse config: ` for ADD and DEL). `config`
    replaces args.config when given."""
    from cni.config import load
    from plugins.portmap.config import PortMapNetConf, resolve

    prev = current = None
    try:
        conf = load(PortMapNetConf, args.config if config is None else config)
        if prev_result:
            prev, current = _prev_result(args)
        return resolve(conf, detect_backend, strict=strict), prev, current
    except CNIError as e:
        raise CNIError(e.code, prefix + e.msg, e.details) from None


def _prev_result(args: CmdArgs):
    """(prevResult as given or None, its 1.x form or None)."""
    from cni.result import new_result_from_result, parse_prev_result

    prev = parse_prev_result(args.config)
    if prev is None:
        return None, None
    try:
        return prev, new_result_from_result(prev)
    except CNIError as e:
        raise CNIError(e.code, f"could not convert result to current version: {e.msg}") from None


def container_addresses(result, ifname: str) -> list:
    """The first IPv4 and first IPv6 address of the container (reference `parseConfig`), as
    ipaddress interfaces, IPv4 first. Addresses on another interface, or on one without a
    sandbox (host side), are skipped; an IP without an interface index, or with an index out of
    range, counts as the container's."""
    import ipaddress

    found: dict[int, object] = {}
    interfaces = result.interfaces
    for ip in result.ips:
        net = ipaddress.ip_interface(ip.address)
        if net.version in found:
            continue
        idx = ip.interface
        if idx is not None and 0 <= idx < len(interfaces):
            iface = interfaces[idx]
            if iface.name != ifname or not iface.sandbox:
                continue
        found[net.version] = net
    return [found[v] for v in (4, 6) if v in found]


def _flush_udp(settings: Settings, ipv6: bool) -> None:
    """Drop stale UDP conntrack entries to the mapped host ports; failures are only logged."""
    _flush_udp_ports(sorted({m.host_port for m in settings.mappings if m.proto == "udp"}), ipv6)


def _flush_udp_ports(ports: list[int], ipv6: bool) -> None:
    """Drop the UDP conntrack entries of this family to `ports`; failures are only logged."""
    if not ports:
        return
    from plugins.linux.conntrack import delete_udp_dst_port

    for port in ports:
        try:
            delete_udp_dst_port(port, ipv6)
        except Exception as e:  # noqa: BLE001 - informative only, as in the reference
            sys.stderr.write(f"failed to delete stale UDP conntrack entries for port {port}: {e}\n")


def _enable_route_localnet(ip: str) -> None:
    """route_localnet=1 on the host interface that routes to the container (IPv4 only)."""
    from plugins.linux.routes import output_interface
    from plugins.linux.sysctl import enable_route_localnet

    try:
        dev = output_interface(ip)
    except OSError:
        return  # the reference skips when the route lookup fails
    if not dev:
        return
    try:
        enable_route_localnet(dev)
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"unable to enable route_localnet: {e.strerror or e}") from None


def cmd_add(args: CmdArgs):
    """Install the mappings for the prevResult's container addresses; return the prevResult."""
    settings, prev, current = _parse(
        args, strict=True, prefix="failed to parse config: ", prev_result=True
    )
    if prev is None:
        raise CNIError(ERR_INTERNAL, "must be called as chained plugin")
    if not settings.mappings:
        return prev
    nets = container_addresses(current, args.ifname)
    if not nets:
        return prev
    backend = _backend_module(settings)
    seen: dict[int, list] = {}
    try:
        backend.add(settings, args.container_id, nets, seen)
        for net in nets:
            _flush_udp(settings, net.version == 6)
            if net.version == 4 and settings.snat:
                _enable_route_localnet(str(net.ip))
    except BaseException:
        # A failed ADD leaves nothing: the family already set up (IPv4 when IPv6's restore
        # fails) is removed again; the reference leaves it to the runtime's DEL.
        try:
            backend.delete(settings, args.container_id)
        except CNIError:
            pass
        raise
    _warn_clashes(settings, args.container_id, seen)
    return prev


def _warn_clashes(settings: Settings, container_id: str, seen: dict[int, list]) -> None:
    """Say on stderr which mapped host ports another container already maps (only one of the
    two pods receives that traffic, and nothing else tells)."""
    from plugins.portmap.holders import clashes

    found: list[str] = []
    for version, mapped in sorted(seen.items()):
        wanted = [
            (m.proto, m.host_port, m.destination(version))
            for m in settings.mappings
            if m.applies_to(version)
        ]
        found += [c for c in clashes(wanted, mapped, container_id) if c not in found]
    for text in found:
        sys.stderr.write(
            f"portmap: {text}; only one of them receives that traffic: remove the other "
            "mapping or use another hostPort\n"
        )


def _backend_module(settings: Settings):
    """The firewall backend module of `settings`. Both offer one interface, as the reference's
    PortMapper: add(settings, container_id, nets, seen), delete(settings, container_id),
    check(settings, container_id, net) and gc(settings, valid_container_ids)."""
    if settings.backend == "nftables":
        from plugins.portmap import nftables as portmap_nftables

        return portmap_nftables
    from plugins.portmap import iptables as portmap_iptables

    return portmap_iptables


def _has_raw_mappings(conf: dict) -> bool:
    """Does the raw config carry a non-empty runtimeConfig.portMappings? (keys matched as Go does)"""
    mappings = field(field(conf, "runtimeconfig"), "portmappings")
    return not (mappings is None or mappings == [])


def cmd_del(args: CmdArgs) -> None:
    """Remove this container's mappings; nothing to do when the config carries no mappings.

    Without mappings DEL returns before the config is even modelled (the reference parses it
    first and can refuse the DEL): most pods have no hostPort, and their DEL should cost nothing.
    With mappings, their values are never judged, not even their shape: the rules are found by
    the container ID, and a DEL refused over a malformed `portMappings` would stop a list's DEL
    for good (the reference refuses it).
    """
    if not _has_raw_mappings(args.config):
        return
    config = {k: v for k, v in args.config.items() if k.lower() != "runtimeconfig"}
    settings, _, _ = _parse(args, strict=False, prefix="failed to parse config: ", config=config)
    _backend_module(settings).delete(settings, args.container_id)
    # As ADD does: conntrack entries would keep sending UDP flows to the deleted pod's address.
    ports = _raw_udp_host_ports(args.config)
    for ipv6 in (False, True):
        _flush_udp_ports(ports, ipv6)


def _raw_udp_host_ports(conf: dict) -> list[int]:
    """The UDP host ports of runtimeConfig.portMappings, read leniently (malformed entries are
    skipped: DEL never refuses over them)."""
    mappings = field(field(conf, "runtimeconfig"), "portmappings")
    ports = set()
    for m in mappings if isinstance(mappings, list) else ():
        proto, port = field(m, "protocol"), field(m, "hostport")
        if isinstance(proto, str) and proto.lower() == "udp" and isinstance(port, int) \
                and not isinstance(port, bool) and 0 < port <= 65535:
            ports.add(port)
    return sorted(ports)


def cmd_check(args: CmdArgs) -> None:
    """Verify the mappings of each container address (reference CHECK of upstream 3d27709f)."""
    settings, prev, current = _parse(args, strict=True, prefix="", prev_result=True)
    if prev is None:
        raise CNIError(ERR_INTERNAL, "Required prevResult missing")
    if not settings.mappings:
        return
    backend = _backend_module(settings)
    for net in container_addresses(current, args.ifname):
        backend.check(settings, args.container_id, net)


def cmd_gc(args: CmdArgs) -> None:
    """Remove this network's mappings of containers that are not valid attachments."""
    from cni.config import valid_attachments

    settings, _, _ = _parse(args, strict=False, prefix="")
    valid = {cid for cid, _ifname in valid_attachments(args.config)}
    _backend_module(settings).gc(settings, valid)


def cmd_status(args: CmdArgs) -> None:
    """Fail with code 50 when the configured (or detected) firewall backend cannot be used."""
    settings, _, _ = _parse(args, strict=False, prefix="")
    if settings.backend == "nftables":
        from plugins.linux import nftables

        usable = nftables.available()
    else:
        from plugins.linux import iptables

        usable = iptables.available(False)
    if not usable:
        raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, f"the {settings.backend} backend is not usable")


PLUGIN = plugin_of(globals(), f"CNI portmap plugin {__version__} (pycni)")

