"""The element models of CNI results (docs/spec-rules.md §4), as pydantic v2 models; the families
that hold them are in cni.result.families.

Families and their classes:

* 1.0.0 / 1.1.0: ``Result100`` with ``Interface``, ``IPConfig``, ``Route``, ``DNS``.
* 0.3.0 / 0.3.1 / 0.4.0: ``Result040`` with ``Interface040``, ``IPConfig040`` (carries ``version``).
* 0.1.0 / 0.2.0: ``Result020`` with ``IPConfig020`` (``ip4`` / ``ip6`` objects).

The models are the source of truth for the shapes; ``to_dict`` applies the reference's emission
rules (key order, which empty values are left out). Addresses are checked and stored as the text
the reference would print (cni.gocompat.cidr).

Models are built lazily (``defer_build``), so importing this module only defines classes.
Bad input never escapes as a pydantic error: construction, assignment and parsing raise
``CNIError`` (code 6, one line naming the bad value).
"""

from __future__ import annotations

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
from cni.gocompat import decode
from cni.gocompat.cidr import canonical_cidr, canonical_ip, is_ipv4_text
from cni.gocompat.decode import GO_JSON, validation_to_cni


def _nulls_to_empty(value: object) -> object:
    # Go decodes a JSON null inside []string as "".
    if isinstance(value, list):
        return ["" if v is None else v for v in value]
    return value


Cidr = Annotated[str, BeforeValidator(canonical_cidr)]
OptIP = Annotated[StrictStr | None, BeforeValidator(canonical_ip)]
Int = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
StrList = Annotated[list[StrictStr], BeforeValidator(_nulls_to_empty)]
Emit = tuple[tuple[str, str], ...]


def emit(spec: str) -> Emit:
    """``to_dict``'s rules from a one-line declaration: the fields in the reference's key order,
    each a bare name (rule "set": left out when empty, zero or None), ``name!`` ("always") or
    ``name?`` ("given": left out only when None)."""
    marks = {"!": "always", "?": "given"}
    return tuple((name.rstrip("!?"), marks.get(name[-1], "set")) for name in spec.split())


def _required_cidr() -> Any:
    # A missing or null address decodes as "" and fails like Go's ParseCIDR("").
    return Field(default="", validate_default=True)


# --------------------------------------------------------------------------------------------
# Models


class ResultModel(BaseModel):
    """Shared behaviour: Go-style decoding of dicts, positional construction, CNIError on bad
    input, and ``to_dict`` by the class's ``_EMIT`` rules."""

    model_config = ConfigDict(extra="ignore", defer_build=True, validate_assignment=True)

    # Field name -> JSON key, for the few fields whose Python name differs.
    _JSON_KEYS: ClassVar[dict[str, str]] = {}
    # What to_dict writes: (field, rule) in the reference's key order, declared with emit().
    _EMIT: ClassVar[Emit] = ()

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

    @model_validator(mode="before")
    @classmethod
    def _decode_like_go(cls, data: Any, info: ValidationInfo) -> Any:
        """JSON keys match case-insensitively (last wins); null means "not given"."""
        if not isinstance(data, dict):
            return data
        if info.context and info.context.get(GO_JSON):
            table = decode.key_table(cls, cls._JSON_KEYS)
            data = decode.match_keys(data, table, keep_unknown=False)
        for name, key in cls._JSON_KEYS.items():
            if key in data and name not in data:  # e.g. a JSON dict given to model_validate
                data = {(name if k == key else k): v for k, v in data.items()}
        return decode.nulls_keep_defaults(cls, data)

    def to_dict(self) -> dict:
        """The reference JSON object for this value: the fields of ``_EMIT`` in that order, each
        under its rule ("always"; "set": left out when empty, zero or None; "given": left out
        only when None), nested models and lists of them as their own objects."""
        out: dict[str, Any] = {}
        for name, rule in self._EMIT:
            value = getattr(self, name)
            if rule == "always" or (value is not None if rule == "given" else _is_set(value)):
                out[self._JSON_KEYS.get(name, name)] = _plain(value)
        return out


