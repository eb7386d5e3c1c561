"""A synchronous rtnetlink socket for the plugins' hot path, built from pyroute2's own parts.

pyroute2 0.9's IPRoute runs every request through an asyncio event loop (a loop per socket, a
task and a queue per request): about 0.15 ms of CPU for a request whose kernel work takes a
few microseconds, 0.2 ms more to open and close a socket. `RtnlSocket` sends the very same
requests without that machinery: pyroute2's IPRSocket (its documented synchronous socket) for
the socket, pyroute2's request processors (`get_arguments_processor`, `get_dump_filter`) and
`NetlinkRequest` to build each message exactly as IPRoute would, pyroute2's marshal to parse
the answers, errors raised as IPRoute raises them (NetlinkError).

It offers the part of IPRoute's API that plugins/linux/link.py uses (`link`, `brport`,
`vlan_filter`, `addr`, `route`, `get_links`, `get_vlans`, `get_addr`, `get_routes`, `close`,
context manager), with the same arguments and results (lists of pyroute2 messages; dumps
filtered the same way). One socket serves one thread at a time, like IPRoute; the socket
belongs to the network namespace of the thread that created it.
"""

from __future__ import annotations

import os
import struct
from typing import Any

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
IFLA_IFNAME = 3
_REQ_ACK = 0x1 | 0x4  # NLM_F_REQUEST | NLM_F_ACK: the flags of IPRoute's "get" and "set"
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BBHiII")  # ifinfomsg: family, pad, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
RTM_NEWADDR = 20
RTM_GETADDR = 22
_DUMP = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP: IPRoute's "dump"
RTM_NEWROUTE = 24
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol,
# scope, type, flags
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
_RECV_SIZE = 256 * 1024  # asyncio's datagram size, which IPRoute receives with
_SEQ_FIRST = 256  # IPRoute's sequence numbers start at 0xFF too


