"""Result shapes for every CNI result family (spec-notes §4), as pydantic v2 models.

Families and their classes:

* 1.0.0 / 1.1.0: ``Result100`` with ``Interface``, ``IPConfig``, ``Route``, ``DNS``.
* 0.3.0 / 0.3.1 / 0.4.0: ``Result040`` with ``Interface040``, ``IPConfig040`` (carries ``version``).
* 0.1.0 / 0.2.0: ``Result020`` with ``IPConfig020`` (``ip4`` / ``ip6`` objects).

The models are the source of truth for the shapes; ``to_dict`` applies the reference's emission
rules (key order, which empty values are left out). Addresses are validated with ``ipaddress`` and
stored as the text the reference would print: host bits kept, IPv6 compressed and lower-case,
IPv4-mapped IPv6 printed as dotted IPv4.

Models are built lazily (``defer_build``), so importing this module only defines classes.
Bad input never escapes as a pydantic error: construction, assignment and parsing raise
``CNIError`` (code 6, one line naming the bad value).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from cni import pydantic_boot  # noqa: F401 - before any model is built
from cni.errors import ERR_DECODING_FAILURE, CNIError, one_line
from cni.gocompat.ip import ipv6_text
from cni.gocompat.json import json_kind

# Context flag passed to model_validate when the input is decoded JSON (Go decoding rules apply).
GO_JSON = "go_json"

# --------------------------------------------------------------------------------------------
# Address text: parse like Go's net.ParseCIDR / net.ParseIP, print like net.IPNet / net.IP.


def _parse_ip(text: str) -> Any:
    """An ipaddress object for `text`, or None when Go's parser would reject it (zones too)."""
    if not text.isascii() or "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_text(ip: Any) -> str:
    """Go's net.IP.String(): dotted IPv4 (also for IPv4-mapped IPv6), else RFC 5952 IPv6."""
    if ip.version == 4:
        return str(ip)
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return ipv6_text(int(ip))


def _not_a_string(value: object, what: str, info: ValidationInfo | None) -> ValueError:
    if info is not None and info.context and info.context.get(GO_JSON):
        return ValueError(
            f"json: cannot unmarshal {json_kind(value)} into Go value of type string"
        )
    return ValueError(f"invalid {what}: {one_line(repr(value))} is not a string")


def canonical_cidr(value: object, info: ValidationInfo | None = None) -> str:
    """`value` ("ip/prefix") checked like Go's net.ParseCIDR and printed like net.IPNet.String().

    Host bits are kept ("10.1.0.5/16" stays). Raises ValueError
    ``invalid CIDR address: <value>`` for anything Go would reject.
    """
    if not isinstance(value, str):
        if type(value).__name__ in ("IPv4Interface", "IPv6Interface", "IPv4Network", "IPv6Network"):
            value = str(value)
        else:
            raise _not_a_string(value, "CIDR address", info)
    addr, slash, plen_text = value.partition("/")
    ip = _parse_ip(addr) if slash else None
    digits = plen_text.lstrip("0") or "0"
    if (
        ip is None
        or not plen_text.isascii()
        or not plen_text.isdigit()
        or len(digits) > 3
        or int(digits) > ip.max_prefixlen
    ):
        raise ValueError(f"invalid CIDR address: {one_line(value)}")
    plen = int(digits)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        # Go keeps the 16-byte mask and prints its last 4 bytes against the IPv4 form.
        return f"{ip.ipv4_mapped}/{max(0, plen - 96)}"
    return f"{_ip_text(ip)}/{plen}"


def canonical_ip(value: object, info: ValidationInfo | None = None) -> str | None:
    """`value` checked like Go's net.ParseIP and printed like net.IP.String(); "" and None -> None.

    Raises ValueError ``invalid IP address: <value>`` for anything Go would reject.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        if type(value).__name__ in ("IPv4Address", "IPv6Address"):
            value = str(value)
        else:
            raise _not_a_string(value, "IP address", info)
    if value == "":
        return None
    ip = _parse_ip(value)
    if ip is None:
        raise ValueError(f"invalid IP address: {one_line(value)}")
    return _ip_text(ip)


def is_ipv4_text(text: str) -> bool:
    """True when canonical address text (CIDR or IP) is IPv4 under Go's To4 rule."""
    return ":" not in text


def _nulls_to_empty(value: object) -> object:
    # Go decodes a JSON null inside []string as "".
    if isinstance(value, list):
        return ["" if v is None else v for v in value]
    return value


