"""Names derived from hashes, as the reference derives them (docs/reference-behaviour.md §0.7)."""

from __future__ import annotations

import hashlib

__all__ = ["chain_name", "sha512_hex"]


def sha512_hex(text: str) -> str:
    """Lowercase hex SHA-512 of `text` (UTF-8)."""
    return hashlib.sha512(text.encode("utf-8", "surrogateescape")).hexdigest()


def chain_name(name: str, container_id: str, prefix: str = "") -> str:
    """`CNI-<prefix><sha512(name+id)>` cut to 28 characters (iptables' chain-name limit)."""
    return ("CNI-" + prefix + sha512_hex(name + container_id))[:28]
