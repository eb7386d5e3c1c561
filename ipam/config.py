"""host-local configuration: the pydantic models and the reference's load-and-validate steps.

`load(conf, cni_args)` is the one way in. It follows the reference's LoadIPAMConfig order
(docs/reference-behaviour.md §1.1, §1.2): decode (shapes, then address texts), `ipam` present,
CNI_ARGS, requested IPs, range sets assembled (runtime ipRanges, legacy single range, `ranges`),
each set canonicalised, the 0.2.0 per-family limit, and overlaps between sets. Messages are the
reference's; the codes are the well-known ones (6 undecodable, 4 bad CNI_ARGS, 7 invalid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cni.args import load_args
from cni.config import CNIModel
from cni.config import load as load_model
from cni.errors import (
    ERR_DECODING_FAILURE,
    ERR_INVALID_ENVIRONMENT_VARIABLES,
    ERR_INVALID_NETWORK_CONFIG,
    CNIError,
    one_line,
)
from cni.gocompat.decode import go_validate
from cni.result import Route
from cni.validate import safe_path
from cni.version import greater_than_or_equal
from ipam.addr import Addr, parse, parse_cidr
from ipam.range import RangeError, RangeSet, RawRange, canonicalize_set

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


class RangeConf(CNIModel):
    """One range object: `subnet` (required) and optional `rangeStart`, `rangeEnd`, `gateway`."""

    subnet: str | None = None
    rangeStart: str | None = None
    rangeEnd: str | None = None
    gateway: str | None = None


class HostLocalIPAM(RangeConf):
    """The `ipam` object. The legacy single-range keys sit at this level (RangeConf's fields)."""

    type: str | None = None
    ranges: list[list[RangeConf | None] | None] | None = None
    routes: list[dict[str, Any] | None] | None = None
    dataDir: str | None = None
    resolvConf: str | None = None


class HostLocalCNIArgs(CNIModel):
    """`args.cni`: requested IPs (`a.b.c.d` or `a.b.c.d/nn`)."""

    ips: list[str | None] | None = None


class HostLocalArgs(CNIModel):
    """The `args` object; host-local reads `args.cni.ips`."""

    cni: HostLocalCNIArgs | None = None


class HostLocalRuntimeConfig(CNIModel):
    """`runtimeConfig`: capabilities `ips` and `ipRanges`."""

    ips: list[str | None] | None = None
    ipRanges: list[list[RangeConf | None] | None] | None = None


class HostLocalNet(CNIModel):
    """What host-local reads of the whole network config it is given (the caller's)."""

    name: str | None = None
    cniVersion: str | None = None
    ipam: HostLocalIPAM | None = None
    runtimeConfig: HostLocalRuntimeConfig | None = None
    args: HostLocalArgs | None = None


@dataclass
class Settings:
    """A validated host-local configuration, ready for the allocator and the store."""

    name: str
    cni_version: str
    range_sets: list[RangeSet]
    requested: list[Addr] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    data_dir: str = DEFAULT_DATA_DIR
    resolv_conf: str = ""


def _decode_error(msg: str) -> CNIError:
    return CNIError(ERR_DECODING_FAILURE, one_line(msg))


def _ip(value: str | None) -> Addr | None:
    """A range/gateway address (Go net.IP decoding): "" and null are unset."""
    if not value:
        return None
    a = parse(value)
    if a is None:
        raise _decode_error(f"invalid IP address: {value}")
    return a


def _raw_range(rc: RangeConf) -> RawRange:
    subnet = None
    if rc.subnet is not None:
        subnet = parse_cidr(rc.subnet)
        if subnet is None:
            raise _decode_error(f"invalid CIDR address: {rc.subnet}")
    return RawRange(
        subnet=subnet,
        range_start=_ip(rc.rangeStart),
        range_end=_ip(rc.rangeEnd),
        gateway=_ip(rc.gateway),
    )


def _raw_sets(sets: list[list[RangeConf | None] | None] | None) -> list[list[RawRange | None]]:
    out: list[list[RawRange | None]] = []
    for s in sets or ():
        out.append([None if rc is None else _raw_range(rc) for rc in (s or ())])
    return out


_UNSET = object()  # an empty requested IP: Go keeps a nil IP and fails on it later


def _requested(value: str | None) -> Addr | object:
    """A requested IP, `ip` or `ip/prefix` (pkg/ip semantics: the prefix is ignored)."""
    if not value:
        return _UNSET
    if "/" in value:
        parsed = parse_cidr(value)
        a = parsed[0] if parsed is not None else None
    else:
        a = parse(value)
    if a is None:
        raise _decode_error(f"invalid IP address {value}")
    return a


def _routes(items: list[dict[str, Any] | None] | None) -> list[Any]:
    if not items:
        return []
    return [go_validate(Route, item or {}, "Route") for item in items]


def _model(conf: dict) -> HostLocalNet:
    return load_model(HostLocalNet, conf)


def _text_path(value: str, what: str) -> str:
    return safe_path(value, what)


def load(conf: dict, cni_args: str) -> Settings:
    """Validate `conf` (the decoded stdin) and CNI_ARGS the way the reference host-local does.

    Returns Settings, or raises CNIError with the reference's message: code 6 for undecodable
    values (`invalid CIDR address: X`, `invalid IP address: X`), 4 for CNI_ARGS problems, 7 for
    `IPAM config missing 'ipam' key`, `no IP ranges specified`, `invalid range set N: ...`,
    `CNI version V does not support more than 1 address per family`, `range set I overlaps with J`
    and `cannot understand ip: ...`.
    """
    net = _model(conf)
    ipam = net.ipam
    rt = net.runtimeConfig
    args_ips = net.args.cni.ips if net.args is not None and net.args.cni is not None else None

    # Decoding: every address text, as Go's json.Unmarshal would.
    legacy = _raw_range(ipam) if ipam is not None else None
    static_sets = _raw_sets(ipam.ranges) if ipam is not None else []
    routes = _routes(ipam.routes) if ipam is not None else []
    runtime_sets = _raw_sets(rt.ipRanges) if rt is not None else []
    requested_args = [_requested(v) for v in args_ips or ()]
    requested_rt = [_requested(v) for v in (rt.ips if rt is not None else None) or ()]

    if ipam is None:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "IPAM config missing 'ipam' key")

    requested: list[Addr | object] = []
    if cni_args:
        requested.extend(_env_ip(cni_args))
    requested += requested_args + requested_rt
    canonical: list[Addr] = []
    for a in requested:
        if not isinstance(a, Addr):
            raise CNIError(
                ERR_INVALID_NETWORK_CONFIG, "cannot understand ip: IP <nil> not v4 nor v6"
            )
        if a not in canonical:
            canonical.append(a)

    raw_sets: list[list[RawRange | None]] = list(runtime_sets)
    if legacy is not None and legacy.subnet is not None:
        raw_sets.append([legacy])
    raw_sets += static_sets
    if not raw_sets:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "no IP ranges specified")

    sets: list[RangeSet] = []
    v4 = v6 = 0
    for i, raw in enumerate(raw_sets):
        try:
            rs = canonicalize_set(raw)
        except RangeError as e:
            raise CNIError(
                ERR_INVALID_NETWORK_CONFIG, one_line(f"invalid range set {i}: {e}")
            ) from None
        sets.append(rs)
        if rs.bits == 32:
            v4 += 1
        else:
            v6 += 1

    version = net.cniVersion or ""
    if (v4 > 1 or v6 > 1) and not _at_least_030(version):
        raise CNIError(
            ERR_INVALID_NETWORK_CONFIG,
            one_line(f"CNI version {version} does not support more than 1 address per family"),
        )
    for i, s1 in enumerate(sets[:-1]):
        for j in range(i + 1, len(sets)):
            if s1.overlaps(sets[j]):
                raise CNIError(ERR_INVALID_NETWORK_CONFIG, f"range set {i} overlaps with {j}")

    return Settings(
        name=net.name or "",
        cni_version=version,
        range_sets=sets,
        requested=canonical,
        routes=routes,
        data_dir=_text_path(ipam.dataDir or DEFAULT_DATA_DIR, "dataDir"),
        resolv_conf=_text_path(ipam.resolvConf or "", "resolvConf"),
    )


def _env_ip(cni_args: str) -> list[Addr]:
    """`IP=<ip>[/<prefix>]` from CNI_ARGS (unknown keys refused unless IgnoreUnknown)."""
    value = load_args(cni_args, frozenset({"IP"})).get("IP", "")
    if not value:
        return []
    try:
        a = _requested(value)
    except CNIError as e:
        raise CNIError(
            ERR_INVALID_ENVIRONMENT_VARIABLES,
            one_line(f'ARGS: error parsing value of pair "IP={value}": {e.msg}'),
        ) from None
    return [a] if isinstance(a, Addr) else []


def _at_least_030(version: str) -> bool:
    try:
        return greater_than_or_equal(version, "0.3.0")
    except CNIError:
        return False
