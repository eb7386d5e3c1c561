"""Re-addressing a bridge that carries another subnet's gateway (docs/self-healing.md).

A node that got a new pod subnet (flannel re-join, `kubeadm reset`, another bridge
configuration that used the name first) keeps the old gateway address on its bridge, and every
ADD then fails with `failed to set bridge addr: "cni0" already has an IP address different
from ...`. When no port other than the calling ADD's own is attached, no pod can depend on the
old address: it is replaced, with the routes through the bridge that depended on it. When
ports are attached, nothing changes and the error names them, with the pod addresses the
bridge has seen behind each, and the fix.

`readdress` is the step itself (bridge ADD calls it); `fix_bridge_address` runs it on its own in
the current network namespace (for `cnitool doctor --fix`).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_RT_TABLE_LOCAL = 255
FIX = (
    "remove the pods still attached (drain the node), then the next ADD or "
    "`cnitool doctor --fix` replaces the address"
)


@dataclass
class Port:
    """A port of the bridge: its `name`, `mac`, and the pod addresses seen behind it: IPs
    from the node's neighbour table, MACs the bridge learned on the port."""

    name: str
    mac: str
    pod_addresses: list[str] = field(default_factory=list)
    pod_macs: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.pod_addresses:
            return f"{self.name} ({', '.join(self.pod_addresses)})"
        if self.pod_macs:
            return f"{self.name} (pod MAC {', '.join(self.pod_macs)})"
        return f"{self.name} (pod address unknown)"


class PortsAttached(RuntimeError):
    """The bridge's address cannot be replaced: pods are still attached (`ports`)."""

    def __init__(self, bridge: str, old: list[IPInterface], ports: list[Port]) -> None:
        self.bridge, self.old, self.ports = bridge, old, ports
        super().__init__(f'"{bridge}" has {", ".join(map(str, old))}; {self.detail}')

    @property
    def detail(self) -> str:
        """`ports still attached: <port> (<pod addresses>); ...; fix: ...`."""
        return f'ports still attached: {"; ".join(map(str, self.ports))}; fix: {FIX}'


def conflicting(addresses: list[IPInterface], gw: IPInterface) -> list[IPInterface]:
    """The addresses among `addresses` that keep `gw` off the bridge, by the reference's rule:
    any other IPv4 address, or an IPv6 address whose subnet overlaps gw's."""
    out = []
    for a in addresses:
        if a == gw or a.version != gw.version:
            continue
        overlap = a.network.overlaps(gw.network) and (gw.ip in a.network or a.ip in gw.network)
        if gw.version == 4 or overlap:
            out.append(a)
    return out


def attached_ports(host: Any, bridge_index: int, exclude: frozenset[int] = frozenset()) -> list[Port]:
    """The bridge's ports except the ifindexes in `exclude`, with the pod addresses the node's
    neighbour table and the bridge's forwarding database place behind each (best effort)."""
    from plugins.linux import link

    ports = [
        lk for lk in link.list_links(host) if lk.master == bridge_index and lk.index not in exclude
    ]
    if not ports:
        return []
    bridge = link.get_link(host, index=bridge_index)
    macs, ips = _behind_ports(bridge.name) if bridge is not None else ({}, {})
    return [Port(p.name, p.mac, ips.get(p.name, []), macs.get(p.name, [])) for p in ports]


