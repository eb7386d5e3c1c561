"""portmap configuration: the pydantic models of the config keys and their resolution
(docs/reference-behaviour.md §3.1).

`PortMapNetConf` is the shape of stdin; `resolve()` applies the reference's defaults and checks in
the reference's order (snat, markMasqBit, backend, port numbers) and returns `Settings`, the
validated, backend-neutral view both firewall backends work from.

Stricter than the reference, on purpose (the reference lets these reach iptables or nft and fail
half-way, or writes rules that can never match): port numbers above 65535, a protocol other than
tcp, udp or sctp (any case), and a hostIP that is not an IP address are config errors (code 7)
naming the value, and nothing is written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from cni.config import CNIModel, NetConf, valid_attachments
from cni.config import load as load_model
from cni.errors import ERR_INVALID_NETWORK_CONFIG, CNIError, one_line
from cni.result import Result, Result100, new_result_from_result, parse_prev_result

IPTABLES = "iptables"
NFTABLES = "nftables"
DEFAULT_MARK_BIT = 13  # Kubernetes uses 14 and 15, Calico 20-31
PROTOCOLS = ("tcp", "udp", "sctp")


class PortMapping(CNIModel):
    """One `runtimeConfig.portMappings` entry (CNI CONVENTIONS `portMappings` capability).

    JSON null is accepted wherever Go's decoder accepts it (it leaves the zero value)."""

    hostPort: int | None = 0
    containerPort: int | None = 0
    protocol: str | None = ""
    hostIP: str | None = ""


class PortMapRuntimeConfig(CNIModel):
    """`runtimeConfig` as portmap reads it."""

    portMappings: list[PortMapping] | None = None


class PortMapNetConf(NetConf):
    """The portmap plugin configuration (a NetConf plus the portmap keys)."""

    backend: str | None = None
    snat: bool | None = None
    conditionsV4: list[str] | None = None
    conditionsV6: list[str] | None = None
    masqAll: bool | None = False  # null leaves Go's zero value
    markMasqBit: int | None = None
    externalSetMarkChain: str | None = None
    runtimeConfig: PortMapRuntimeConfig | None = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Mapping:
    """A validated port mapping. `protocol` is as configured (iptables groups by it verbatim);
    `host_ip` is "" (any address) or a normalised address; `host_ip_version` is 0, 4 or 6."""

    host_port: int
    container_port: int
    protocol: str
    host_ip: str = ""
    host_ip_version: int = 0
    host_ip_unspecified: bool = False

    @property
    def proto(self) -> str:
        """The protocol in lower case, as iptables-save and nft spell it."""
        return self.protocol.lower()

    def applies_to(self, version: int) -> bool:
        """False when the mapping names a hostIP of the other address family (it is skipped)."""
        return not self.host_ip or self.host_ip_version == version

    def destination(self, version: int) -> str:
        """The hostIP to match as destination, or "" for any (unset, 0.0.0.0 or ::)."""
        if not self.host_ip or self.host_ip_unspecified or self.host_ip_version != version:
            return ""
        return self.host_ip


@dataclass
class Settings:
    """Resolved configuration shared by both backends."""

    name: str
    backend: str
    snat: bool = True
    mark_bit: int = DEFAULT_MARK_BIT
    external_set_mark_chain: str | None = None
    conditions_v4: list[str] | None = None
    conditions_v6: list[str] | None = None
    masq_all: bool = False
    mappings: list[Mapping] = field(default_factory=list)

    def conditions(self, version: int) -> list[str]:
        """The extra match tokens for this address family ([] when unset)."""
        return list((self.conditions_v6 if version == 6 else self.conditions_v4) or [])


def _invalid(msg: str) -> CNIError:
    return CNIError(ERR_INVALID_NETWORK_CONFIG, one_line(msg))  # a value may hold a newline


def _conditions_backend(conditions: list[str] | None) -> str:
    """iptables conditions start with `-` or `!`; anything else non-empty is nft syntax."""
    if not conditions or conditions[0] == "":
        return ""
    return IPTABLES if conditions[0][0] in "-!" else NFTABLES


