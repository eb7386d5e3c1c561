"""Client half of the warm worker (on unless PYCNI_WORKER=0): hand this invocation to a worker.

A worker (plugins/worker/server.py) is a process of this same build that has already imported
everything the plugins need. A plugin process started by the runtime pays only for this module:
it connects to a worker's socket in the worker directory (PYCNI_WORKER_DIR, default /run/pycni,
used only through a descriptor: plugins/worker/directory.py), checks the server, and passes its
stdin, stderr and a pidfd of itself (SCM_RIGHTS) plus its name, build id and environment; the
worker runs the request in a thread that enters this process's namespaces, working directory and
umask, and sends back the exit status and stdout, which this process prints and exits with.

Which worker. The resident worker listens on `<dir>/pycni.sock` (systemd's socket unit, or one a
call started): clients try it first. Burst workers (`w-<hash>-<i>.sock`, i = 1 .. PYCNI_WORKER_PROCS
- 1, default CPUs, at most 4; leave after PYCNI_WORKER_IDLE seconds idle) take calls only when the
resident is busy: a client holds `<socket>.busy` locked while a worker serves it, takes the first
worker whose `.busy` is free, and a call that finds every live worker busy queues on one of them
(picked by pid) and starts the next burst worker. A client whose environment the resident refuses (another PATH,
locale, ...) uses workers of its own environment, `w-<hash>-<i>.sock` from i = 0, the same way.

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
(os only); fcntl only to start a worker. json, socket, enum, hashlib would cost more than the
whole client does.
"""

from __future__ import annotations

import os
import sys

MAGIC = b"PYCNI-W1"
DEFAULT_DIR = "/run/pycni"
RESIDENT_SOCKET = "pycni.sock"
# argv[0] of a worker, so `ps` says what the process is (its executable is still the plugin's)
WORKER_ARGV0 = "pycni-worker"
MAX_REPLY = 1 << 20
# A whole reply (stdout) past this is not a plugin's result: treated as a worker that died.
MAX_REPLY_TOTAL = 64 << 20
# Live workers one directory may hold, all builds and environments together. A runtime whose
# environment changed on every call would otherwise start a new set of workers per call, each
# holding ≈40 MiB until its idle timeout.
MAX_LIVE_WORKERS = 16
# Niceness a worker started by a call begins with: its start-up (imports, ≈150 ms CPU) must not
# slow down the call that started it. plugins/multicall.py sets it back to 0 once it listens.
SPAWN_NICE = 10
# getsockopt option of Linux >= 6.5 (Python 3.11 lacks the constant): a pidfd of the peer.
SO_PEERPIDFD = 77
# The variable naming, in an executed delegate, the descriptor of its caller's attachment lock
# (plugins/worker/attachment.py).
ATTACHMENT_FD_VAR = "PYCNI_ATTACHMENT_FD"

# What a worker and its client must agree on besides the build (contract 5): the variables the
# plugins and the tools they start (iptables, nft, conntrack, ip) read from the process
# environment. A worker runs each call with the call's own environment (cni.skel.run gets it, and
# executed delegates get it), but the tools run with the worker's: their lookup (PATH), loader,
# locale, time zone, temporary directory and xtables settings. Everything else (HOME, a runtime's
# own variables, PYCNI_* knobs, CNI_* per call) may differ, so a resident worker started by
# systemd serves a runtime's calls.
_MATCHED = frozenset(
    ("PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "LANG", "LANGUAGE", "TZ", "TMPDIR",
     "XTABLES_LIBDIR", "XTABLES_LOCKFILE", "IPTABLES_LIB_DIR", "IP6TABLES_LIB_DIR")
)
_MATCHED_PREFIX = ("LC_",)


def stable_env(env) -> list[tuple[str, str]]:
    """The variables of `env` a worker must share with its client (see _MATCHED), sorted."""
    return sorted((k, v) for k, v in env.items() if k in _MATCHED or k.startswith(_MATCHED_PREFIX))


def build_id(st: os.stat_result) -> str:
    """The build id of an executable from its stat: device, inode, size and mtime. A worker
    serves only clients started from the very file it was started from."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def worker_count(env) -> int:
    """How many workers may share the calls (PYCNI_WORKER_PROCS, default: CPUs, at most 4): the
    plugins' Python work is bound to one core per worker, and a burst of pods wants them all."""
    try:
        n = int(env.get("PYCNI_WORKER_PROCS", "") or 0)
    except ValueError:
        n = 0
    if n <= 0:
        n = min(os.cpu_count() or 1, 4)
    return min(n, 64)


def worker_dir(env) -> str:
    """The worker directory: PYCNI_WORKER_DIR, default /run/pycni (refused unless absolute)."""
    return env.get("PYCNI_WORKER_DIR") or DEFAULT_DIR


def socket_name(build_id: str, env, index: int) -> str:
    """The socket of worker `index` for this build, user and environment (see stable_env)."""
    text = "\0".join([build_id, str(os.geteuid())] + [f"{k}={v}" for k, v in stable_env(env)])
    return f"w-{_fnv1a64(text.encode('utf-8', 'surrogateescape')):016x}-{index}.sock"


def encode_request(name: str, build_id: str, env) -> bytes:
    """MAGIC, name, build id, then every KEY=VALUE of `env`, NUL-separated."""
    fields = [MAGIC, name.encode(), build_id.encode()]
    fields += [f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in env.items()]
    return b"\0".join(fields)