def nla(kind: int, value: bytes) -> bytes:
    """One netlink attribute: header, `value`, padding to 4 bytes (as pyroute2 encodes it)."""
    return struct.pack("=HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)


class RtnlSocket:
    """A NETLINK_ROUTE socket in the calling thread's netns with IPRoute's request API subset.

    The caller closes it (or uses `with`).
    """

    def __init__(self) -> None:
        from plugins.linux.netlink import import_iproute

        # iproute.linux first (importing iprsocket on its own runs into an import cycle), and
        # through netlink.import_iproute, which keeps unittest out
        import_iproute()
        from pyroute2.netlink.rtnl.iprsocket import IPRSocket

        self._nl = IPRSocket()
        self._sock = self._nl.socket  # created now, in the caller's netns
        self._send = self._nl.send
        self._buf = bytearray(_RECV_SIZE)
        self._seq = _SEQ_FIRST

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _request(self, msg: Any, command: Any, command_map: dict, dump_filter: Any,
                 arguments: Any, dump: bool) -> list:
        """Send one request built as IPRoute builds it; its answers (dump_filter applied).

        Raises the NetlinkError (or OSError) the kernel's answer carries.
        """
        from pyroute2.netlink.nlsocket import NetlinkRequest

        self._seq = self._seq + 1 if self._seq < 0xFFFF else _SEQ_FIRST
        seq = self._seq
        request = NetlinkRequest(self._nl, msg, command, command_map, dump_filter, arguments,
                                 msg_seq=seq)
        request.msg.encode()
        self._send(request.msg.data)
        match = request.match_one_message
        out = []
        buf, view, parse = self._buf, memoryview(self._buf), self._nl.marshal.parse
        while True:
            n = self._sock.recv_into(buf)
            for m in parse(bytes(view[:n])):
                header = m["header"]
                if header["sequence_number"] != seq:
                    continue  # an answer to an earlier request nobody waited for
                error = header.get("error")
                if error is not None:
                    raise error
                mtype = header["type"]
                if mtype == NLMSG_DONE or mtype == NLMSG_ERROR:  # end of dump / ACK
                    if not dump and mtype == NLMSG_ERROR and not out:
                        out.append(m)  # IPRoute returns the ACK of a plain request
                    return out
                if dump_filter is None or match(dump_filter, m):
                    out.append(m)

    def get_link_raw(self, index: int = 0, name: str | None = None) -> bytes | None:
        """`link("get", index=...)` (or `ifname=name` when `index` is 0), without pyroute2's
        message objects: the request is the same bytes, the answer's RTM_NEWLINK message is
        returned undecoded (None when the kernel answered with the ACK alone). Raises the
        NetlinkError the kernel's answer carries, built by pyroute2's marshal as `link()` does.
        `parse()` turns the bytes into pyroute2's message when a caller needs all of it."""
        attrs = b""
        if not index and name is not None:
            attrs = nla(IFLA_IFNAME, name.encode() + b"\0")
        return self._raw(RTM_GETLINK, _IFINFO.pack(0, 0, 0, index, 0, 0) + attrs)

    def set_link_raw(self, index: int, flags: int = 0, change: int = 0, attrs: bytes = b"") -> None:
        """`link("set", index=...)` for requests whose bytes are an ifinfomsg (`flags`,
        `change`) plus ready-made attributes (`nla()`): the bytes IPRoute sends for the same
        change, without its request processors. Raises the kernel's NetlinkError as `link()`."""
        self._raw(RTM_NEWLINK, _IFINFO.pack(0, 0, 0, index, flags, change) + attrs)

    def add_addr_raw(self, family: int, prefixlen: int, index: int, attrs: bytes) -> None:
        """`addr("add", ...)` for a request that is an ifaddrmsg plus ready-made attributes:
        NLM_F_CREATE | NLM_F_EXCL as IPRoute's "add". Raises the kernel's NetlinkError."""
        self._raw(RTM_NEWADDR, _IFADDR.pack(family, prefixlen, 0, 0, index) + attrs,
                  _REQ_ACK | NLM_F_EXCL | NLM_F_CREATE)

    def add_route_raw(self, family: int, dst_len: int, attrs: bytes) -> None:
        """A main-table, boot-protocol, universe-scope unicast route from ready-made attributes,
        sent with NLM_F_CREATE and no EXCL (link.add_route's flags). Raises NetlinkError."""
        body = _RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
        self._raw(RTM_NEWROUTE, body + attrs, _REQ_ACK | NLM_F_CREATE)

    def dump_addr_raw(self, family: int = 0) -> list[bytes]:
        """`addr("dump", family=family)` (the request IPRoute's `get_addr` sends) without
        decoding or filtering: every RTM_NEWADDR message of the answer, raw. Raises NetlinkError."""
        seq = self._send_raw(RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0), _DUMP)
        return [msg for kind, msg in self._replies(seq) if kind == RTM_NEWADDR]

    def _raw(self, mtype: int, body: bytes, flags: int = _REQ_ACK) -> bytes | None:
        """Send one request (by default NLM_F_REQUEST | NLM_F_ACK, as IPRoute's "get" and
        "set"); the first answer that is not the ACK (raw), or None."""
        found = None
        for _, msg in self._replies(self._send_raw(mtype, body, flags)):  # up to the ACK
            if found is None:
                found = msg
        return found

    def _send_raw(self, mtype: int, body: bytes, flags: int) -> int:
        """Send a request of type `mtype` with `flags` and `body`; its sequence number."""
        self._seq = self._seq + 1 if self._seq < 0xFFFF else _SEQ_FIRST
        self._send(_NLMSG.pack(_NLMSG.size + len(body), mtype, flags, self._seq, self._nl.epid or os.getpid())
                   + body)
        return self._seq

    def _replies(self, seq: int):
        """(type, raw message) of every answer to request `seq` until its ACK or NLMSG_DONE;
        an error answer is raised as pyroute2's marshal builds it (NetlinkError)."""
        buf = self._buf
        while True:
            n = self._sock.recv_into(buf)
            off = 0
            while off + _NLMSG.size <= n:
                mlen, kind, _, mseq, _ = _NLMSG.unpack_from(buf, off)
                if mlen < _NLMSG.size or off + mlen > n:
                    break
                if mseq == seq:
                    if kind == NLMSG_DONE:
                        return
                    if kind == NLMSG_ERROR:
                        if struct.unpack_from("=i", buf, off + _NLMSG.size)[0]:
                            for m in self.parse(bytes(buf[off:off + mlen])):
                                raise m["header"]["error"]
                        return  # the ACK
                    yield kind, bytes(buf[off:off + mlen])
                off += (mlen + 3) & ~3

    def parse(self, data: bytes) -> list:
        """pyroute2's messages for raw netlink `data` (as `link()` and the others return them)."""
        return list(self._nl.marshal.parse(data))

    # ------------------------------------------------------------------ IPRoute's API

    def link(self, command: Any, **kwarg: Any) -> list:
        """IPRoute.link: 'get', 'set', 'add', 'del', 'dump' (a list, also for dumps)."""
        from pyroute2.iproute.linux import get_arguments_processor, get_dump_filter
        from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        command_map = {
            "set": (RTM_NEWLINK, "req"),
            "add": (RTM_NEWLINK, "create"),
            "del": (RTM_DELLINK, "req"),
            "remove": (RTM_DELLINK, "req"),
            "delete": (RTM_DELLINK, "req"),
            "dump": (RTM_GETLINK, "dump"),
            "get": (RTM_GETLINK, "get"),
        }
        if isinstance(kwarg.get("match"), str):
            kwarg["match"] = {"ifname": kwarg["match"]}
        if "command_map" in kwarg:
            command_map = kwarg.pop("command_map")
        dump_filter, kwarg = get_dump_filter("link", command, kwarg)
        arguments = get_arguments_processor("link", command, kwarg)
        return self._request(ifinfmsg(), command, command_map, dump_filter, arguments,
                             command == "dump")

    def brport(self, command: str, **kwarg: Any) -> list:
        """IPRoute.brport: 'set' (bridge-port attributes) and 'show'/'dump'."""
        if command == "set":
            linkkwarg = {"index": kwarg.pop("index", 0), "kind": "bridge_slave"}
            linkkwarg.update(kwarg)
            return self.link("set", **linkkwarg)
        from pyroute2.iproute.linux import get_arguments_processor, get_dump_filter
        from pyroute2.netlink.rtnl import RTM_GETLINK
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        command_map = {"dump": (RTM_GETLINK, "dump"), "show": (RTM_GETLINK, "dump")}
        if command not in command_map:
            raise TypeError("command not supported")
        dump_filter, kwarg = get_dump_filter("brport", command, kwarg)
        arguments = get_arguments_processor("brport", command, kwarg)
        return self._request(ifinfmsg(), command, command_map, dump_filter, arguments, True)

    def vlan_filter(self, command: str, **kwarg: Any) -> list:
        """IPRoute.vlan_filter: 'add' / 'del' a bridge-VLAN entry of a port."""
        from pyroute2 import config
        from pyroute2.iproute.linux import get_arguments_processor
        from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_SETLINK

        kwarg["family"] = config.AF_BRIDGE
        kwarg["command_map"] = {"add": (RTM_SETLINK, "req"), "del": (RTM_DELLINK, "req")}
        kwarg["dump_filter"] = None
        kwarg["request_filter"] = get_arguments_processor("vlan_filter", command, kwarg)
        return self.link(command, **kwarg)

    def addr(self, command: str, **kwarg: Any) -> list:
        """IPRoute.addr: 'add', 'del', 'replace', 'dump'."""
        from pyroute2.iproute.linux import get_arguments_processor, get_dump_filter
        from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_GETADDR, RTM_NEWADDR
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        command_map = {
            "add": (RTM_NEWADDR, "create"),
            "del": (RTM_DELADDR, "req"),
            "remove": (RTM_DELADDR, "req"),
            "delete": (RTM_DELADDR, "req"),
            "replace": (RTM_NEWADDR, "replace"),
            "dump": (RTM_GETADDR, "dump"),
        }
        dump_filter, kwarg = get_dump_filter("addr", command, kwarg)
        arguments = get_arguments_processor("addr", command, kwarg)
        return self._request(ifaddrmsg(), command, command_map, dump_filter, arguments,
                             command == "dump")

    def route(self, command: Any, **kwarg: Any) -> list:
        """IPRoute.route: 'add', 'set', 'replace', 'change', 'append', 'del', 'dump', or an
        explicit (type, flags) tuple with a prepared `request_filter`."""
        from pyroute2.iproute.linux import get_arguments_processor, get_dump_filter
        from pyroute2.netlink.rtnl import RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        if command in ("add", "set", "replace", "change", "append"):
            kwarg["proto"] = kwarg.get("proto", "static") or "static"
            kwarg["type"] = kwarg.get("type", "unicast") or "unicast"
        command_map = {
            "add": (RTM_NEWROUTE, "create"),
            "set": (RTM_NEWROUTE, "replace"),
            "replace": (RTM_NEWROUTE, "replace"),
            "change": (RTM_NEWROUTE, "change"),
            "append": (RTM_NEWROUTE, "append"),
            "del": (RTM_DELROUTE, "req"),
            "remove": (RTM_DELROUTE, "req"),
            "delete": (RTM_DELROUTE, "req"),
            "get": (RTM_GETROUTE, "get"),
            "show": (RTM_GETROUTE, "dump"),
            "dump": (RTM_GETROUTE, "dump"),
        }
        parameters = {"strict_check": False}
        dump_filter, kwarg = get_dump_filter("route", command, kwarg, parameters)
        arguments = get_arguments_processor("route", command, kwarg, parameters)
        return self._request(rtmsg(), command, command_map, dump_filter, arguments,
                             command in ("dump", "show"))

    def get_links(self, **kwarg: Any) -> list:
        """IPRoute.get_links() for all links (a list)."""
        return self.link("dump", **kwarg)

    def get_vlans(self, **kwarg: Any) -> list:
        """IPRoute.get_vlans: the bridge-VLAN view of the ports matching `kwarg`."""
        from pyroute2 import config

        return self.link("dump", family=config.AF_BRIDGE, ext_mask=2, match=kwarg)

    def get_addr(self, family: int = 0, match: Any = None, **kwarg: Any) -> list:
        """IPRoute.get_addr: the addresses of `family` (0: all) matching `match` or `kwarg`."""
        return self.addr("dump", family=family, match=match or kwarg)

    def get_routes(self, family: int = 255, match: Any = None, **kwarg: Any) -> list:
        """IPRoute.get_routes (a dump): the routes of `family` matching `match` or `kwarg`."""
        return self.route("dump", family=family, match=match or kwarg)
