"""Conversions between result families (docs/spec-rules.md §4.7). Use ``Result.convert``; this is
its engine.

Every pair among 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0 converts:

* inside a family only the label changes (1.0.0 <-> 1.1.0 included: same shape, the 1.1.0
  interface/route keys are kept, exactly like the reference);
* 0.1/0.2 -> 0.3/0.4: ``ip4`` then ``ip6`` become ``ips`` (version "4"/"6" by key, no
  interface index), their routes are concatenated as is;
* 0.3/0.4 -> 1.x: ``version`` is dropped, everything else copied;
* 1.x -> 0.3/0.4: interface mtu/socketPath/pciID dropped, ``version`` derived from the address;
* 0.3/0.4 (and 1.x via 0.4.0) -> 0.1/0.2: first "4" and first "6" IP, routes filed by dst family
  with dst/gw only, routes of a missing family dropped; no IP at all is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cni.errors import ERR_INCOMPATIBLE_CNI_VERSION, ERR_INTERNAL, CNIError, one_line
from cni.result import models
from cni.version import ALL

if TYPE_CHECKING:
    from cni.result.families import Result, Result020, Result040, Result100

    FamilyOf = Callable[[str], type[Result] | None]

KNOWN_VERSIONS = ALL

# Code used for "cannot convert: no valid IP addresses". The Go skel reports this failure of
# PrintResult as an untyped error, i.e. code 999, so a drop-in plugin prints the same.
ERR_NO_VALID_IPS = ERR_INTERNAL


def convert(result: Result, to_version: str, family_of: FamilyOf) -> Result:
    """`result` as a new object in `to_version` (see the module docstring for the rules).

    `family_of` maps a version to its result class (cni.result.families passes its own).
    """
    to = to_version if isinstance(to_version, str) else str(to_version)
    to = to or "0.1.0"
    frm = result.cni_version or type(result).IMPLEMENTED
    if frm == to:
        return _relabel(result, frm)
    target = family_of(to)
    if frm not in type(result).VERSIONS or target is None:
        raise CNIError(
            ERR_INCOMPATIBLE_CNI_VERSION,
            one_line(f"no converter for CNI result version {frm} to {to}"),
        )
    if isinstance(result, target):
        return _relabel(result, to)
    r020, r040, r100 = family_of("0.2.0"), family_of("0.4.0"), family_of("1.0.0")
    if isinstance(result, r020):
        mid = _040_from_020(result, "0.4.0" if target is r100 else to, r040)
        return _100_from_040(mid, to, r100) if target is r100 else mid
    if isinstance(result, r040):
        if target is r100:
            return _100_from_040(result, to, r100)
        return _020_from_040(result, to, r020)
    assert isinstance(result, r100)
    if target is r040:
        return _040_from_100(result, to, r040)
    return _020_from_040(_040_from_100(result, "0.4.0", r040), to, r020)


def _relabel(result: Result, version: str) -> Result:
    out = result.model_copy(deep=True)
    object.__setattr__(out, "cni_version", version)
    return out


def _routes(routes: list[models.Route]) -> list[models.Route]:
    return [r.model_copy(deep=True) for r in routes]


def _dns(dns: models.DNS) -> models.DNS:
    return dns.model_copy(deep=True)


def _040_from_020(src: Result020, to: str, family: type[Result040]) -> Result040:
    ips: list[models.IPConfig040] = []
    routes: list[models.Route] = []
    for fam, ipc in (("4", src.ip4), ("6", src.ip6)):
        if ipc is None:
            continue
        ips.append(
            models.IPConfig040.model_construct(
                version=fam, interface=None, address=ipc.ip, gateway=ipc.gateway
            )
        )
        routes.extend(_routes(ipc.routes))
    return family.model_construct(
        cni_version=to, interfaces=[], ips=ips, routes=routes, dns=_dns(src.dns)
    )


def _100_from_040(src: Result040, to: str, family: type[Result100]) -> Result100:
    return family.model_construct(
        cni_version=to,
        interfaces=[
            models.Interface.model_construct(
                name=i.name, mac=i.mac, mtu=0, sandbox=i.sandbox, socketPath="", pciID=""
            )
            for i in src.interfaces
        ],
        ips=[
            models.IPConfig.model_construct(
                address=ip.address, gateway=ip.gateway, interface=ip.interface
            )
            for ip in src.ips
        ],
        routes=_routes(src.routes),
        dns=_dns(src.dns),
    )


def _040_from_100(src: Result100, to: str, family: type[Result040]) -> Result040:
    return family.model_construct(
        cni_version=to,
        interfaces=[
            models.Interface040.model_construct(name=i.name, mac=i.mac, sandbox=i.sandbox)
            for i in src.interfaces
        ],
        ips=[
            models.IPConfig040.model_construct(
                version="4" if ip.is_ipv4 else "6",
                interface=ip.interface,
                address=ip.address,
                gateway=ip.gateway,
            )
            for ip in src.ips
        ],
        routes=_routes(src.routes),
        dns=_dns(src.dns),
    )


def _020_from_040(src: Result040, to: str, family: type[Result020]) -> Result020:
    ip4: models.IPConfig020 | None = None
    ip6: models.IPConfig020 | None = None
    for ip in src.ips:
        if ip.version == "4" and ip4 is None:
            ip4 = models.IPConfig020.model_construct(ip=ip.address, gateway=ip.gateway, routes=[])
        elif ip.version == "6" and ip6 is None:
            ip6 = models.IPConfig020.model_construct(ip=ip.address, gateway=ip.gateway, routes=[])
        if ip4 is not None and ip6 is not None:
            break
    for r in src.routes:
        holder = ip4 if r.is_ipv4 else ip6
        if holder is not None:
            holder.routes.append(
                models.Route.model_construct(
                    dst=r.dst, gw=r.gw, mtu=0, advmss=0, priority=0, table=None, scope=None
                )
            )
    if ip4 is None and ip6 is None:
        raise CNIError(ERR_NO_VALID_IPS, "cannot convert: no valid IP addresses")
    return family.model_construct(cni_version=to, ip4=ip4, ip6=ip6, dns=_dns(src.dns))