def _backend(conf: PortMapNetConf, detect: Callable[[], str]) -> str:
    """The backend to use, refusing options of the other one (reference `ensureBackend`)."""
    specific: dict[str, list[str]] = {IPTABLES: [], NFTABLES: []}
    if conf.externalSetMarkChain is not None:
        specific[IPTABLES].append("externalSetMarkChain")
    for key, value in (("conditionsV4", conf.conditionsV4), ("conditionsV6", conf.conditionsV6)):
        kind = _conditions_backend(value)
        if kind:
            specific[kind].append(key)
    backend = conf.backend if conf.backend is not None else detect()
    wrong = NFTABLES if backend == IPTABLES else IPTABLES
    if specific[wrong]:
        raise _invalid(
            f"{backend} backend was requested but configuration contains {wrong}-specific "
            f"options [{' '.join(specific[wrong])}]"
        )
    if backend not in (IPTABLES, NFTABLES):
        raise _invalid(f'unrecognized backend "{backend}"')
    return backend


def _host_ip(text: str) -> tuple[str, int, bool]:
    """(normalised address, family, unspecified) of a hostIP; IPv4-mapped IPv6 counts as IPv4."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise _invalid(f'Invalid host IP: "{text}"') from None
    if ip.version == 6:
        if ip.scope_id is not None:
            raise _invalid(f'Invalid host IP: "{text}"')
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return str(ip), ip.version, ip.is_unspecified


def _mapping(pm: PortMapping) -> Mapping:
    container_port, host_port = pm.containerPort or 0, pm.hostPort or 0
    protocol, host_ip = pm.protocol or "", pm.hostIP or ""
    if not 0 < container_port <= 65535:
        raise _invalid(f"Invalid container port number: {container_port}")
    if not 0 < host_port <= 65535:
        raise _invalid(f"Invalid host port number: {host_port}")
    if protocol.lower() not in PROTOCOLS:
        raise _invalid(f'Invalid protocol: "{protocol}" (must be tcp, udp or sctp)')
    if not host_ip:
        return Mapping(host_port, container_port, protocol)
    host, version, unspecified = _host_ip(host_ip)
    return Mapping(host_port, container_port, protocol, host, version, unspecified)


def resolve(
    conf: PortMapNetConf, detect_backend: Callable[[], str], *, strict: bool = True
) -> Settings:
    """Defaults and checks in the reference's order; CNIError 7 with the reference's messages.

    `detect_backend` is called only when no backend is configured. With strict=False (DEL) the
    mappings' values are not judged at all (the reference refuses ports <= 0 even there), so a
    DEL for an ADD that was refused still succeeds.
    """
    if conf.markMasqBit is not None and conf.externalSetMarkChain is not None:
        raise _invalid("Cannot specify externalSetMarkChain and markMasqBit")
    bit = DEFAULT_MARK_BIT if conf.markMasqBit is None else conf.markMasqBit
    if not 0 <= bit <= 31:
        raise _invalid("MasqMarkBit must be between 0 and 31")
    backend = _backend(conf, detect_backend)
    runtime = conf.runtimeConfig
    raw = (runtime.portMappings if runtime is not None else None) or []
    if strict:
        mappings = [_mapping(pm) for pm in raw]
    else:  # DEL only needs to know whether there are mappings: never refuse it over their values
        mappings = [
            Mapping(pm.hostPort or 0, pm.containerPort or 0, pm.protocol or "") for pm in raw
        ]
    return Settings(
        name=conf.name,
        backend=backend,
        snat=True if conf.snat is None else conf.snat,
        mark_bit=bit,
        external_set_mark_chain=conf.externalSetMarkChain,
        conditions_v4=conf.conditionsV4,
        conditions_v6=conf.conditionsV6,
        masq_all=bool(conf.masqAll),
        mappings=mappings,
    )


def load(
    config: dict,
    detect_backend: Callable[[], str],
    *,
    strict: bool,
    prefix: str,
    prev_result: bool = False,
) -> tuple[Settings, Result | None, Result100 | None]:
    """(Settings, prevResult as given or None, its 1.x form or None) of a decoded config,
    checked in the reference's order: JSON shape, prevResult (when `prev_result`), then the
    portmap keys. Errors are prefixed with `prefix` as the reference prefixes them."""
    prev = current = None
    try:
        conf = load_model(PortMapNetConf, config)
        if prev_result:
            prev, current = _prev_result(config)
        return resolve(conf, detect_backend, strict=strict), prev, current
    except CNIError as e:
        raise CNIError(e.code, prefix + e.msg, e.details) from None


def _prev_result(config: dict) -> tuple[Result | None, Result100 | None]:
    prev = parse_prev_result(config)
    if prev is None:
        return None, None
    try:
        return prev, new_result_from_result(prev)
    except CNIError as e:
        raise CNIError(e.code, f"could not convert result to current version: {e.msg}") from None


def valid_container_ids(config: dict) -> set[str]:
    """The container ids among the config's valid attachments (GC keeps their mappings)."""
    return {cid for cid, _ifname in valid_attachments(config)}