def _is_set(value: object) -> bool:
    # A nested model (DNS) counts as set when its own object has a key.
    return bool(value.to_dict()) if isinstance(value, ResultModel) else bool(value)


def _plain(value: object) -> object:
    if isinstance(value, ResultModel):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _Addressed(ResultModel):
    """A model with an address field, named by ``_ADDRESS``, that decides its family."""

    _ADDRESS: ClassVar[str]

    @property
    def is_ipv4(self) -> bool:
        """True for an IPv4 address (Go's To4 rule: IPv4-mapped IPv6 counts as IPv4)."""
        return is_ipv4_text(getattr(self, self._ADDRESS))


class DNS(ResultModel):
    """DNS settings; every key is optional and left out when empty."""

    nameservers: StrList = Field(default_factory=list)
    domain: StrictStr = ""
    search: StrList = Field(default_factory=list)
    options: StrList = Field(default_factory=list)

    def is_empty(self) -> bool:
        """True when all four keys are empty."""
        return not (self.nameservers or self.domain or self.search or self.options)

    # Each key only when non-empty.
    _EMIT: ClassVar[Emit] = emit("nameservers domain search options")


class Route(_Addressed):
    """A route (shared by every family; 0.2.0 output keeps only dst/gw after conversion)."""

    dst: Cidr = _required_cidr()
    gw: OptIP = None
    mtu: Int = 0
    advmss: Int = 0
    priority: Int = 0
    table: Int | None = None
    scope: Int | None = None

    _ADDRESS: ClassVar[str] = "dst"

    # dst always; gw when set; mtu/advmss/priority when non-zero; table/scope when not None.
    _EMIT: ClassVar[Emit] = emit("dst! gw mtu advmss priority table? scope?")


class Interface(ResultModel):
    """A 1.x interface; ``mtu``, ``socketPath`` and ``pciID`` are the 1.1.0 additions."""

    name: StrictStr = ""
    mac: StrictStr = ""
    mtu: Int = 0
    sandbox: StrictStr = ""
    socketPath: StrictStr = ""  # noqa: N815 - JSON key
    pciID: StrictStr = ""  # noqa: N815 - JSON key

    # name always, the others only when non-empty / non-zero.
    _EMIT: ClassVar[Emit] = emit("name! mac mtu sandbox socketPath pciID")


class IPConfig(_Addressed):
    """A 1.x IP: ``address`` "ip/prefix", optional ``gateway``, optional ``interface`` index."""

    address: Cidr = _required_cidr()
    gateway: OptIP = None
    interface: Int | None = None

    _ADDRESS: ClassVar[str] = "address"

    # interface when set (0 included), address, gateway when set.
    _EMIT: ClassVar[Emit] = emit("interface? address! gateway")


class Interface040(ResultModel):
    """A 0.3.x/0.4.0 interface."""

    name: StrictStr = ""
    mac: StrictStr = ""
    sandbox: StrictStr = ""

    # name always, mac and sandbox when non-empty.
    _EMIT: ClassVar[Emit] = emit("name! mac sandbox")


class IPConfig040(_Addressed):
    """A 0.3.x/0.4.0 IP: ``version`` "4"/"6" (kept as given), ``interface``, ``address``,
    ``gateway``."""

    version: StrictStr = ""
    interface: Int | None = None
    address: Cidr = _required_cidr()
    gateway: OptIP = None

    _ADDRESS: ClassVar[str] = "address"  # the family is the address's, not ``version``'s

    # version always (even ""), interface when set, address, gateway when set.
    _EMIT: ClassVar[Emit] = emit("version! interface? address! gateway")


class IPConfig020(ResultModel):
    """A 0.1.0/0.2.0 ``ip4``/``ip6`` object: ``ip``, optional ``gateway`` and ``routes``."""

    ip: Cidr = _required_cidr()
    gateway: OptIP = None
    routes: list[Route] = Field(default_factory=list)

    # ip, gateway when set, routes when non-empty.
    _EMIT: ClassVar[Emit] = emit("ip! gateway routes")