def presented_lock(env) -> int | None:
    """The descriptor PYCNI_ATTACHMENT_FD names when it is open in this process and above 2,
    else None. What it refers to is checked by whoever acquires the lock, not trusted here."""
    value = env.get(ATTACHMENT_FD_VAR, "")
    if not value.isdigit() or len(value) > 7 or int(value) <= 2:
        return None
    try:
        os.fstat(int(value))
    except OSError:
        return None
    return int(value)


def _fds_usable() -> bool:
    try:
        os.fstat(0)
        os.fstat(2)
    except OSError:
        return False
    return True


def call(name: str, self_path: str, build_id: str, env) -> int | None:
    """Run this invocation in a worker: prints the plugin's stdout and returns its exit status.

    Returns None when the caller must run the invocation itself (see the module docstring);
    nothing has been printed then, and stdin is untouched. With PYCNI_WORKER_DEBUG=1 one line
    on stderr says which way the call went and why.
    """
    rc, why = _call(name, self_path, build_id, env)
    if env.get("PYCNI_WORKER_DEBUG") == "1":
        os.write(2, f"pycni worker: {'served' if rc is not None else 'in-process: ' + why}\n".encode())
    return rc


def _call(name: str, self_path: str, build_id: str, env) -> tuple[int | None, str]:
    if not _fds_usable():
        return None, "stdin or stderr closed"
    from plugins.worker import directory

    dirfd = directory.open_worker_dir(worker_dir(env), create=True)
    if dirfd is None:
        return None, "no usable worker directory"
    busy: list[int] = []
    try:
        names = [RESIDENT_SOCKET] + [socket_name(build_id, env, i) for i in range(1, worker_count(env))]
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


def _serve_from(names, dirfd, busy, name, self_path, build_id, env) -> tuple[int | None, str]:
    """The call through the first worker of `names` that is up and not busy; a missing worker
    is started (the first: this call runs in-process; a later one, when all before it are busy:
    the call queues on one of the busy ones, picked by pid)."""
    from plugins.worker import directory

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
        if live_workers(dirfd) >= MAX_LIVE_WORKERS:
            if index == 0:
                return None, f"no worker (already {MAX_LIVE_WORKERS} in the directory; none started)"
        else:
            started = spawn_worker(dirfd, sock_name, self_path, env)
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
    from plugins.worker import directory

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


def _connect(path: str):
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _exchange(sock, sock_name: str, name: str, build_id: str, env) -> tuple[int | None, str]:
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
            import _socket

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


def _read_at(dirfd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def server_refusal(sock, resident: bool) -> str | None:
    """Why the server at the other end of `sock` must not get this call (contract 3), or None:
    its uid must be 0 and this process's euid, its executable the file this process runs, its
    effective capabilities at least this process's, and the process the checks read (pinned by a
    pidfd) still the live peer afterwards. On the resident socket, init (pid 1) passes as the
    owner of a socket-activated listener."""
    import _socket

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
            caps = _cap_eff(_read_at(proc, "status"))
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


def live_workers(dirfd: int) -> int:
    """How many workers serve a socket in the directory `dirfd`: each holds its socket's `.lock`
    file locked while it accepts calls (a killed worker's socket file may stay, its lock does not)."""
    import fcntl

    from plugins.worker import directory

    try:
        names = [n for n in os.listdir(dirfd) if n.endswith(".sock.lock")]
    except OSError:
        return 0
    live = 0
    for name in names:
        try:
            fd = directory.open_in(dirfd, name, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            live += 1  # held exclusively by its worker
        finally:
            os.close(fd)
    return live


def spawn_worker(dirfd: int, sock_name: str, self_path: str, env) -> bool:
    """Start the worker of `sock_name` in the background, unless one holds the socket's lock
    already; True when one was started. Never raises, never waits for it.

    The worker gets nothing of this process but its environment (CNI_* and the attachment lock
    variable removed): a session of its own, /dev/null as stdin, stdout and stderr, no other
    descriptor (every inheritable one above 2 is closed in it); plugins/multicall.py then moves it
    to /, resets its OOM score to 0 and starts it at niceness SPAWN_NICE (PYCNI_WORKER_SPAWNED).
    The resident socket's worker is started resident (PYCNI_WORKER_RESIDENT=1: no idle exit)
    unless the caller's environment has PYCNI_WORKER_RESIDENT=0 (the opt-out)."""
    try:
        import fcntl

        from plugins.worker import directory

        lock = directory.open_in(dirfd, sock_name + ".lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a worker is running or starting
        finally:
            os.close(lock)  # the worker takes the lock itself
        child_env = {
            k: v for k, v in env.items()
            if not k.startswith("CNI_") and k not in (ATTACHMENT_FD_VAR, "PYCNI_WORKER_RESIDENT")
        }
        child_env["PYCNI_WORKER_SERVE"] = f"{worker_dir(env).rstrip('/')}/{sock_name}"
        child_env["PYCNI_WORKER_SPAWNED"] = "1"
        if sock_name == RESIDENT_SOCKET and env.get("PYCNI_WORKER_RESIDENT", "1") != "0":
            child_env["PYCNI_WORKER_RESIDENT"] = "1"
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
            actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
            os.posix_spawn(self_path, [WORKER_ARGV0], child_env, file_actions=actions, setsid=True)
        finally:
            os.close(null)
    except OSError:
        return False
    return True


def _inheritable_fds() -> list[int]:
    """This process's descriptors above 2 that an exec would keep (no FD_CLOEXEC)."""
    fds = []
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd <= 2:
            continue
        try:
            if os.get_inheritable(fd):
                fds.append(fd)
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return fds
