"""Client half of the warm worker (on unless PYCNI_WORKER=0): hand this invocation to a worker.

A worker (plugins/worker/server.py) is a process of this same build that has already imported
everything the plugins need. A plugin process started by the runtime pays only for this module
and the two small ones it imports (plugins/worker/protocol.py, plugins/worker/directory.py): it
connects to a worker's socket in the worker directory (PYCNI_WORKER_DIR, default /run/pycni,
used only through a descriptor), checks the server, and passes its stdin, stderr and a pidfd of
itself (SCM_RIGHTS) plus its name, build id and environment; the worker runs the request in a
thread that enters this process's namespaces, working directory and umask, and sends back the
exit status and stdout, which this process prints and exits with.

Which worker. The resident worker listens on `<dir>/pycni.sock` (systemd's socket unit, or one a
call started): clients try it first. Burst workers (`w-<hash>-<i>.sock`, i = 1 .. PYCNI_WORKER_PROCS
- 1, default CPUs, at most 4; leave after PYCNI_WORKER_IDLE seconds idle) take calls only when the
resident is busy: a client holds `<socket>.busy` locked while a worker serves it, takes the first
worker whose `.busy` is free, and a call that finds every live worker busy queues on one of them
(picked by pid) and starts the next burst worker. A client whose environment the resident
refuses (another PATH, locale, ...) uses workers of its own environment, `w-<hash>-<i>.sock`
from i = 0, the same way.

The server is checked before anything is sent (it could be a process that replaced the socket):
its peer credentials must be uid 0 and this process's euid, its executable the same file as this
process's (pinned through a pidfd of the peer, which must still be alive after the checks) and its
effective capabilities at least this process's. One exception: the resident socket may belong to
init (pid 1, systemd socket activation), which is trusted as root's own configuration.

Whenever a call cannot be served exactly, `call()` returns None and the caller does the work
itself: no worker yet (one is then started in the background, at most one per call), a server
that fails the checks, a refusal ("R": another build, environment or privileges), a stdin or
stderr that is closed, or a worker that vanishes before it accepted the request. A worker that
dies after accepting is reported as a CNI error (code 999), since the request may have been
half done; the runtime's retry or DEL cleans up as after any failed plugin.

Imports on a served call: os, sys and the C module _socket only, plus plugins.worker.directory
and plugins.worker.protocol (os only); fcntl only to start a worker (plugins/worker/spawn.py).
json, socket, enum, hashlib, typing would cost more than the whole client does.
"""

from __future__ import annotations

import _socket  # the C module: `socket` would import enum, selectors and more on every call
import os
import sys

from plugins.worker import directory
from plugins.worker.protocol import (
    RESIDENT_SOCKET,
    SO_PEERPIDFD,
    encode_request,
    presented_lock,
    read_at,
    socket_name,
    worker_count,
    worker_dir,
)

TYPE_CHECKING = False  # as in protocol.py: no typing import on the client path
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_REPLY = 1 << 20
# A whole reply (stdout) past this is not a plugin's result: treated as a worker that died.
MAX_REPLY_TOTAL = 64 << 20


def _fds_usable() -> bool:
    try:
        os.fstat(0)
        os.fstat(2)
    except OSError:
        return False
    return True


def call(name: str, self_path: str, build_id: str, env: Mapping[str, str]) -> int | None:
    """Run this invocation in a worker: prints the plugin's stdout and returns its exit status.

    Returns None when the caller must run the invocation itself (see the module docstring);
    nothing has been printed then, and stdin is untouched. With PYCNI_WORKER_DEBUG=1 one line
    on stderr says which way the call went and why.
    """
    rc, why = _call(name, self_path, build_id, env)
    if env.get("PYCNI_WORKER_DEBUG") == "1":
        way = "served" if rc is not None else "in-process: " + why
        os.write(2, f"pycni worker: {way}\n".encode())
    return rc


def _call(
    name: str, self_path: str, build_id: str, env: Mapping[str, str]
) -> tuple[int | None, str]:
    if not _fds_usable():
        return None, "stdin or stderr closed"
    dirfd = directory.open_worker_dir(worker_dir(env), create=True)
    if dirfd is None:
        return None, "no usable worker directory"
    busy: list[int] = []
    try:
        burst = [socket_name(build_id, env, i) for i in range(1, worker_count(env))]
        names = [RESIDENT_SOCKET, *burst]
        rc, why = _serve_from(names, dirfd, busy, name, self_path, build_id, env)
        if rc is not None or not why.startswith(("refused", "server not trusted")):
            return rc, why
        # The resident cannot serve this caller (another environment, privileges or build, or
        # not ours at all): workers of this caller's own build and environment instead.
        for fd in busy:
            os.close(fd)
        busy.clear()
        names = [socket_name(build_id, env, i) for i in range(worker_count(env))]
        rc, why2 = _serve_from(names, dirfd, busy, name, self_path, build_id, env)
        return rc, f"{why}; {why2}" if rc is None else ""
    finally:
        for fd in busy:
            os.close(fd)
        os.close(dirfd)


