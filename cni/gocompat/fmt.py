"""Values printed as Go's fmt package prints them (`%v`, `%+v`), for error texts that match the
reference's byte for byte.

Go prints a struct as `{a b}` under `%v` and `{A:a B:b}` under `%+v`, a nil pointer or error
as `<nil>`, a bool as `true`/`false`, a net.IPMask as lower-case hex and a net.IPNet through its
fields. The result types' own renderings (types.Route, types.IPConfig) and the netlink library's
route text, which the reference's bridge puts in its messages, are here too.

Standard library only (ipaddress); the result models are read, never imported at run time.
"""

from __future__ import annotations

import ipaddress

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from cni.result.models import IPConfig, Route

NIL = "<nil>"
# net.IPMask(net.IPv4zero): the 16-byte mask Go's default route for IPv4 carries
_IPV4_ZERO_MASK = "00000000000000000000ffff00000000"
# netlink.Scope's String()
_SCOPES = {0: "universe", 200: "site", 253: "link", 254: "host", 255: "nowhere"}


def boolean(value: bool) -> str:
    """`%v` of a bool: `true` or `false`."""
    return "true" if value else "false"


def nil_or(value: object) -> str:
    """`%v` of an optional value: `<nil>` for None, else its text."""
    return NIL if value is None else str(value)


def struct_plus(**fields: str) -> str:
    """`%+v` of a struct whose fields print as given: `{Name:value Other:value}`."""
    return "{" + " ".join(f"{name}:{text}" for name, text in fields.items()) + "}"


def ipnet_plus(cidr: str) -> str:
    """`%+v` of a net.IPNet holding the address and mask of `cidr`: `{IP:<ip> Mask:<hex>}`."""
    iface = ipaddress.ip_interface(cidr)
    return struct_plus(IP=str(iface.ip), Mask=iface.netmask.packed.hex())


def ipnet_value(cidr: str, ipv4_default: bool = False) -> str:
    """`%v` of a net.IPNet value: `{<ip> <hex mask>}`.

    With `ipv4_default`, an IPv4 `cidr` carries the 16-byte zero mask of Go's synthesized
    default route (net.IPMask(net.IPv4zero)) instead of its own 4-byte one.
    """
    iface = ipaddress.ip_interface(cidr)
    if ipv4_default and iface.version == 4:
        mask = _IPV4_ZERO_MASK
    else:
        mask = iface.netmask.packed.hex()
    return f"{{{iface.ip} {mask}}}"


def route_plus(route: Route) -> str:
    """`%+v` of a types.Route, as the reference prints it in CHECK errors."""
    return struct_plus(
        Dst=ipnet_plus(route.dst),
        GW=route.gw or NIL,
        MTU=str(route.mtu),
        AdvMSS=str(route.advmss),
        Priority=str(route.priority),
        Table=nil_or(route.table),
        Scope=nil_or(route.scope),
    )


def ipconfig_plus(ipc: IPConfig) -> str:
    """`%+v` of a types.IPConfig (its interface index set), as the reference prints it when
    an address cannot be added."""
    return struct_plus(
        Interface=str(ipc.interface),
        Address=ipnet_plus(ipc.address),
        Gateway=ipc.gateway or NIL,
    )


def netlink_route(
    dst: str,
    ipv4_default: bool,
    gw: object,
    dev: str,
    metric: int,
    scope: int | None,
    table: int | None,
) -> str:
    """The netlink library's Route.String() for a route the reference failed to add:
    `<dst %v> via <gw> dev <dev> metric <metric> (Scope: <scope>, Table: <table>)`.

    `dst` prints as `ipnet_value(dst, ipv4_default)`; a None `gw` as `<nil>`.
    """
    scope_text = _SCOPES.get(scope or 0, str(scope))
    return (
        f"{ipnet_value(dst, ipv4_default)} via {nil_or(gw)} dev {dev} metric {metric} "
        f"(Scope: {scope_text}, Table: {table or 0})"
    )
