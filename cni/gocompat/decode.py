"""Decoding like Go's encoding/json where pydantic does the checking: the one place for it.

* ``key_table`` + ``match_keys`` (a model's fields) and ``field`` (one key): object keys match
  case-insensitively, the last duplicate wins;
* ``nulls_keep_defaults`` (``without_nulls``, ``defaulted_keys``): a JSON null leaves a field
  at its default;
* ``go_validate`` / ``validation_to_cni``: decode with Go's rules (``GO_JSON`` context) and turn
  pydantic's first complaint into a one-line CNIError (code 6) in the reference's wording;
* ``config_error``: the same for a configuration model (code 6 for a wrong JSON type, else 7).

Importing this module costs next to nothing (no typing, no pydantic: ``go_validate`` is only
called for models whose modules loaded it), so plugins may use ``field`` on their start-up path.
"""

from __future__ import annotations

import json

from cni.errors import ERR_DECODING_FAILURE, ERR_INVALID_NETWORK_CONFIG, CNIError, one_line

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from collections.abc import Container, Mapping
    from typing import Any, TypeVar

    from pydantic import BaseModel, ValidationError

    M = TypeVar("M", bound=BaseModel)

# Context flag passed to model_validate when the input is decoded JSON (Go decoding rules apply).
GO_JSON = "go_json"


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
    from cni.gocompat.json import json_kind  # error path only

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
        go_type = _GO_TYPES[err["type"]]
        text = f"json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}"
    else:
        where = f"{model}.{path}" if path else model
        text = f"invalid {where}: {err.get('msg', 'invalid value')}"
        if "input" in err and err.get("type") != "missing":
            text += f" (got {repr(err['input'])})"
    return CNIError(ERR_DECODING_FAILURE, one_line(prefix + text))


def go_validate(model: type[M], data: Any, name: str, prefix: str = "") -> M:
    """`data` (decoded JSON) validated as `model` under Go's rules; a failure is the CNIError
    ``validation_to_cni`` makes, naming `name` (Go's struct name) after `prefix`."""
    from pydantic import ValidationError  # loaded already: `model` is a pydantic model

    try:
        return model.model_validate(data, context={GO_JSON: True})
    except ValidationError as exc:
        raise validation_to_cni(exc, name, go_json=True, prefix=prefix) from None


_KEY_TABLES: dict[type, dict[str, str]] = {}


def key_table(model: type[BaseModel], json_keys: Mapping[str, str] | None = None) -> dict[str, str]:
    """Lower-cased JSON key -> the key to validate `model` with, for each field (cached).

    A field's JSON key is its alias, else ``json_keys[name]``, else its name; it is validated
    under its alias when it has one, else under its name.
    """
    table = _KEY_TABLES.get(model)
    if table is None:
        keys = json_keys or {}
        table = {}
        for name, info in model.model_fields.items():
            table[(info.alias or keys.get(name, name)).lower()] = info.alias or name
        _KEY_TABLES[model] = table
    return table


def field(obj: object, key: str) -> Any:
    """The value of `key` (lower-case) in `obj`, matched as Go does: case-insensitively, the last
    duplicate winning; None when `obj` is not an object or has no such key."""
    found = None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and k.lower() == key:
                found = v
    return found


def match_keys(data: dict, table: Mapping[str, str], *, keep_unknown: bool) -> dict:
    """`data` with every key `table` knows (case-insensitively) renamed to its field's key, the
    last duplicate winning as in Go; other keys are kept as they are or dropped."""
    out: dict[Any, Any] = {}
    for key, value in data.items():
        name = table.get(key.lower()) if isinstance(key, str) else None
        if name is not None:
            out[name] = value
        elif keep_unknown:
            out[key] = value
    return out


def without_nulls(data: dict, keys: Container[str] | None = None) -> dict:
    """`data` without the null values Go's decoder ignores: those of `keys` (lower-cased JSON
    keys), or every one when `keys` is None."""
    if keys is None:
        return {k: v for k, v in data.items() if v is not None}
    return {
        k: v
        for k, v in data.items()
        if v is not None or not isinstance(k, str) or k.lower() not in keys
    }


_DEFAULTED: dict[type, frozenset[str]] = {}


def defaulted_keys(model: type[BaseModel]) -> frozenset[str]:
    """The lower-cased JSON keys of `model`'s fields whose default is not None: a null there
    keeps the default (a null on a field defaulting to None is the same as leaving it out)."""
    keys = _DEFAULTED.get(model)
    if keys is None:
        keys = _DEFAULTED[model] = frozenset(
            (info.alias or name).lower()
            for name, info in model.model_fields.items()
            if info.default is not None
        )
    return keys


def nulls_keep_defaults(model: type[BaseModel], data: dict) -> dict:
    """`data` (keys as given, any case) without the nulls on `model`'s fields that have a
    default: Go's decoder leaves such a field at its default; other keys are untouched."""
    return without_nulls(data, defaulted_keys(model))


def short_text(value: Any) -> str:
    """`value` as JSON (repr when it is not JSON), cut to 80 characters, for an error message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def config_error(exc: ValidationError) -> CNIError:
    """A configuration model's first complaint as a one-line CNIError: code 6 for a wrong JSON
    type, else 7, ``invalid <key path> <value>: <reason>``."""
    errors = exc.errors(include_url=False)
    if not errors:
        return CNIError(ERR_INVALID_NETWORK_CONFIG, one_line(str(exc)))
    err = errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<config>"
    kind = err.get("type", "")
    code = ERR_DECODING_FAILURE if kind.endswith("_type") else ERR_INVALID_NETWORK_CONFIG
    msg = err.get("msg", "invalid value")
    value = one_line(short_text(err.get("input")))
    return CNIError(code, one_line(f"invalid {loc} {value}: {msg}"))
