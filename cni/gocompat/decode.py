"""Decoding like Go's encoding/json where pydantic does the checking.

``GO_JSON`` marks a validation whose input is decoded JSON, so Go's rules and wording apply;
``validation_to_cni`` turns pydantic's first complaint into a one-line CNIError (code 6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cni.errors import ERR_DECODING_FAILURE, CNIError, one_line
from cni.gocompat.json import json_kind

if TYPE_CHECKING:
    from pydantic import ValidationError

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
