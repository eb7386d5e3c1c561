"""Client half of the warm worker (on unless PYCNI_WORKER=0): hand this invocation to a worker.

A worker (plugins/worker/server.py) is a short-lived process of this same build that has already imported
everything the plugins need; up to PYCNI_WORKER_PROCS of them (default: CPUs, at most 4) share
the calls, each client picking one by its pid. A plugin process started by the runtime pays only for this module:
it connects to the worker's socket and passes its stdin and stderr (SCM_RIGHTS) plus its name,
build id and environment; the worker runs the request in a thread that enters this process's
network namespace, working directory and umask (read from /proc/<pid>, checked against the
socket's peer credentials), and sends back the exit status and stdout, which this process
prints and exits with. A plugin run this way is indistinguishable from one run in-process.

Whenever that cannot be done exactly, `call()` returns None and the caller does the work itself:
no worker socket (a worker is then started in the background for the calls that follow), a
worker of another build, environment, user or mount/pid namespace (it answers "R"), a stdin or
stderr that is closed, or a worker that vanishes before it accepted the request. A worker that
dies after accepting is reported as a CNI error (code 999), since the request may have been
half done; the runtime's retry or DEL cleans up as after any failed plugin.

Imports: os, sys, errno and the C module _socket only (json, socket, enum, hashlib would cost
more than the whole client does).
"""

from __future__ import annotations

import os
import sys

MAGIC = b"PYCNI-W1"
DEFAULT_DIR = "/run/pycni"
# argv[0] of a worker, so `ps` says what the process is (its executable is still the plugin's)
WORKER_ARGV0 = "pycni-worker"
MAX_REPLY = 1 << 20
# Live workers one directory may hold, all builds and environments together. A runtime whose
# environment changed on every call (a variable outside CNI_* that differs per call) would
# otherwise start a new set of workers per call, each holding ≈40 MiB until its idle timeout.
MAX_LIVE_WORKERS = 16
# Environment variables that differ from call to call; everything else must match the worker's.
_PER_CALL_PREFIX = "CNI_"
_INTERNAL = ("PYCNI_WORKER_SERVE",)


def stable_env(env) -> list[tuple[str, str]]:
    """The environment minus the per-call CNI_* variables, sorted: what a worker must share."""
    return sorted(
        (k, v) for k, v in env.items() if not k.startswith(_PER_CALL_PREFIX) and k not in _INTERNAL
    )


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
    """How many workers share the calls (PYCNI_WORKER_PROCS, default: CPUs, at most 4): the
    plugins' Python work is bound to one core per worker, and a burst of pods wants them all."""
    try:
        n = int(env.get("PYCNI_WORKER_PROCS", "") or 0)
    except ValueError:
        n = 0
    if n <= 0:
        n = min(os.cpu_count() or 1, 4)
    return min(n, 64)


def socket_path(build_id: str, env, index: int | None = None) -> str | None:
    """The socket of worker `index` (default: this process's pick, pid modulo the worker
    count) for this build, user and environment; None when the directory is unusable
    (missing and not creatable, not ours, writable by others, path too long)."""
    directory = env.get("PYCNI_WORKER_DIR") or DEFAULT_DIR
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        try:
            os.mkdir(directory, 0o700)
            st = os.stat(directory)
        except OSError:
            return None
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return None
    text = "\0".join([build_id, str(os.geteuid())] + [f"{k}={v}" for k, v in stable_env(env)])
    if index is None:
        index = os.getpid() % worker_count(env)
    path = f"{directory}/w-{_fnv1a64(text.encode('utf-8', 'surrogateescape')):016x}-{index}.sock"
    return path if len(path.encode()) < 108 else None


def encode_request(name: str, build_id: str, env) -> bytes:
    """MAGIC, name, build id, then every KEY=VALUE of `env`, NUL-separated."""
    fields = [MAGIC, name.encode(), build_id.encode()]
    fields += [f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in env.items()]
    return b"\0".join(fields)


def _fds_usable() -> bool:
    try:
        os.fstat(0)
        os.fstat(2)
    except OSError:
        return False
    return True


def call(name: str, self_path: str, build_id: str, env) -> int | None:
    """Run this invocation in the worker: prints the plugin's stdout and returns its exit status.

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
    path = socket_path(build_id, env)
    if path is None:
        return None, "no usable worker directory"
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(path)
        except OSError:
            if live_workers(os.path.dirname(path)) >= MAX_LIVE_WORKERS:
                return None, f"no worker (already {MAX_LIVE_WORKERS} in the directory; none started)"
            # Start every missing worker, not only this pick: a serial caller's pids can keep
            # one parity (a call through a worker also takes a thread id), and a burst then
            # finds only some of the workers up.
            started = False
            for index in range(worker_count(env)):
                other = path if index == os.getpid() % worker_count(env) else socket_path(build_id, env, index)
                if other is not None and (other == path or not os.path.exists(other)):
                    started = spawn_worker(other, self_path, env) or started
            return None, "no worker" + (" (starting one)" if started else "")
        fds = (0).to_bytes(4, sys.byteorder) + (2).to_bytes(4, sys.byteorder)
        try:
            sock.sendmsg(
                [encode_request(name, build_id, env)],
                [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)],
            )
            first = sock.recv(MAX_REPLY)
        except OSError as e:
            return None, f"worker unreachable ({e.strerror})"
        if first != b"A":
            # "R<why>": another build, environment, user or namespace, or stale; b"": gone
            return None, "refused: " + first[1:].decode(errors="replace") if first else "worker gone"
        out: list[bytes] = []
        while True:
            try:
                msg = sock.recv(MAX_REPLY)
            except OSError:
                msg = b""
            if msg[:1] == b"O":
                out.append(msg[1:])
                continue
            if msg[:1] == b"X" and len(msg) == 2:
                _write_all(b"".join(out))
                return msg[1], ""
            return _died(), ""
    finally:
        sock.close()


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


def live_workers(directory: str) -> int:
    """How many workers serve a socket in `directory`: each holds its socket's `.lock` file
    locked while it accepts calls (a killed worker's socket file may stay, its lock does not)."""
    import fcntl

    try:
        names = [n for n in os.listdir(directory) if n.endswith(".sock.lock")]
    except OSError:
        return 0
    live = 0
    for name in names:
        try:
            fd = os.open(f"{directory}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            live += 1  # held exclusively by its worker
        finally:
            os.close(fd)
    return live


def spawn_worker(path: str, self_path: str, env) -> bool:
    """Start a worker for `path` in the background (its own session, std fds on /dev/null),
    unless one holds the socket's lock already; True when one was started. Never raises."""
    try:
        import fcntl

        lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a worker is running or starting
        finally:
            os.close(lock)  # the worker takes the lock itself
        child_env = {k: v for k, v in env.items() if not k.startswith(_PER_CALL_PREFIX)}
        child_env["PYCNI_WORKER_SERVE"] = path
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
            os.posix_spawn(self_path, [WORKER_ARGV0], child_env, file_actions=actions, setsid=True)
        finally:
            os.close(null)
    except OSError:
        return False
    return True
