"""The server side of the wire: receiving one request datagram, and refusing it.

A request is one SOCK_SEQPACKET datagram (plugins/worker/protocol.py encodes it) with 2 to
MAX_FDS descriptors: the caller's stdin and stderr, a pidfd of itself, and the attachment lock
its ancestry holds, if any. Everything here is non-blocking and never raises.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from plugins.worker.limits import MAX_FDS, MAX_REQUEST, QUEUE_SECONDS
from plugins.worker.protocol import decode_request


def _queue_deadline() -> float:
    return time.monotonic() + QUEUE_SECONDS


@dataclass(eq=False)
class Request:
    """One received request: its connection, fields and descriptors (owned until `close`), and
    the moment it has waited too long in the queue."""

    conn: socket.socket
    name: str
    build_id: str
    env: dict[str, str]
    fds: list[int]
    deadline: float = field(init=False, default_factory=_queue_deadline)

    @property
    def pidfd(self) -> int | None:
        """The pidfd the client sent for itself (3rd descriptor), if any."""
        return self.fds[2] if len(self.fds) > 2 else None

    @property
    def inherited(self) -> int | None:
        """The attachment lock the client presents (4th descriptor), if any."""
        return self.fds[3] if len(self.fds) > 3 else None

    def close(self) -> None:
        """Close the descriptors and the connection (once)."""
        fds, self.fds = self.fds, []
        close_all(fds)
        close_conn(self.conn)


def close_all(fds: Iterable[int | None]) -> None:
    """Close every descriptor of `fds` that is open (None and negative ones are skipped)."""
    for fd in fds:
        if fd is not None and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def close_conn(conn: socket.socket) -> None:
    """Close a connection after discarding what the client sent beyond its request: closing
    with unread data would reset the connection before the client read our replies."""
    try:
        conn.setblocking(False)  # with a timeout set, Python would wait for data to come
    except OSError:
        pass
    for _ in range(8):
        try:
            if not conn.recv(1, socket.MSG_DONTWAIT | socket.MSG_TRUNC):
                break
        except OSError:
            break
    conn.close()


def parse(
    msg: bytes, fds: list[int], names: frozenset[str]
) -> tuple[str, str, dict[str, str]] | str:
    """(name, build id, environment) of a request datagram for one of the entry points
    `names`, or why it is malformed."""
    parsed = decode_request(msg, names)
    if parsed == "bad magic":
        return parsed
    if not 2 <= len(fds) <= MAX_FDS:
        return f"{len(fds)} descriptors"
    return parsed


def peer_gone(conn: socket.socket) -> bool:
    """True when the client closed its end (what it may still have queued does not count)."""
    poller = select.poll()
    poller.register(conn, select.POLLRDHUP)
    return any(
        ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0)
    )


def receive(
    conn: socket.socket, names: frozenset[str], log: Callable[[str], None]
) -> Request | None:
    """The request on `conn`, which has one to read (poll said so), or None after refusing
    (the reason to `log`) or closing it. Never blocks, never raises."""
    fds: list[int] = []
    try:
        msg, anc, flags, _ = conn.recvmsg(
            MAX_REQUEST, socket.CMSG_SPACE(4 * MAX_FDS),
            socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC,
        )
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += [
                    int.from_bytes(data[i : i + 4], sys.byteorder)
                    for i in range(0, len(data) - 3, 4)
                ]
    except OSError:
        close_all(fds)
        conn.close()
        return None
    if not msg and not fds and peer_gone(conn):
        conn.close()  # hung up without a request (an empty datagram is refused below)
        return None
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        parsed: tuple[str, str, dict[str, str]] | str = "request or descriptors truncated"
    else:
        parsed = parse(msg, fds, names)
    if isinstance(parsed, str):
        refuse_now(conn, fds, f"malformed request: {parsed}", log)
        return None
    return Request(conn, *parsed, fds)


def refuse_now(
    conn: socket.socket, fds: list[int], why: str, log: Callable[[str], None]
) -> None:
    """Answer "R" without waiting, log why, close everything."""
    log(f"refused: {why}")
    try:
        conn.send(b"R", socket.MSG_DONTWAIT)
    except OSError:
        pass
    close_all(fds)
    close_conn(conn)