Cidr = Annotated[str, BeforeValidator(canonical_cidr)]
OptIP = Annotated[StrictStr | None, BeforeValidator(canonical_ip)]
Int = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
StrList = Annotated[list[StrictStr], BeforeValidator(_nulls_to_empty)]


def _required_cidr() -> Any:
    # A missing or null address decodes as "" and fails like Go's ParseCIDR("").
    return Field(default="", validate_default=True)


# --------------------------------------------------------------------------------------------
# Errors


_GO_TYPES = {
    "string_type": "string",
    "int_type": "int",
    "greater_than_equal": "int",
    "less_than_equal": "int",
    "list_type": "slice",
    "model_type": "struct",
    "model_attributes_type": "struct",
    "dict_type": "struct",
}


def validation_to_cni(
    exc: ValidationError, model: str, go_json: bool, prefix: str = ""
) -> CNIError:
    """One CNIError (code 6, one line) for the first problem pydantic found."""
    err = exc.errors(include_url=False)[0]
    path = ".".join(str(p) for p in err.get("loc", ()) if isinstance(p, str))
    ctx = err.get("ctx") or {}
    if err.get("type") == "value_error" and "error" in ctx:
        text = str(ctx["error"])
    elif go_json and err.get("type") in _GO_TYPES:
        value = err.get("input")
        kind = json_kind(value)
        if kind == "number" and _GO_TYPES[err["type"]] == "int":
            kind = f"number {value!r}"
        field = f"{model}.{path}" if path else model
        text = f"json: cannot unmarshal {kind} into Go struct field {field} of type {_GO_TYPES[err['type']]}"
    else:
        where = f"{model}.{path}" if path else model
        text = f"invalid {where}: {err.get('msg', 'invalid value')}"
        if "input" in err and err.get("type") != "missing":
            text += f" (got {repr(err['input'])})"
    return CNIError(ERR_DECODING_FAILURE, one_line(prefix + text))


# --------------------------------------------------------------------------------------------
# Models