def _behind_ports(bridge: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Port name -> MACs the bridge learned there, and -> IPs of neighbours with those MACs.
    The neighbour table may not know a pod (no traffic yet, or flushed when the bridge's MAC
    changed), so the MACs are the fallback."""

    def dump(*argv: str) -> list[dict]:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout
            data = json.loads(out or "[]")
        except (OSError, subprocess.SubprocessError, ValueError):
            return []
        return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []

    macs: dict[str, list[str]] = {}
    port_of = {}
    for e in dump("bridge", "-j", "fdb", "show", "br", bridge):
        if e.get("state") == "permanent" or "self" in (e.get("flags") or []):
            continue
        if isinstance(e.get("mac"), str) and isinstance(e.get("ifname"), str):
            port_of[e["mac"]] = e["ifname"]
            macs.setdefault(e["ifname"], []).append(e["mac"])
    ips: dict[str, list[str]] = {}
    for n in dump("ip", "-j", "neigh", "show", "dev", bridge):
        port = port_of.get(n.get("lladdr"))
        if port and isinstance(n.get("dst"), str):
            ips.setdefault(port, []).append(n["dst"])
    return macs, ips


def readdress(
    host: Any,
    bridge: Any,
    gw: IPInterface,
    exclude: frozenset[int] = frozenset(),
    keep: frozenset[IPInterface] = frozenset(),
) -> list[str] | None:
    """Replace the addresses of `bridge` (a plugins.linux.link.Link) that conflict with `gw`
    by `gw`, and drop the routes through the bridge that depended on them, when no port but
    those in `exclude` is attached. Returns what was done, one sentence per action ([] when
    nothing conflicted), or None (nothing changed) when a conflicting address is in `keep`
    (e.g. another gateway of the same ADD). Raises PortsAttached (nothing changed) when pods
    are attached, and RuntimeError naming the address when the kernel refuses a change."""
    from plugins.linux import netlink
    from plugins.linux.addr import add_address, del_address, list_addresses
    from plugins.linux.routes import list_routes

    family = netlink.AF_INET if gw.version == 4 else netlink.AF_INET6
    old = conflicting([a.iface for a in list_addresses(host, bridge.index, family)], gw)
    if not old:
        return []
    if any(a in keep for a in old):
        return None
    ports = attached_ports(host, bridge.index, exclude)
    if ports:
        raise PortsAttached(bridge.name, old, ports)
    # Routes the kernel makes for an address itself (local table, the connected prefix) go
    # with it and are not worth a word; the others that vanish depended on it.
    before = [
        r
        for r in list_routes(host, family, None)
        if r.oif == bridge.index
        and r.table != _RT_TABLE_LOCAL
        and not (r.gw is None and any(r.dst == a.network for a in old))
    ]
    done = []
    for a in old:
        try:
            del_address(host, bridge.index, a)
        except netlink.netlink_error() as e:
            raise RuntimeError(
                f'could not remove IP address {a} from "{bridge.name}": {netlink.errno_text(e)}'
            ) from None
        done.append(f'removed {a} from "{bridge.name}" (no port attached)')
    for r in [r for r in list_routes(host, family, None) if r.oif == bridge.index]:
        if r.gw is not None and any(r.gw in a.network for a in old):
            _del_route(host, family, r)
    after = {_route_text(r) for r in list_routes(host, family, None) if r.oif == bridge.index}
    done.extend(
        f"removed route {_route_text(r)} that depended on it"
        for r in before
        if _route_text(r) not in after
    )
    try:
        add_address(host, bridge.index, gw)
    except netlink.netlink_error() as e:
        if netlink.errno_of(e) != netlink.EEXIST:
            raise RuntimeError(
                f'could not add IP address {gw} to "{bridge.name}": {netlink.errno_text(e)}'
            ) from None
    done.append(f'added {gw} to "{bridge.name}"')
    return done


def _route_text(r: Any) -> str:
    via = f" via {r.gw}" if r.gw is not None else ""
    table = f" table {r.table}" if r.table != 254 else ""
    return f"{r.dst}{via}{table}"


def _del_route(host: Any, family: int, r: Any) -> None:
    """Remove one route (best effort: one the kernel already dropped is fine)."""
    from plugins.linux import netlink

    kwargs: dict[str, Any] = {
        "family": family,
        "dst": str(r.dst.network_address),
        "dst_len": r.dst.prefixlen,
        "oif": r.oif,
        "table": r.table,
        "gateway": str(r.gw),
    }
    if r.priority:
        kwargs["priority"] = r.priority
    try:
        host.route("del", **kwargs)
    except netlink.netlink_error():
        pass


def fix_bridge_address(bridge: str, gateway: str) -> list[str]:
    """Put `gateway` (address/prefix, e.g. the FLANNEL_SUBNET gateway "10.244.2.1/24") on the
    bridge named `bridge` in the current network namespace, replacing conflicting addresses
    when no port is attached (see `readdress`). Returns the actions taken ([] when the address
    is already right or the bridge does not exist). Raises PortsAttached when pods are attached,
    ValueError for a bad `gateway`, RuntimeError when the kernel refuses a change."""
    from plugins.linux import link, rtnl

    gw = ipaddress.ip_interface(gateway)
    host = rtnl.iproute()
    try:
        br = link.get_link(host, bridge)
        if br is None or br.kind != "bridge":
            return []
        return readdress(host, br, gw) or []
    finally:
        host.close()
