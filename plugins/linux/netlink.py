"""The netlink core of plugins/linux: constants, the message header, attribute encoding and
walking, the request/answer loop over a socket, errors, and pyroute2 loaded lean.

Everything that speaks netlink builds on this module: rtnl.py (the rtnetlink socket behind
links, addresses and routes), routes.py's route lookup and nfprobe.py's nftables probe. The
standard-library half (all but the last section) imports nothing beyond socket and struct, so
a lookup that needs one request (portmap's `output_interface`) costs no pyroute2 import.

pyroute2 without its package-wide import: `import pyroute2.iproute.linux` runs
`pyroute2/__init__.py` first, which imports most of the library (ndb, ipdb, conntrack, ...):
about 165 ms, against about 60 ms for what the rtnetlink socket needs. Registering a bare
package module with the real search path lets the submodules load alone.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import sys
import types

from cni.errors import errno_text as go_errno_text

TYPE_CHECKING = False  # typing costs ms at start-up; type checkers honour this idiom
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
REQ_ACK = NLM_F_REQUEST | NLM_F_ACK  # the flags of IPRoute's "get" and "set"

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

AF_INET = 2
AF_BRIDGE = 7
AF_INET6 = 10

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_SLAVE_DATA = 16, 18, 1, 5
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RTM_F_CLONED = 0x200

# errno values compared by callers
ENOENT = 2
EEXIST = 17
ENODEV = 19
EOPNOTSUPP = 95

NLMSG = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
IFINFO = struct.Struct("=BBHiII")  # ifinfomsg: family, pad, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
# rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct("=BBBBBBBBI")
_ERRNO = struct.Struct("=i")
_NLA = struct.Struct("=HH")  # nlattr: length, type
RECV_SIZE = 256 * 1024  # asyncio's datagram size, which IPRoute receives with
_ASK_SIZE = 64 * 1024  # one answer to one request: a route, a table, an error


# --------------------------------------------------------------------------- encoding


def nla(kind: int, value: bytes) -> bytes:
    """One netlink attribute: header, `value`, padding to 4 bytes (as pyroute2 encodes it)."""
    return _NLA.pack(4 + len(value), kind) + value + bytes(-len(value) % 4)


def message(mtype: int, flags: int, seq: int, port: int, body: bytes) -> bytes:
    """One netlink message: the header for `body` (its length included), then `body`."""
    return NLMSG.pack(NLMSG.size + len(body), mtype, flags, seq, port) + body


def attrs(data: bytes, off: int, end: int) -> dict[int, bytes] | None:
    """The netlink attributes in data[off:end] by type, first occurrence of each; None when
    the layout is not the plain one (a caller then lets pyroute2 decode the message)."""
    out: dict[int, bytes] = {}
    unpack = _NLA.unpack_from
    while off + 4 <= end:
        length, kind = unpack(data, off)
        kind &= 0x3FFF  # minus NLA_F_NESTED, NLA_F_NET_BYTEORDER
        if length < 4 or off + length > end:
            return None
        if kind not in out:
            out[kind] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def attr(data: bytes, off: int, end: int, wanted: int) -> bytes | None:
    """The first attribute of type `wanted` in data[off:end]; None when there is none before
    the end or a malformed attribute."""
    unpack = _NLA.unpack_from
    while off + 4 <= end:
        length, kind = unpack(data, off)
        if length < 4 or off + length > end:
            return None
        if kind & 0x3FFF == wanted:
            return data[off + 4:off + length]
        off += (length + 3) & ~3
    return None


def attr_text(value: bytes | None) -> str | None:
    """An asciiz attribute as pyroute2 decodes it ("" when absent); None when it would not
    give a str."""
    if value is None:
        return ""
    try:
        return value.strip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        return None


def attr_u32(value: bytes | None) -> int | None:
    """A uint32 attribute (0 when absent); None when it is not 4 bytes."""
    if value is None:
        return 0
    return int.from_bytes(value, "little") if len(value) == 4 else None


# --------------------------------------------------------------------------- transport


def open_socket(protocol: int) -> socket.socket:
    """A bound netlink socket of `protocol` in the calling thread's network namespace (the
    caller closes it). Raises OSError when the kernel refuses one."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


def error_code(data: bytes | bytearray | memoryview, off: int = 0) -> int:
    """The (positive) errno of the NLMSG_ERROR message at `off`; 0 for an ACK."""
    return -_ERRNO.unpack_from(data, off + NLMSG.size)[0]