class ResultModel(BaseModel):
    """Shared behaviour: Go-style decoding of dicts, positional construction, CNIError on bad input."""

    model_config = ConfigDict(extra="ignore", defer_build=True, validate_assignment=True)

    # Field name -> JSON key, for the few fields whose Python name differs.
    _JSON_KEYS: ClassVar[dict[str, str]] = {}
    # Lower-cased JSON key -> field name, built on first use.
    _KEY_TABLE: ClassVar[dict[str, str] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Fields by position (declaration order) or by name; bad values raise CNIError code 6."""
        cls = type(self)
        names = list(cls.model_fields)
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes at most {len(names)} positional arguments")
        for name, arg in zip(names, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            kwargs[name] = arg
        for name in kwargs:
            if name not in cls.model_fields:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
        try:
            super().__init__(**kwargs)
        except ValidationError as exc:
            raise validation_to_cni(exc, cls.__name__, go_json=False) from None

    # Pydantic calls __init__ for nested dicts only when it is "custom"; mark it as the base one so
    # nested JSON goes straight to the validator (keeping the decoding context).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise validation_to_cni(exc, type(self).__name__, go_json=False) from None

    @classmethod
    def _key_table(cls) -> dict[str, str]:
        table = cls.__dict__.get("_KEY_TABLE")
        if table is None:
            table = {cls._JSON_KEYS.get(n, n).lower(): n for n in cls.model_fields}
            cls._KEY_TABLE = table
        return table

    @model_validator(mode="before")
    @classmethod
    def _decode_like_go(cls, data: Any, info: ValidationInfo) -> Any:
        """JSON keys match case-insensitively (last wins); null means "not given"."""
        if not isinstance(data, dict):
            return data
        if info.context and info.context.get(GO_JSON):
            table = cls._key_table()
            out: dict[str, Any] = {}
            for key, value in data.items():
                name = table.get(key.lower()) if isinstance(key, str) else None
                if name is None:
                    continue
                if value is None:
                    out.pop(name, None)
                else:
                    out[name] = value
            return out
        for name, key in cls._JSON_KEYS.items():
            if key in data and name not in data:  # e.g. a JSON dict given to model_validate
                data = {(name if k == key else k): v for k, v in data.items()}
        if any(v is None for v in data.values()):
            fields = cls.model_fields
            data = {
                k: (
                    fields[k].get_default(call_default_factory=True)
                    if v is None and k in fields
                    else v
                )
                for k, v in data.items()
            }
        return data

    def to_dict(self) -> dict:
        """The reference JSON object for this value."""
        raise NotImplementedError


class DNS(ResultModel):
    """DNS settings; every key is optional and left out when empty."""

    nameservers: StrList = Field(default_factory=list)
    domain: StrictStr = ""
    search: StrList = Field(default_factory=list)
    options: StrList = Field(default_factory=list)

    def is_empty(self) -> bool:
        """True when all four keys are empty."""
        return not (self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict:
        """``nameservers``, ``domain``, ``search``, ``options``, each only when non-empty."""
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


class Route(ResultModel):
    """A route (shared by every family; 0.2.0 output keeps only dst/gw after conversion)."""

    dst: Cidr = _required_cidr()
    gw: OptIP = None
    mtu: Int = 0
    advmss: Int = 0
    priority: Int = 0
    table: Int | None = None
    scope: Int | None = None

    @property
    def is_ipv4(self) -> bool:
        """True for an IPv4 destination (Go's To4 rule)."""
        return is_ipv4_text(self.dst)

    def to_dict(self) -> dict:
        """``dst`` always; ``gw`` when set; mtu/advmss/priority when non-zero; table/scope when not None."""
        out: dict[str, Any] = {"dst": self.dst}
        if self.gw:
            out["gw"] = self.gw
        if self.mtu:
            out["mtu"] = self.mtu
        if self.advmss:
            out["advmss"] = self.advmss
        if self.priority:
            out["priority"] = self.priority
        if self.table is not None:
            out["table"] = self.table
        if self.scope is not None:
            out["scope"] = self.scope
        return out


class Interface(ResultModel):
    """A 1.x interface; ``mtu``, ``socketPath`` and ``pciID`` are the 1.1.0 additions."""

    name: StrictStr = ""
    mac: StrictStr = ""
    mtu: Int = 0
    sandbox: StrictStr = ""
    socketPath: StrictStr = ""  # noqa: N815 - JSON key
    pciID: StrictStr = ""  # noqa: N815 - JSON key

    def to_dict(self) -> dict:
        """``name`` always, the others only when non-empty / non-zero."""
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.mtu:
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if self.socketPath:
            out["socketPath"] = self.socketPath
        if self.pciID:
            out["pciID"] = self.pciID
        return out


class IPConfig(ResultModel):
    """A 1.x IP: ``address`` "ip/prefix", optional ``gateway``, optional ``interface`` index."""

    address: Cidr = _required_cidr()
    gateway: OptIP = None
    interface: Int | None = None

    @property
    def is_ipv4(self) -> bool:
        """True for an IPv4 address (Go's To4 rule: IPv4-mapped IPv6 counts as IPv4)."""
        return is_ipv4_text(self.address)

    def to_dict(self) -> dict:
        """``interface`` when set (0 included), ``address``, ``gateway`` when set."""
        out: dict[str, Any] = {}
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = self.address
        if self.gateway:
            out["gateway"] = self.gateway
        return out


class Interface040(ResultModel):
    """A 0.3.x/0.4.0 interface."""

    name: StrictStr = ""
    mac: StrictStr = ""
    sandbox: StrictStr = ""

    def to_dict(self) -> dict:
        """``name`` always, ``mac`` and ``sandbox`` when non-empty."""
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out


class IPConfig040(ResultModel):
    """A 0.3.x/0.4.0 IP: ``version`` "4"/"6" (kept as given), ``interface``, ``address``, ``gateway``."""

    version: StrictStr = ""
    interface: Int | None = None
    address: Cidr = _required_cidr()
    gateway: OptIP = None

    @property
    def is_ipv4(self) -> bool:
        """True for an IPv4 address (by the address, not the ``version`` string)."""
        return is_ipv4_text(self.address)

    def to_dict(self) -> dict:
        """``version`` always (even ""), ``interface`` when set, ``address``, ``gateway`` when set."""
        out: dict[str, Any] = {"version": self.version}
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = self.address
        if self.gateway:
            out["gateway"] = self.gateway
        return out


class IPConfig020(ResultModel):
    """A 0.1.0/0.2.0 ``ip4``/``ip6`` object: ``ip``, optional ``gateway`` and ``routes``."""

    ip: Cidr = _required_cidr()
    gateway: OptIP = None
    routes: list[Route] = Field(default_factory=list)

    def to_dict(self) -> dict:
        """``ip``, ``gateway`` when set, ``routes`` when non-empty."""
        out: dict[str, Any] = {"ip": self.ip}
        if self.gateway:
            out["gateway"] = self.gateway
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        return out
