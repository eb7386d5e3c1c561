"""IP address text as Go's `net` package prints it, for byte-identical results and file names.

Standard library only and nothing imported: host-local (ipam/addr.py) and the result models
(through cni/gocompat/cidr.py) both print addresses this way.
"""

from __future__ import annotations


def ipv6_text(value: int) -> str:
    """The 128-bit address `value` as Go's net.IP.String() prints a non-IPv4 address.

    RFC 5952: lower-case hex groups without leading zeros, the longest run of two or more zero
    groups (the first one on a tie) written as `::`. The caller handles IPv4 and IPv4-mapped
    addresses, which Go prints dotted.
    """
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_at, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i]:
            i += 1
            continue
        j = i
        while j < 8 and not groups[j]:
            j += 1
        if j - i > best_len:
            best_at, best_len = i, j - i
        i = j
    if best_at < 0:
        return ":".join(f"{g:x}" for g in groups)
    head = ":".join(f"{g:x}" for g in groups[:best_at])
    tail = ":".join(f"{g:x}" for g in groups[best_at + best_len :])
    return f"{head}::{tail}"
