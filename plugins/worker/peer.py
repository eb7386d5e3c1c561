"""The caller of a worker connection, pinned: no check and no namespace join by a pid number.

SO_PEERCRED gives a pid number, which names another process once the caller has exited and
its number was handed out again. So the caller is pinned by a pidfd: the socket's own
(SO_PEERPIDFD, the process that connected) or, on kernels without it, the pidfd the client sent
for itself, accepted only when its fdinfo "Pid:" is SO_PEERCRED's pid (see
docs/worker-threat-model.md for what that fallback leaves open). Then /proc/<pid> is opened as
a directory descriptor and the pidfd is checked still alive: a live pidfd means the number
still named the caller when the directory was opened, and a /proc/<pid> descriptor keeps
meaning that process (reads through it fail once it is gone). Everything the decision needs is
read through that descriptor, and the namespaces, root and working directory are opened from
it before the decision, so joining them later joins the caller's, whatever happened since.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct

# the client's own: SO_PEERPIDFD (Linux >= 6.5; Python 3.11 has no constant) and reading a
# file relative to a /proc/<pid> descriptor
from plugins.worker.protocol import SO_PEERPIDFD, read_at

SO_PEERSEC = 31
# Privilege-related lines of /proc/<pid>/status that must equal the worker's: a caller with
# fewer capabilities, or under a seccomp filter or no_new_privs, must not borrow the worker's.
PRIVILEGE_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
NAMESPACES = ("mnt", "net", "pid", "user")


class Refused(Exception):
    """The caller cannot be pinned or inspected; the text is for the worker's log only."""


class Gone(Refused):
    """The caller exited before its /proc entry could be read (a client killed by its runtime):
    refused like any other, but nothing an operator needs to read in the log. (A pid number that
    names a live process other than the caller is a plain Refused: logged.)"""


def _status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def own_status() -> dict[str, str]:
    """This process's /proc/self/status fields."""
    with open("/proc/self/status") as f:
        return _status(f.read())


def privileges(status: dict[str, str]) -> tuple[str, ...]:
    """The privilege fields of a status, for comparison."""
    return tuple(status.get(k, "") for k in PRIVILEGE_FIELDS)


def _label(raw: bytes) -> bytes:
    return raw.rstrip(b"\0\n")


def own_label() -> bytes:
    """This process's LSM label (b"" without an LSM)."""
    try:
        with open("/proc/self/attr/current", "rb") as f:
            return _label(f.read())
    except OSError:
        return b""


def fd_pid(fd: int) -> int | None:
    """The pid a pidfd refers to (its fdinfo "Pid:" line: -1 once the process has exited),
    None when `fd` is not a pidfd."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def alive(pidfd: int) -> bool:
    """True while the process of `pidfd` has not exited (a pidfd polls readable once it has)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    try:
        return not poller.poll(0)
    except OSError:
        return False


class Caller:
    """A pinned caller: its pidfd, /proc directory, status, label and the descriptors of its
    namespaces, root and working directory, all taken while the pidfd said it was alive."""

    def __init__(self) -> None:
        self.pid = 0
        self.uid = -1
        self.pidfd = -1
        self.proc = -1
        self.status: dict[str, str] = {}
        self.label = b""
        self.ns: dict[str, int] = {}
        self.root = -1
        self.cwd = -1

    def alive(self) -> bool:
        """True while the pinned caller has not exited."""
        return self.pidfd >= 0 and alive(self.pidfd)

    def ns_id(self, name: str) -> tuple[int, int]:
        """(device, inode) of the caller's namespace `name`."""
        st = os.fstat(self.ns[name])
        return (st.st_dev, st.st_ino)

    def close(self) -> None:
        """Close every descriptor held; idempotent."""
        fds = [self.pidfd, self.proc, self.root, self.cwd, *self.ns.values()]
        self.pidfd = self.proc = self.root = self.cwd = -1
        self.ns = {}
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def _peer_pidfd(conn: socket.socket) -> int | None:
    """SO_PEERPIDFD of `conn`, or None when the kernel has no such option."""
    try:
        return conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as e:
        if e.errno in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise Refused(f"SO_PEERPIDFD: {e.strerror}") from None


def _peer_label(conn: socket.socket, proc: int) -> bytes:
    try:
        return _label(conn.getsockopt(socket.SOL_SOCKET, SO_PEERSEC, 4096))
    except OSError:
        pass  # no LSM with socket labels: the process's own attribute, if any
    try:
        return _label(read_at(proc, "attr/current"))
    except OSError:
        return b""


def pin(conn: socket.socket, sent_pidfd: int | None) -> Caller:
    """Pin the process at the other end of `conn` (see the module docstring). `sent_pidfd` is
    the pidfd the client sent for itself, used only without SO_PEERPIDFD; it is not closed.
    Raises Refused when the caller cannot be pinned or has gone."""
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if pid <= 0:
        raise Refused("no peer pid")
    caller = Caller()
    caller.pid, caller.uid = pid, uid
    try:
        pidfd = _peer_pidfd(conn)
        if pidfd is None:
            if sent_pidfd is None:
                raise Refused("no SO_PEERPIDFD and no pidfd sent")
            if fd_pid(sent_pidfd) != pid:
                raise Refused("the pidfd sent is not the connected process")
            pidfd = os.dup(sent_pidfd)
        caller.pidfd = pidfd
        try:
            caller.proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise Gone("caller gone") from None
        if not caller.alive():
            raise Refused("caller gone")  # the number may name another process by now
        proc = caller.proc
        caller.status = _status(read_at(proc, "status").decode("utf-8", "replace"))
        for name in NAMESPACES:
            caller.ns[name] = os.open(f"ns/{name}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
        caller.root = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
        # O_PATH: nothing of the directory's filesystem runs (a hung FUSE mount cannot stall us)
        caller.cwd = os.open("cwd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
        caller.label = _peer_label(conn, proc)
        if not caller.alive():
            raise Refused("caller gone")
        return caller
    except Refused:
        caller.close()
        raise
    except OSError as e:
        gone = caller.pidfd >= 0 and not caller.alive()
        caller.close()
        if gone:
            raise Gone("caller gone") from None
        raise Refused(f"caller not inspectable ({e.strerror})") from None
