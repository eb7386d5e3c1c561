"""CNI results: the public API (docs/spec-rules.md §3.7, §4, §6).

    parse_result(data, version)   decode a plugin/delegate result (invoke's version fix-up rules)
    parse_prev_result(conf)       decode conf["prevResult"] (ParsePrevResult rules)
    new_result(version, **fields) build a result of the family that `version` belongs to
    Result.convert(v) / .to_dict() / .to_json()

Families: ``Result100`` (1.0.0, 1.1.0) with ``Interface``, ``IPConfig``, ``Route``, ``DNS``;
``Result040`` (0.3.0, 0.3.1, 0.4.0) with ``Interface040``, ``IPConfig040``; ``Result020``
(0.1.0, 0.2.0) with ``IPConfig020``.

Error codes: a version that no family knows, a family mismatch and a conversion between unknown
versions are code 1 (``ERR_INCOMPATIBLE_CNI_VERSION``); content that does not decode (bad JSON,
wrong JSON types, bad addresses) is code 6 (``ERR_DECODING_FAILURE``); the impossible 0.1/0.2
downgrade is ``ERR_NO_VALID_IPS`` (999, what a Go plugin prints for it). Messages keep the
reference wording and are one line.
"""

from __future__ import annotations

from typing import Any

from cni.errors import ERR_DECODING_FAILURE, ERR_INCOMPATIBLE_CNI_VERSION, CNIError, one_line
from cni.gocompat import json as gojson
from cni.gocompat.cidr import canonical_cidr, canonical_ip
from cni.gocompat.decode import field, go_validate
from cni.gocompat.json import json_kind, quote
from cni.result.convert import ERR_NO_VALID_IPS, KNOWN_VERSIONS
from cni.result.families import Result, Result020, Result040, Result100, family_of
from cni.result.models import (
    DNS,
    Interface,
    Interface040,
    IPConfig,
    IPConfig020,
    IPConfig040,
    Route,
)
from cni.version import CURRENT, config_version

__all__ = [
    "DNS",
    "ERR_NO_VALID_IPS",
    "KNOWN_VERSIONS",
    "IPConfig",
    "IPConfig020",
    "IPConfig040",
    "Interface",
    "Interface040",
    "Result",
    "Result020",
    "Result040",
    "Result100",
    "Route",
    "canonical_cidr",
    "canonical_ip",
    "family_of",
    "new_result",
    "new_result_from_result",
    "parse_prev_result",
    "parse_result",
]

_PREV = "could not parse prevResult: "


def _load(data: object, prefix: str) -> Any:
    """Decoded JSON for bytes/str input; dicts and None pass through."""
    if data is None or isinstance(data, dict):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        text = bytes(data).decode("utf-8", "replace")
    elif isinstance(data, str):
        text = data
    else:
        raise CNIError(
            ERR_DECODING_FAILURE, f"{prefix}cannot decode a result from {type(data).__name__}"
        )
    if not text.strip():
        raise CNIError(ERR_DECODING_FAILURE, f"{prefix}unexpected end of JSON input")
    try:
        return gojson.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CNIError(ERR_DECODING_FAILURE, one_line(f"{prefix}invalid JSON: {exc}")) from None


def _without_version(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not (isinstance(k, str) and k.lower() == "cniversion")}


def _validate(cls: type[Result], obj: dict, prefix: str) -> Result:
    try:
        return go_validate(cls, obj, "Result", prefix)
    except RecursionError:
        raise CNIError(ERR_DECODING_FAILURE, f"{prefix}result nested too deeply") from None


def _check_family(result: Result, cls: type[Result], prefix: str) -> Result:
    version = result.cni_version
    if version in cls.VERSIONS:
        return result
    if version == "" and cls is Result020:
        object.__setattr__(result, "cni_version", "0.1.0")
        return result
    raise CNIError(
        ERR_INCOMPATIBLE_CNI_VERSION,
        one_line(
            f"{prefix}result type supports {cls.VERSIONS_TEXT} "
            f"but unmarshalled CNIVersion is {quote(version)}"
        ),
    )


