"""Names derived from hashes, as the reference derives them (plugins-notes §0.7)."""

from __future__ import annotations

import hashlib


def sha512_hex(text: str) -> str:
    """Lowercase hex SHA-512 of `text` (UTF-8)."""
    return hashlib.sha512(text.encode("utf-8", "surrogateescape")).hexdigest()


def chain_name(name: str, container_id: str, prefix: str = "") -> str:
    """`CNI-<prefix><sha512(name+id)>` cut to 28 characters (iptables' chain-name limit)."""
    return ("CNI-" + prefix + sha512_hex(name + container_id))[:28]


def go_quote(text: str) -> str:
    """`text` quoted as Go's %q does, for byte-identical iptables comments."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif 0xDC80 <= code <= 0xDCFF:  # undecodable byte kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
