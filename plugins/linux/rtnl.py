"""A synchronous rtnetlink socket for the plugins' hot path, built from pyroute2's own parts.

pyroute2 0.9's IPRoute runs every request through an asyncio event loop (a loop per socket, a
task and a queue per request): about 0.15 ms of CPU for a request whose kernel work takes a
few microseconds, 0.2 ms more to open and close a socket. `RtnlSocket` sends the very same
requests without that machinery: pyroute2's IPRSocket (its documented synchronous socket) for
the socket, pyroute2's request processors (`get_arguments_processor`, `get_dump_filter`) and
`NetlinkRequest` to build each message exactly as IPRoute would, pyroute2's marshal to parse
the answers, errors raised as IPRoute raises them (NetlinkError). The requests whose bytes
are fixed (`*_raw`) are built and their answers walked with netlink.py's core instead.

It offers the part of IPRoute's API that link.py, addr.py and routes.py use (`link`, `brport`,
`vlan_filter`, `addr`, `route`, `get_links`, `get_vlans`, `get_addr`, `get_routes`, `close`,
context manager), with the same arguments and results (lists of pyroute2 messages; dumps
filtered the same way). One socket serves one thread at a time, like IPRoute; the socket
belongs to the network namespace of the thread that created it.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from cni.netns import in_netns
from plugins.linux.netlink import (
    AF_BRIDGE,
    IFADDR,
    IFINFO,
    IFLA_IFNAME,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RECV_SIZE,
    REQ_ACK,
    RT_TABLE_MAIN,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_SETLINK,
    RTMSG,
    RTN_UNICAST,
    RTPROT_BOOT,
    import_iproute,
    message,
    nla,
    replies,
)

TYPE_CHECKING = False  # typing costs ms at start-up; type checkers honour this idiom
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from typing import Any


def _commands(new: int, delete: int, get: int, news: dict[str, str],
              gets: dict[str, str]) -> dict[str, tuple[int, str]]:
    """An IPRoute command map: command -> (message type, pyroute2's name of its flag set)."""
    out = {command: (new, flags) for command, flags in news.items()}
    out.update({command: (delete, "req") for command in ("del", "remove", "delete")})
    out.update({command: (get, flags) for command, flags in gets.items()})
    return out


_LINK_COMMANDS = _commands(RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK,
                           {"set": "req", "add": "create"}, {"dump": "dump", "get": "get"})
_BRPORT_COMMANDS = {"dump": (RTM_GETLINK, "dump"), "show": (RTM_GETLINK, "dump")}
_ADDR_COMMANDS = _commands(RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR,
                           {"add": "create", "replace": "replace"}, {"dump": "dump"})
_ROUTE_COMMANDS = _commands(
    RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE,
    {"add": "create", "set": "replace", "replace": "replace", "change": "change",
     "append": "append"},
    {"get": "get", "show": "dump", "dump": "dump"},
)
_SEQ_FIRST = 256  # IPRoute's sequence numbers start at 0xFF too
_PR: SimpleNamespace | None = None


def _pyroute2() -> SimpleNamespace:
    """pyroute2's parts this socket uses, loaded with the first socket.

    Imported here, not at the top: pyroute2 costs about 60 ms to import, and modules that
    import this one are also loaded by calls that open no socket (VERSION, a route lookup).
    """
    global _PR
    if _PR is None:
        linux = import_iproute()  # first: iprsocket alone runs into an import cycle
        from pyroute2.netlink.nlsocket import NetlinkRequest
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.iprsocket import IPRSocket
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        _PR = SimpleNamespace(
            args=linux.get_arguments_processor, dump_filter=linux.get_dump_filter,
            NetlinkRequest=NetlinkRequest, IPRSocket=IPRSocket, ifinfmsg=ifinfmsg,
            ifaddrmsg=ifaddrmsg, rtmsg=rtmsg,
        )
    return _PR


class RtnlSocket:
    """A NETLINK_ROUTE socket in the calling thread's netns with IPRoute's request API subset.

    The caller closes it (or uses `with`).
    """

    def __init__(self) -> None:
        self._pr = _pyroute2()
        self._nl = self._pr.IPRSocket()
        self._sock: socket.socket = self._nl.socket  # created now, in the caller's netns
        self._send = self._nl.send
        self._buf = bytearray(RECV_SIZE)
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

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < 0xFFFF else _SEQ_FIRST
        return self._seq

    def _request(self, msg: Any, command: Any, command_map: dict, dump_filter: Any,
                 arguments: Any, dump: bool) -> list:
        """Send one request built as IPRoute builds it; its answers (dump_filter applied).

        Raises the NetlinkError (or OSError) the kernel's answer carries.
        """
        seq = self._next_seq()
        request = self._pr.NetlinkRequest(self._nl, msg, command, command_map, dump_filter,
                                          arguments, msg_seq=seq)
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
        return self._raw(RTM_GETLINK, IFINFO.pack(0, 0, 0, index, 0, 0) + attrs)

    def set_link_raw(self, index: int, flags: int = 0, change: int = 0,
                     attrs: bytes = b"") -> None:
        """`link("set", index=...)` for requests whose bytes are an ifinfomsg (`flags`,
        `change`) plus ready-made attributes (`nla()`): the bytes IPRoute sends for the same
        change, without its request processors. Raises the kernel's NetlinkError as `link()`."""
        self._raw(RTM_NEWLINK, IFINFO.pack(0, 0, 0, index, flags, change) + attrs)

    def add_addr_raw(self, family: int, prefixlen: int, index: int, attrs: bytes) -> None:
        """`addr("add", ...)` for a request that is an ifaddrmsg plus ready-made attributes:
        NLM_F_CREATE | NLM_F_EXCL as IPRoute's "add". Raises the kernel's NetlinkError."""
        self._raw(RTM_NEWADDR, IFADDR.pack(family, prefixlen, 0, 0, index) + attrs,
                  REQ_ACK | NLM_F_EXCL | NLM_F_CREATE)

    def add_route_raw(self, family: int, dst_len: int, attrs: bytes) -> None:
        """A main-table, boot-protocol, universe-scope unicast route from ready-made attributes,
        sent with NLM_F_CREATE and no EXCL (routes.add_route's flags). Raises NetlinkError."""
        body = RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
        self._raw(RTM_NEWROUTE, body + attrs, REQ_ACK | NLM_F_CREATE)

    def create_route(self, **kwarg: Any) -> None:
        """A route built as IPRoute's `route("add", **kwarg)` builds it, sent with
        NLM_F_CREATE and no EXCL (pyroute2's "add" means CREATE|EXCL; Go's RouteAddEcmp
        does not). Raises NetlinkError."""
        request = self._pr.args("route", "add", kwarg, {"strict_check": False})
        self.route((RTM_NEWROUTE, REQ_ACK | NLM_F_CREATE), request_filter=request)

    def dump_addr_raw(self, family: int = 0) -> list[bytes]:
        """`addr("dump", family=family)` (the request IPRoute's `get_addr` sends) without
        decoding or filtering: every RTM_NEWADDR message of the answer, raw. Raises
        NetlinkError."""
        seq = self._send_raw(RTM_GETADDR, IFADDR.pack(family, 0, 0, 0, 0),
                             NLM_F_REQUEST | NLM_F_DUMP)
        return [msg for kind, msg in self._replies(seq) if kind == RTM_NEWADDR]

    def _raw(self, mtype: int, body: bytes, flags: int = REQ_ACK) -> bytes | None:
        """Send one request (by default NLM_F_REQUEST | NLM_F_ACK, as IPRoute's "get" and
        "set"); the first answer that is not the ACK (raw), or None."""
        found = None
        for _, msg in self._replies(self._send_raw(mtype, body, flags)):  # up to the ACK
            if found is None:
                found = msg
        return found

    def _send_raw(self, mtype: int, body: bytes, flags: int) -> int:
        """Send a request of type `mtype` with `flags` and `body`; its sequence number."""
        seq = self._next_seq()
        self._send(message(mtype, flags, seq, self._nl.epid or os.getpid(), body))
        return seq

    def _replies(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, raw message) of every answer to request `seq` until its ACK or NLMSG_DONE;
        an error answer is raised as pyroute2's marshal builds it (NetlinkError)."""
        for kind, msg in replies(self._sock, self._buf, seq):
            if kind == NLMSG_ERROR:
                for m in self.parse(msg):
                    raise m["header"]["error"]
            yield kind, msg

    def parse(self, data: bytes) -> list:
        """pyroute2's messages for raw netlink `data` (as `link()` and the others return them)."""
        return list(self._nl.marshal.parse(data))

    # ------------------------------------------------------------------ IPRoute's API

    def _api(self, kind: str, msg: Any, command: Any, command_map: dict, kwarg: dict,
             dump: bool, parameters: dict | None = None) -> list:
        """One request of IPRoute's `<kind>(command, **kwarg)`: its dump filter and request
        processors, then the request and its answers."""
        extra = (parameters,) if parameters is not None else ()
        dump_filter, kwarg = self._pr.dump_filter(kind, command, kwarg, *extra)
        arguments = self._pr.args(kind, command, kwarg, *extra)
        return self._request(msg(), command, command_map, dump_filter, arguments, dump)

    def link(self, command: Any, **kwarg: Any) -> list:
        """IPRoute.link: 'get', 'set', 'add', 'del', 'dump' (a list, also for dumps)."""
        if isinstance(kwarg.get("match"), str):
            kwarg["match"] = {"ifname": kwarg["match"]}
        command_map = kwarg.pop("command_map", _LINK_COMMANDS)
        return self._api("link", self._pr.ifinfmsg, command, command_map, kwarg,
                         command == "dump")

    def brport(self, command: str, **kwarg: Any) -> list:
        """IPRoute.brport: 'set' (bridge-port attributes) and 'show'/'dump'."""
        if command == "set":
            linkkwarg = {"index": kwarg.pop("index", 0), "kind": "bridge_slave"}
            linkkwarg.update(kwarg)
            return self.link("set", **linkkwarg)
        if command not in _BRPORT_COMMANDS:
            raise TypeError("command not supported")
        return self._api("brport", self._pr.ifinfmsg, command, _BRPORT_COMMANDS, kwarg, True)

    def vlan_filter(self, command: str, **kwarg: Any) -> list:
        """IPRoute.vlan_filter: 'add' / 'del' a bridge-VLAN entry of a port."""
        kwarg["family"] = AF_BRIDGE
        kwarg["command_map"] = {"add": (RTM_SETLINK, "req"), "del": (RTM_DELLINK, "req")}
        kwarg["dump_filter"] = None
        kwarg["request_filter"] = self._pr.args("vlan_filter", command, kwarg)
        return self.link(command, **kwarg)

    def addr(self, command: str, **kwarg: Any) -> list:
        """IPRoute.addr: 'add', 'del', 'replace', 'dump'."""
        return self._api("addr", self._pr.ifaddrmsg, command, _ADDR_COMMANDS, kwarg,
                         command == "dump")

    def route(self, command: Any, **kwarg: Any) -> list:
        """IPRoute.route: 'add', 'set', 'replace', 'change', 'append', 'del', 'dump', or an
        explicit (type, flags) tuple with a prepared `request_filter`."""
        if command in ("add", "set", "replace", "change", "append"):
            kwarg["proto"] = kwarg.get("proto", "static") or "static"
            kwarg["type"] = kwarg.get("type", "unicast") or "unicast"
        return self._api("route", self._pr.rtmsg, command, _ROUTE_COMMANDS, kwarg,
                         command in ("dump", "show"), {"strict_check": False})

    def get_links(self, **kwarg: Any) -> list:
        """IPRoute.get_links() for all links (a list)."""
        return self.link("dump", **kwarg)

    def get_vlans(self, **kwarg: Any) -> list:
        """IPRoute.get_vlans: the bridge-VLAN view of the ports matching `kwarg`."""
        return self.link("dump", family=AF_BRIDGE, ext_mask=2, match=kwarg)

    def get_addr(self, family: int = 0, match: Any = None, **kwarg: Any) -> list:
        """IPRoute.get_addr: the addresses of `family` (0: all) matching `match` or `kwarg`."""
        return self.addr("dump", family=family, match=match or kwarg)

    def get_routes(self, family: int = 255, match: Any = None, **kwarg: Any) -> list:
        """IPRoute.get_routes (a dump): the routes of `family` matching `match` or `kwarg`."""
        return self.route("dump", family=family, match=match or kwarg)


def iproute() -> RtnlSocket:
    """A new rtnetlink socket in the calling thread's current network namespace.

    The caller closes it. It spawns no thread; it may be used from any thread afterwards (one
    at a time) and keeps acting on the namespace it was created in (a netlink socket belongs
    to the netns it was created in, forever).
    """
    return RtnlSocket()


def iproute_in(netns_path: str) -> RtnlSocket:
    """An rtnetlink socket (`iproute()`) bound to the netns at `netns_path` (the thread enters
    and returns).

    Raises cni.netns.NetnsError (a CNIError with the reference's wording) when the path is not
    a usable netns.
    """
    with in_netns(netns_path):
        return iproute()
