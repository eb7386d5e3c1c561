"""Route lookups through one rtnetlink request (RTM_GETROUTE), standard library only.

pyroute2 would do, but importing any of it costs ~100 ms (its package `__init__` imports every
module; measured with pyroute2 0.9.7), which is more than a whole portmap ADD otherwise takes.
One fixed-format request and a walk over the attributes of the answer is all a route lookup needs.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
RTA_DST = 1
RTA_OIF = 4
_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTA = struct.Struct("=HH")  # len, type


def output_interface(ip: str) -> str | None:
    """The name of the interface the kernel would route `ip` out of (`ip route get`), or None.

    None when there is no route (or the answer names no interface). Acts in the calling thread's
    network namespace. Raises ValueError for a malformed address.
    """
    addr = ipaddress.ip_address(ip)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    dst = addr.packed
    payload = _RTMSG.pack(family, len(dst) * 8, 0, 0, 0, 0, 0, 0, 0)
    payload += _RTA.pack(_RTA.size + len(dst), RTA_DST) + dst
    msg = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(payload), RTM_GETROUTE, NLM_F_REQUEST, 1, 0) + payload
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as s:
        s.settimeout(5)
        s.bind((0, 0))
        s.send(msg)
        data = s.recv(65536)
    if len(data) < _NLMSG_HDR.size:
        return None
    length, kind, _, _, _ = _NLMSG_HDR.unpack_from(data)
    if kind != RTM_NEWROUTE:  # NLMSG_ERROR: no route (ENETUNREACH and the like)
        return None
    offset = _NLMSG_HDR.size + _RTMSG.size
    end = min(length, len(data))
    while offset + _RTA.size <= end:
        rta_len, rta_type = _RTA.unpack_from(data, offset)
        if rta_len < _RTA.size:
            break
        if rta_type == RTA_OIF and rta_len >= _RTA.size + 4:
            (index,) = struct.unpack_from("=I", data, offset + _RTA.size)
            try:
                return socket.if_indextoname(index)
            except OSError:
                return None
        offset += (rta_len + 3) & ~3
    return None
