"""IP addresses as integers, parsed and printed the way Go's `net` package does.

host-local iterates, compares and masks addresses; doing that on plain ints keeps the hot path
free of object churn. An address is an `Addr`: (bits, value) with bits 32 for IPv4 (including
IPv4-mapped IPv6, which Go's `To4()` turns into IPv4) and 128 for IPv6.
"""

from __future__ import annotations

import ipaddress
from _socket import AF_INET, inet_pton  # C module, loaded with the interpreter
from typing import NamedTuple

from cni.gocompat.ip import ipv6_text


class Addr(NamedTuple):
    """One IP address: `bits` is 32 (IPv4) or 128 (IPv6), `value` the address as an int."""

    bits: int
    value: int

    def __str__(self) -> str:
        return text(self)

    def next(self) -> Addr:
        """The following address (wrapping within the family, as Go's ip.NextIP does)."""
        return Addr(self.bits, (self.value + 1) & ((1 << self.bits) - 1))


_V4_MAPPED = 0xFFFF << 32


def parse(s: str) -> Addr | None:
    """`s` as Go's net.ParseIP + To4 canonicalisation would read it, or None when Go rejects it.

    Dotted IPv4 (no leading zeros), IPv6 (an embedded dotted IPv4 tail allowed), no zone. An
    IPv4-mapped IPv6 address becomes IPv4.
    """
    if not isinstance(s, str) or not s or not s.isascii() or "%" in s or "/" in s:
        return None
    if ":" not in s:
        # IPv4 only: inet_pton accepts exactly what ipaddress does (four decimal octets, no
        # leading zeros, nothing around them) at a tenth of the cost, which counts when every
        # lease file name of a directory of 60,000 is parsed (cnitool doctor).
        try:
            return Addr(32, int.from_bytes(inet_pton(AF_INET, s), "big"))
        except OSError:
            return None
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if ip.version == 4:
        return Addr(32, int(ip))
    value = int(ip)
    if value >> 32 == 0xFFFF:
        return Addr(32, value & 0xFFFFFFFF)
    return Addr(128, value)


def text(a: Addr) -> str:
    """Go's net.IP.String(): dotted IPv4, RFC 5952 IPv6 (longest zero run of >= 2 as `::`)."""
    v = a.value
    if a.bits == 32:
        return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"
    if v >> 32 == 0xFFFF:  # IPv4-mapped: Go prints the IPv4 form
        return text(Addr(32, v & 0xFFFFFFFF))
    return ipv6_text(v)


def mask(bits: int, prefix: int) -> int:
    """The netmask of `prefix` ones in a `bits`-wide address, as an int."""
    full = (1 << bits) - 1
    return full ^ ((1 << (bits - prefix)) - 1)


def parse_cidr(s: str) -> tuple[Addr, int, int] | None:
    """`s` as Go's net.ParseCIDR reads it: (address as written, prefix, mask width), or None.

    The mask width is 32 or 128 as Go would keep it: an IPv4-mapped IPv6 CIDR keeps a 128-bit
    mask although its address is IPv4 (host-local then reports a family mismatch).
    """
    if not isinstance(s, str):
        return None
    addr_text, slash, plen_text = s.partition("/")
    if not slash or not plen_text.isascii() or not plen_text.isdigit():
        return None
    a = parse(addr_text)
    if a is None:
        return None
    width = 128 if ":" in addr_text else 32
    plen = int(plen_text)
    if plen > width:
        return None
    return a, plen, width


def ip_with_prefix(a: Addr, prefix: int) -> str:
    """`<ip>/<prefix>` text, the form of a result address."""
    return f"{text(a)}/{prefix}"