def _serve_from(
    names: list[str], dirfd: int, busy: list[int], name: str, self_path: str, build_id: str,
    env: Mapping[str, str],
) -> tuple[int | None, str]:
    """The call through the first worker of `names` that is up and not busy; a missing worker
    is started (the first: this call runs in-process; a later one, when all before it are busy:
    the call queues on one of the busy ones, picked by pid)."""
    serving: list[str] = []
    for index, sock_name in enumerate(names):
        fd = _take_busy(dirfd, sock_name)
        if fd is None:
            serving.append(sock_name)
            continue  # serving another call
        busy.append(fd)
        sock = _connect(directory.proc_path(dirfd, sock_name))
        if sock is not None:
            return _exchange(sock, sock_name, name, build_id, env)
        # Only a call that finds no worker pays for starting one (fcntl, posix_spawn).
        from plugins.worker import spawn

        if spawn.live_workers(dirfd) >= spawn.MAX_LIVE_WORKERS:
            if index == 0:
                return None, (f"no worker (already {spawn.MAX_LIVE_WORKERS} in the directory; "
                              "none started)")
        else:
            started = spawn.spawn_worker(dirfd, sock_name, self_path, env)
            if index == 0:
                return None, "no worker" + (" (starting one)" if started else "")
        if index == 0:
            return None, "no worker"
        break
    # Every live worker is busy (the next one may just have been started): queue on one of
    # them, picked by pid, so the calls of a burst spread over the workers instead of all
    # waiting for the first while the others idle.
    # A worker found busy may still be starting (its starter holds its `.busy`): then the first.
    target = serving[os.getpid() % len(serving)] if serving else names[0]
    sock = _connect(directory.proc_path(dirfd, target))
    if sock is None and target != names[0]:
        target = names[0]
        sock = _connect(directory.proc_path(dirfd, target))
    if sock is None:
        return None, "no worker"
    return _exchange(sock, target, name, build_id, env)


def _take_busy(dirfd: int, sock_name: str) -> int | None:
    """`<socket>.busy` locked for this call (a descriptor), or None when another call holds it
    or it cannot be opened. A POSIX record lock (os.lockf: only clients, one process each, take
    these), which spares the client the fcntl extension module."""
    try:
        fd = directory.open_in(dirfd, sock_name + ".busy", os.O_RDWR | os.O_CREAT)
    except OSError:
        return None
    try:
        os.lockf(fd, os.F_TLOCK, 0)
    except OSError:
        os.close(fd)
        return None
    return fd


def _connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _exchange(
    sock: _socket.socket, sock_name: str, name: str, build_id: str, env: Mapping[str, str]
) -> tuple[int | None, str]:
    """Check the server, send the request, relay the answer. Closes `sock`."""
    try:
        why = server_refusal(sock, sock_name == RESIDENT_SOCKET)
        if why is not None:
            return None, f"server not trusted ({why}); nothing sent"
        pidfd = os.pidfd_open(os.getpid())
        try:
            fds = [0, 2, pidfd]
            inherited = presented_lock(env)
            if inherited is not None:
                fds.append(inherited)
            try:
                sock.sendmsg(
                    [encode_request(name, build_id, env)],
                    [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                      b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))],
                )
                first = sock.recv(MAX_REPLY)
            except OSError as e:
                return None, f"worker unreachable ({e.strerror})"
        finally:
            os.close(pidfd)
        if first != b"A":
            return None, "refused" if first[:1] == b"R" else "worker gone"
        out: list[bytes] = []
        total = 0
        while True:
            try:
                msg = sock.recv(MAX_REPLY)
            except OSError:
                msg = b""
            if msg[:1] == b"O" and total + len(msg) <= MAX_REPLY_TOTAL:
                out.append(msg[1:])
                total += len(msg)
                continue
            if msg[:1] == b"X" and len(msg) == 2:
                _write_all(b"".join(out))
                return msg[1], ""
            return _died(), ""
    finally:
        sock.close()


def _cap_eff(status: bytes) -> int | None:
    for line in status.splitlines():
        if line.startswith(b"CapEff:"):
            return int(line.split()[1], 16)
    return None


def server_refusal(sock: _socket.socket, resident: bool) -> str | None:
    """Why the server at the other end of `sock` must not get this call (contract 3), or None:
    its uid must be 0 and this process's euid, its executable the file this process runs, its
    effective capabilities at least this process's, and the process the checks read (pinned by a
    pidfd) still the live peer afterwards. On the resident socket, init (pid 1) passes as the
    owner of a socket-activated listener."""
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    pid = int.from_bytes(cred[0:4], sys.byteorder)
    uid = int.from_bytes(cred[4:8], sys.byteorder)
    if uid != 0 or uid != os.geteuid():
        return "not root"
    try:
        pidfd = int.from_bytes(sock.getsockopt(_socket.SOL_SOCKET, SO_PEERPIDFD, 4), sys.byteorder)
    except OSError:
        try:  # a kernel before 6.5: pin the pid now, check below that it is still that process
            pidfd = os.pidfd_open(pid)
        except OSError:
            return "gone"
    try:
        pid = _pidfd_pid(pidfd)
        if pid <= 0:
            return "gone"
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            caps = _cap_eff(read_at(proc, "status"))
            own = _cap_eff(_read_at_path("/proc/self/status"))
            if caps is None or own is None or own & ~caps:
                return "fewer capabilities"
            if not (resident and pid == 1):
                exe, mine = os.stat("exe", dir_fd=proc), os.stat("/proc/self/exe")
                if (exe.st_dev, exe.st_ino) != (mine.st_dev, mine.st_ino):
                    return "another executable"
        except OSError:
            return "not inspectable"
        finally:
            os.close(proc)
        if _pidfd_pid(pidfd) != pid:
            return "gone"  # exited while it was read: what was read may be another process
    finally:
        os.close(pidfd)
    return None


def _pidfd_pid(pidfd: int) -> int:
    """The pid (in this pid namespace) of the process `pidfd` refers to; -1 when it exited."""
    try:
        text = _read_at_path(f"/proc/self/fdinfo/{pidfd}")
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith(b"Pid:"):
            return int(line.split()[1])
    return -1


def _read_at_path(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def _died() -> int:
    text = (
        '{\n    "code": 999,\n    "msg": "pycni worker ended before answering; '
        'the request may be partly done"\n}'
    )
    os.write(1, text.encode())
    return 1


