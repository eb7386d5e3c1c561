"""JSON read and written the way Go's encoding/json does, for byte-compatible files and requests.

The libcni cache (docs/spec-rules.md §8.6) and the requests libcni sends are produced by Go's
`json.Marshal` of generic maps: compact, object keys sorted, numbers decoded as float64 and
printed in Go's shortest form (`1.0` -> `1`), `<`, `>`, `&`, U+2028 and U+2029 escaped, other
non-ASCII text written raw. `marshal` reproduces that; `loads` decodes as Go does into
`interface{}` (invalid UTF-8 becomes U+FFFD, NaN/Infinity are rejected).
"""

from __future__ import annotations

import json
import math

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from typing import Any

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _string(s: str) -> str:
    out = ['"']
    for c in s:
        esc = _ESCAPES.get(c)
        if esc is not None:
            out.append(esc)
        elif c < " ":
            out.append(f"\\u{ord(c):04x}")
        elif "\ud800" <= c <= "\udfff":  # lone surrogate: Go writes U+FFFD
            out.append("\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def format_float(f: float) -> str:
    """A float64 as Go's encoding/json prints it (shortest round-trip digits)."""
    if not math.isfinite(f):
        raise ValueError(f"json: unsupported value: {f}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    a = abs(f)
    if 1e-6 <= a < 1e21:
        from decimal import Decimal  # lazy: ~2 ms, for the rare float in a message

        return format(Decimal(repr(f)).normalize(), "f")
    text = repr(f)  # Python uses exponent form for these magnitudes, with the same digits
    mant, _, exp = text.partition("e")
    if mant.endswith(".0"):
        mant = mant[:-2]
    sign = exp[0] if exp[:1] in "+-" else "+"
    digits = exp.lstrip("+-").lstrip("0") or "0"
    if sign == "+" and len(digits) < 2:
        digits = digits.rjust(2, "0")  # Go: e+21, e-7 (negative exponents lose the padding)
    return f"{mant}e{sign}{digits}"


def _number(n: int | float) -> str:
    if isinstance(n, int):
        # Go decodes every number into float64: small ints print unchanged, big ones round.
        return str(n) if abs(n) < 2**53 else format_float(float(n))
    return format_float(n)


class Struct(dict):
    """A JSON object marshalled with its keys in insertion order, as Go marshals a struct.

    A plain dict is marshalled as Go marshals a map: keys sorted.
    """


def _encode(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_string(obj))
    elif isinstance(obj, (int, float)):
        out.append(_number(obj))
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        keys = (
            obj
            if isinstance(obj, Struct)
            else sorted(obj, key=lambda k: str(k).encode("utf-8", "surrogatepass"))
        )
        for key in keys:
            if not first:
                out.append(",")
            first = False
            out.append(_string(str(key)))
            out.append(":")
            _encode(obj[key], out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"json: unsupported type: {type(obj).__name__}")


def marshal(obj: Any) -> bytes:
    """`obj` (decoded JSON data) as Go's json.Marshal of the same interface{} value, in UTF-8.

    Dicts are Go maps (keys sorted), `Struct`s Go structs (keys in insertion order).
    """
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode("utf-8")


def marshal_str(obj: Any) -> str:
    """`marshal(obj)` as text."""
    out: list[str] = []
    _encode(obj, out)
    return "".join(out)


_HTML_SAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def marshal_indent(obj: Any) -> str:
    """Like Go's json.MarshalIndent(obj, "", "    "): key order kept, raw UTF-8, `<>&` escaped.

    This is how the skel prints results and errors (no trailing newline).
    """
    text = json.dumps(obj, indent=4, ensure_ascii=False)
    if any(c in text for c in _HTML_SAFE):
        text = "".join(_HTML_SAFE.get(c, c) for c in text)
    if any("\ud800" <= c <= "\udfff" for c in text):  # lone surrogate: Go writes U+FFFD
        text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def loads(data: bytes | str) -> Any:
    """Decode JSON as Go does into interface{}; raises ValueError with a one-line reason."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    if not data.strip():
        raise ValueError("unexpected end of JSON input")
    return json.loads(data, parse_constant=_reject_constant)


# The JSON type word of a decoded value -> the Go type name `%T` prints for it.
_GO_TYPE_NAMES = {
    "null": "<nil>",
    "bool": "bool",
    "number": "float64",
    "string": "string",
    "array": "[]interface {}",
    "object": "map[string]interface {}",
}


def kind(value: Any) -> str:
    """The Go type name `%T` prints for a decoded JSON value (for libcni's error texts)."""
    return _GO_TYPE_NAMES[json_kind(value)]


def json_kind(value: Any) -> str:
    """The JSON type word Go's decoder names in "json: cannot unmarshal <word> into ..." errors.

    One of "null", "bool", "number", "string", "array", "object", for a decoded JSON value.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


_QUOTE_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def quote(text: str) -> str:
    """Go's `%q` (strconv.Quote) of a string, as it appears in the reference's messages and
    comments.

    Printable runes stay as they are (non-ASCII included); the short escapes Go knows are used;
    other control characters below 0x80 print as \\xNN, other non-printable runes as \\uNNNN or
    \\UNNNNNNNN. A byte that was not valid UTF-8, kept by `surrogateescape` (os.environ,
    os.fsdecode) as U+DC80..U+DCFF, prints as Go prints the raw byte: \\xNN. Any other lone
    surrogate can only come from a JSON "\\udXXX" escape, which Go decodes as U+FFFD: printed raw.
    """
    out = ['"']
    for ch in text:
        esc = _QUOTE_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "\ufffd")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