def _unsupported(version: str, prefix: str = "") -> CNIError:
    return CNIError(
        ERR_INCOMPATIBLE_CNI_VERSION,
        one_line(f"{prefix}unsupported CNI result version {quote(version)}"),
    )


def parse_result(data: dict | bytes | str, version: str) -> Result:
    """Decode a plugin's or delegate's result, as the reference runtime does
    (docs/spec-rules.md §4.6).

    `data` is the decoded object or the raw stdout (``null`` counts as ``{}``). The result's own
    non-empty string ``cniVersion`` picks the family; when it is missing, empty or not a string,
    `version` (the config's; ``""`` means 0.1.0) is injected and used. Returns a ``Result100``,
    ``Result040`` or ``Result020``. Raises CNIError code 1 ``unsupported CNI result version "<v>"``
    for a version no family knows, code 6 for undecodable content (bad JSON, wrong JSON types,
    ``invalid CIDR address: <s>``, ``invalid IP address: <s>``).
    """
    obj = _load(data, "failed to unmarshal raw result: ")
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise CNIError(
            ERR_DECODING_FAILURE,
            f"failed to unmarshal raw result: json: cannot unmarshal {json_kind(obj)} "
            "into Go value of type map[string]interface {}",
        )
    own = obj.get("cniVersion")
    if isinstance(own, str) and own:
        use = own
    else:
        use = version or "0.1.0"
        obj = _without_version(obj)
        obj["cniVersion"] = use
    cls = family_of(use)
    if cls is None:
        raise _unsupported(use)
    return _check_family(_validate(cls, obj, ""), cls, "")


def parse_prev_result(conf: dict) -> Result | None:
    """Decode ``conf["prevResult"]`` with the reference's ParsePrevResult rules
    (docs/spec-rules.md §3.7).

    Returns None when there is no prevResult (absent or null). The family comes from the
    config's ``cniVersion`` (missing means the 0.1.0/0.2.0 family). A prevResult without
    ``cniVersion`` (or with null) takes the config's version; its own value otherwise wins but
    must belong to that family, else CNIError code 1 ``could not parse prevResult: result type
    supports [..] but unmarshalled CNIVersion is "<v>"`` (an explicit ``""`` is kept, so it only
    passes in the 0.x legacy family, as 0.1.0). The result is not converted. Content errors are
    code 6, prefixed ``could not parse prevResult: ``.
    """
    if not isinstance(conf, dict):
        conf = _load(conf, "")
        if not isinstance(conf, dict):
            raise CNIError(ERR_DECODING_FAILURE, "network config is not a JSON object")
    raw = field(conf, "prevresult")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise CNIError(
            ERR_DECODING_FAILURE,
            f"{_PREV}json: cannot unmarshal {json_kind(raw)} into Go struct field "
            "NetConf.prevResult of type map[string]interface {}",
        )
    conf_version = config_version(conf)
    cls = family_of(conf_version)
    if cls is None:
        raise _unsupported(conf_version, _PREV)
    if field(raw, "cniversion") is None:
        raw = _without_version(raw)
        raw["cniVersion"] = conf_version
    return _check_family(_validate(cls, raw, _PREV), cls, _PREV)


def new_result(version: str = CURRENT, **fields: Any) -> Result:
    """A new result of the family `version` belongs to, labelled `version` ("" means 0.1.0).

    `fields` are that family's fields (1.x and 0.3/0.4: ``interfaces``, ``ips``, ``routes``,
    ``dns``; 0.1/0.2: ``ip4``, ``ip6``, ``dns``) as model instances or plain dicts. Raises
    CNIError code 1 for an unknown version, code 6 for bad values, TypeError for unknown fields.
    """
    use = version or "0.1.0"
    cls = family_of(use)
    if cls is None:
        raise _unsupported(version)
    return cls(cni_version=use, **fields)


def new_result_from_result(result: Result) -> Result100:
    """`result` converted to the current 1.1.0 shape (Go's NewResultFromResult), for plugins
    that upgrade a delegate's or prevResult before adding to it. Conversion errors as
    ``convert``."""
    out = result.convert(CURRENT)
    assert isinstance(out, Result100)
    return out
