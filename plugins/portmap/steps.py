"""portmap's verbs at work: the config and prevResult read, the container addresses found, the
backend (plugins/portmap/backend.py) called, conntrack flushed and route_localnet set. The
thin main in plugins/portmap/__init__.py imports this module on the first verb that needs it.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import TYPE_CHECKING

from cni.errors import ERR_INTERNAL, ERR_PLUGIN_NOT_AVAILABLE, CNIError
from cni.gocompat.decode import field
from cni.skel import CmdArgs
from plugins.linux.conntrack import delete_udp_dst_port
from plugins.linux.netfilter import default_backend
from plugins.linux.routes import output_interface
from plugins.linux.sysctl import enable_route_localnet
from plugins.portmap import backend
from plugins.portmap import config as portmap_config
from plugins.portmap.backend import Net
from plugins.portmap.config import Settings
from plugins.portmap.holders import Mapped, clashes

if TYPE_CHECKING:
    from cni.result import Result, Result100


def _parse(
    args: CmdArgs,
    *,
    strict: bool,
    prefix: str,
    prev_result: bool = False,
    config: dict | None = None,
) -> tuple[Settings, Result | None, Result100 | None]:
    """plugins.portmap.config.load of args.config (or `config` when given)."""
    conf = args.config if config is None else config
    return portmap_config.load(
        conf, default_backend, strict=strict, prefix=prefix, prev_result=prev_result
    )


def container_addresses(result: Result100, ifname: str) -> list[Net]:
    """The first IPv4 and first IPv6 address of the container (reference `parseConfig`), as
    ipaddress interfaces, IPv4 first. Addresses on another interface, or on one without a
    sandbox (host side), are skipped; an IP without an interface index, or with an index out of
    range, counts as the container's."""
    found: dict[int, Net] = {}
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
    for port in ports:
        try:
            delete_udp_dst_port(port, ipv6)
        except Exception as e:  # noqa: BLE001 - informative only, as in the reference
            sys.stderr.write(f"failed to delete stale UDP conntrack entries for port {port}: {e}\n")


def _enable_route_localnet(ip: str) -> None:
    """route_localnet=1 on the host interface that routes to the container (IPv4 only)."""
    try:
        dev = output_interface(ip)
    except OSError:
        return  # the reference skips when the route lookup fails
    if not dev:
        return
    try:
        enable_route_localnet(dev)
    except OSError as e:
        raise CNIError(
            ERR_INTERNAL, f"unable to enable route_localnet: {e.strerror or e}"
        ) from None


def add(args: CmdArgs) -> Result | None:
    """Install the mappings for the prevResult's container addresses; return the prevResult."""
    settings, prev, current = _parse(
        args, strict=True, prefix="failed to parse config: ", prev_result=True
    )
    if prev is None or current is None:
        raise CNIError(ERR_INTERNAL, "must be called as chained plugin")
    if not settings.mappings:
        return prev
    nets = container_addresses(current, args.ifname)
    if not nets:
        return prev
    mapper = backend.for_settings(settings)
    seen: dict[int, list[Mapped]] = {}
    try:
        mapper.add(settings, args.container_id, nets, seen)
        for net in nets:
            _flush_udp(settings, net.version == 6)
            if net.version == 4 and settings.snat:
                _enable_route_localnet(str(net.ip))
    except BaseException:
        # A failed ADD leaves nothing: the family already set up (IPv4 when IPv6's restore
        # fails) is removed again; the reference leaves it to the runtime's DEL.
        try:
            mapper.delete(settings, args.container_id)
        except CNIError:
            pass
        raise
    _warn_clashes(settings, args.container_id, seen)
    return prev


def _warn_clashes(settings: Settings, container_id: str, seen: dict[int, list[Mapped]]) -> None:
    """Say on stderr which mapped host ports another container already maps (only one of the
    two pods receives that traffic, and nothing else tells)."""
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


def delete(args: CmdArgs) -> None:
    """Remove this container's mappings, whatever their values (see the thin main's cmd_del)."""
    config = {k: v for k, v in args.config.items() if k.lower() != "runtimeconfig"}
    settings, _, _ = _parse(args, strict=False, prefix="failed to parse config: ", config=config)
    backend.for_settings(settings).delete(settings, args.container_id)
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
        if (
            isinstance(proto, str)
            and proto.lower() == "udp"
            and isinstance(port, int)
            and not isinstance(port, bool)
            and 0 < port <= 65535
        ):
            ports.add(port)
    return sorted(ports)


def check(args: CmdArgs) -> None:
    """Verify the mappings of each container address (reference CHECK of upstream 3d27709f)."""
    settings, prev, current = _parse(args, strict=True, prefix="", prev_result=True)
    if prev is None or current is None:
        raise CNIError(ERR_INTERNAL, "Required prevResult missing")
    if not settings.mappings:
        return
    mapper = backend.for_settings(settings)
    for net in container_addresses(current, args.ifname):
        mapper.check(settings, args.container_id, net)


def gc(args: CmdArgs) -> None:
    """Remove this network's mappings of containers that are not valid attachments."""
    settings, _, _ = _parse(args, strict=False, prefix="")
    backend.for_settings(settings).gc(settings, portmap_config.valid_container_ids(args.config))


def status(args: CmdArgs) -> None:
    """Fail with code 50 when the configured (or detected) firewall backend cannot be used."""
    settings, _, _ = _parse(args, strict=False, prefix="")
    if not backend.for_settings(settings).available():
        raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, f"the {settings.backend} backend is not usable")
