"""Addresses read like Go's net.ParseCIDR / net.ParseIP and printed like net.IPNet / net.IP.

Host bits are kept, IPv6 is compressed and lower-case, IPv4-mapped IPv6 prints as dotted IPv4;
what Go rejects (zones, non-ASCII digits, prefix lengths with more than three digits) is a
ValueError with Go's wording. Apart from cni.gocompat.ip so that host-local's address module,
which needs only the printing, does not import ipaddress.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cni.errors import one_line
from cni.gocompat.decode import GO_JSON
from cni.gocompat.ip import ipv6_text
from cni.gocompat.json import json_kind

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(text: str) -> IP | None:
    """An ipaddress object for `text`, or None when Go's parser would reject it (zones too)."""
    if not text.isascii() or "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_text(ip: IP) -> str:
    """Go's net.IP.String(): dotted IPv4 (also for IPv4-mapped IPv6), else RFC 5952 IPv6."""
    if ip.version == 4:
        return str(ip)
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return ipv6_text(int(ip))


def _not_a_string(value: object, what: str, info: Any) -> ValueError:
    if info is not None and info.context and info.context.get(GO_JSON):
        return ValueError(f"json: cannot unmarshal {json_kind(value)} into Go value of type string")
    return ValueError(f"invalid {what}: {one_line(repr(value))} is not a string")


def canonical_cidr(value: object, info: Any = None) -> str:
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


def canonical_ip(value: object, info: Any = None) -> str | None:
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