def replies(sock: socket.socket, buf: bytearray, seq: int) -> Iterator[tuple[int, bytes]]:
    """(type, raw message) of every answer to request `seq` received on `sock` into `buf`,
    until NLMSG_DONE or the ACK (neither yielded); an error answer (NLMSG_ERROR with a
    nonzero code, see `error_code`) is yielded and ends the answers. Answers to other
    requests are skipped."""
    while True:
        n = sock.recv_into(buf)
        off = 0
        while off + NLMSG.size <= n:
            mlen, kind, _, mseq, _ = NLMSG.unpack_from(buf, off)
            if mlen < NLMSG.size or off + mlen > n:
                break
            if mseq == seq:
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    if error_code(buf, off):
                        yield kind, bytes(buf[off:off + mlen])
                    return
                yield kind, bytes(buf[off:off + mlen])
            off += (mlen + 3) & ~3


def ask(protocol: int, mtype: int, flags: int, body: bytes,
        timeout: float) -> list[tuple[int, bytes]]:
    """One request on a fresh socket of `protocol` (the calling thread's netns) and its
    answers as `replies` gives them; without NLM_F_ACK or NLM_F_DUMP in `flags` the kernel
    sends one answer and that is all. Raises OSError (no socket, a timeout)."""
    out = []
    with open_socket(protocol) as sock:
        sock.settimeout(timeout)
        sock.send(message(mtype, flags, 1, 0, body))
        for answer in replies(sock, bytearray(_ASK_SIZE), 1):
            out.append(answer)
            if not flags & (NLM_F_ACK | NLM_F_DUMP):
                break
    return out


# --------------------------------------------------------------------------- errors


def errno_of(err: BaseException) -> int | None:
    """The errno carried by a NetlinkError or OSError, else None."""
    code = getattr(err, "code", None)
    if isinstance(code, int):
        return code
    code = getattr(err, "errno", None)
    return code if isinstance(code, int) else None


def errno_text(err: BaseException) -> str:
    """Go's text for an errno error: strerror with a lower-case first letter."""
    code = errno_of(err)
    return str(err) if code is None else go_errno_text(code)


# --------------------------------------------------------------------------- pyroute2


def _bare_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"package {name} not found")
    sys.modules[name] = importlib.util.module_from_spec(spec)  # created, not executed


def bare_pyroute2() -> None:
    """Make pyroute2's submodules importable one by one, without its package-wide import.

    Idempotent; call it before any `from pyroute2.<submodule> import ...`.
    """
    _bare_package("pyroute2")


def netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError class (for `except` clauses), loaded without the package import."""
    _bare_package("pyroute2")
    # pyroute2 loads on first use only: a route lookup or a VERSION call never needs it
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


class _InertMock:
    """Stands in for unittest.mock.Mock while pyroute2 is imported (see `import_iproute`):
    any method called on it does nothing."""

    def __getattr__(self, name: str):
        return _noop


def _noop(*args: object, **kwargs: object) -> None:
    return None


def _import_linux() -> ModuleType:
    # pyroute2 loads on first use only (about 60 ms): see the module docstring
    import pyroute2.iproute.linux as module

    return module


def import_iproute() -> ModuleType:
    """The module pyroute2.iproute.linux (IPRoute, its request processors), imported once
    without the package-wide import and, when possible, without unittest.

    pyroute2 0.9.7's netlink/rtnl/iprsocket.py does `from unittest import mock` for one class
    attribute (`NotLocal.msg_queue = mock.Mock()`, a message-queue placeholder its sync
    IPRSocket never calls into on the paths plugins/linux uses); importing unittest costs
    about 8 ms of CPU (unittest.case, difflib, pprint, ...). When no unittest is loaded yet,
    that one import is served by a stand-in which is taken out of sys.modules again right
    after, so a later `import unittest` anywhere in the process gets the real package; a
    unittest already loaded (a test process) is used as it is, never shadowed.
    """
    module = sys.modules.get("pyroute2.iproute.linux")
    if module is not None:
        return module
    _bare_package("pyroute2")
    if "unittest" in sys.modules or "unittest.mock" in sys.modules:
        return _import_linux()
    stub = types.ModuleType("unittest")
    stub_mock = types.ModuleType("unittest.mock")
    stub_mock.Mock = _InertMock  # type: ignore[attr-defined]
    stub.mock = stub_mock  # type: ignore[attr-defined]
    sys.modules["unittest"] = stub
    sys.modules["unittest.mock"] = stub_mock
    try:
        found: ModuleType | None = _import_linux()
    except ImportError:  # a pyroute2 that needs more of unittest: import it for real below
        found = None
    finally:
        if sys.modules.get("unittest") is stub:
            del sys.modules["unittest"]
        if sys.modules.get("unittest.mock") is stub_mock:
            del sys.modules["unittest.mock"]
    return found if found is not None else _import_linux()
