"""Warm worker: one pre-imported process runs the calls of many (docs/worker-threat-model.md).

Started in the background by a client that finds no worker (plugins/worker/client.py), as this
same executable with PYCNI_WORKER_SERVE=<socket path> and the client's environment minus CNI_*,
or by systemd socket activation (LISTEN_FDS=1: the listener is descriptor 3). The worker
directory is used only through a descriptor (plugins/worker/directory.py): the socket is bound
through it, `<socket>.lock` (one worker per socket, holding its pid) and the attachment locks
are opened in it without following symlinks. The worker imports every plugin module and builds
their models, then listens on a SOCK_SEQPACKET unix socket (mode 0600).

The main thread only accepts and receives: a connection waits at most RECV_SECONDS for its
request (at most PENDING_MAX such connections, the oldest dropped first), and a request waits at
most QUEUE_SECONDS in a queue of QUEUE_MAX for one of MAX_CALLS call threads; beyond that it is
refused. Parked connections cost no thread and never keep the worker from idling out. A call
thread:

* pins the caller (plugins/worker/peer.py: SO_PEERPIDFD, else the pidfd the client sent) and
  refuses it ("R", the reason to the worker log only) unless its uid, build id, environment
  (CNI_* aside), pid and user namespaces, capability sets, no_new_privs, seccomp mode and LSM
  label equal the worker's, so no caller gains a privilege it does not have;
* answers "A", takes the attachment lock (plugins/worker/attachment.py; a bounded wait, or the
  lock the caller's ancestry holds when it presents it as the request's 4th descriptor) and
  drops the call if the caller exited or hung up meanwhile;
* unshares its fs_struct, enters the caller's mount namespace, root, working directory, umask
  and network namespace from descriptors opened before the decision;
* runs `cni.skel.run` with the caller's environment, its stdin (at most MAX_STDIN bytes within
  STDIN_SECONDS) and stderr, and sends "O<stdout>" + "X<status>" (each send within
  SEND_SECONDS).

The worker exits after PYCNI_WORKER_IDLE seconds (default 30) without a call, after
PYCNI_WORKER_MAX calls (default 10000) or PYCNI_WORKER_MAX_AGE seconds (default 600), or once it
is stale (its executable replaced, or, from source, a loaded module changed). A resident worker
(PYCNI_WORKER_RESIDENT=1, or socket-activated) has no idle or age limit and checks staleness
every STALE_SECONDS. Exiting unlinks the socket (not systemd's) and releases the lock first;
requests not yet accepted see their connection close and run in-process; calls in progress
finish within DRAIN_SECONDS.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict, deque

from plugins.worker import attachment, directory, peer
from plugins.worker.client import MAGIC, build_id, stable_env

CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

# Bounds (docs/worker-threat-model.md lists them all)
MAX_REQUEST = 256 * 1024  # bytes of one request datagram
MAX_FDS = 4  # stdin, stderr, the client's pidfd, an inherited attachment lock
RECV_SECONDS = 2.0  # from accept to a complete request
PENDING_MAX = 64  # accepted connections without a request yet
MAX_CALLS = 16  # call threads at once
QUEUE_MAX = 64  # received requests waiting for a call thread
QUEUE_SECONDS = 30.0  # how long one may wait there
MAX_STDIN = 4 * 1024 * 1024  # bytes of a call's stdin
STDIN_SECONDS = 30.0  # to read it (VERSION: VERSION_STDIN_SECONDS, as in-process)
VERSION_STDIN_SECONDS = 0.2
SEND_SECONDS = 5.0  # per reply datagram
LOCK_SECONDS = attachment.MAX_WAIT  # for another call of the attachment (PYCNI_WORKER_LOCK_WAIT)
DRAIN_SECONDS = 120.0  # calls in progress at exit
STALE_SECONDS = 5.0  # a resident idle worker checks its executable this often
LOG_PER_MINUTE = 60  # refusal lines in the worker log
ACTIVATED_NAME = "pycni.sock"  # the socket systemd passes (contract with the units)


def _number(name: str, default: float) -> float:
    """A positive number from the environment, else `default`."""
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


class _Routed:
    """A stand-in for sys.stderr that routes to the current thread's stream (a call's stdin
    reaches skel.run as bytes read from its own descriptor)."""

    def __init__(self, default) -> None:
        self._default = default
        self._local = threading.local()

    def route(self, stream) -> None:
        """Use `stream` for the calling thread (None: back to the process's own)."""
        self._local.stream = stream

    def _target(self):
        return getattr(self._local, "stream", None) or self._default

    def __getattr__(self, name: str):
        return getattr(self._target(), name)

    def write(self, text):
        """Write to the calling thread's stream."""
        return self._target().write(text)

    def flush(self) -> None:
        """Flush the calling thread's stream."""
        target = self._target()
        if target is not None:
            target.flush()


def _unshare_fs() -> None:
    native = getattr(os, "unshare", None)
    if native is not None:  # Python >= 3.12
        native(CLONE_FS)
        return
    import ctypes

    from cni.netns import _get_libc

    libc = _get_libc()
    if libc.unshare(ctypes.c_int(CLONE_FS)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def build_id_of(path: str) -> str:
    """The build id a client sends: the identity (device, inode, size, mtime) of its executable."""
    return build_id(os.stat(path))


def _close_all(fds) -> None:
    for fd in fds:
        if fd is not None and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


class Request:
    """One received request: its connection, fields and descriptors (owned until `close`)."""

    def __init__(self, conn, name: str, build_id: str, env: dict[str, str], fds: list[int]) -> None:
        self.conn = conn
        self.name = name
        self.build_id = build_id
        self.env = env
        self.fds = fds
        self.deadline = time.monotonic() + QUEUE_SECONDS

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
        _close_all(fds)
        _close(self.conn)


def _close(conn) -> None:
    """Close a connection after discarding what the client sent beyond its request: closing
    with unread data would reset the connection before the client read our replies."""
    import socket as _socket

    try:
        conn.setblocking(False)  # with a timeout set, Python would wait for data to come
    except OSError:
        pass
    for _ in range(8):
        try:
            if not conn.recv(1, _socket.MSG_DONTWAIT | _socket.MSG_TRUNC):
                break
        except OSError:
            break
    conn.close()


def parse(msg: bytes, fds: list[int]) -> tuple[str, str, dict[str, str]] | str:
    """(name, build id, environment) of a request datagram, or why it is malformed."""
    from plugins import multicall

    parts = msg.split(b"\0")
    if len(parts) < 3 or parts[0] != MAGIC:
        return "bad magic"
    if not 2 <= len(fds) <= MAX_FDS:
        return f"{len(fds)} descriptors"
    try:
        name = parts[1].decode("ascii")
        bid = parts[2].decode("ascii")
    except UnicodeDecodeError:
        return "name or build id not ASCII"
    if name not in multicall.ENTRY_POINTS or name == "cnitool":
        return "unknown entry point"
    env: dict[str, str] = {}
    for item in parts[3:]:
        key, sep, value = item.decode("utf-8", "surrogateescape").partition("=")
        if not sep or not key or key in env:
            return "malformed environment"
        env[key] = value
    return name, bid, env


def _read_stdin(fd: int, limit: int, seconds: float, brief: bool) -> bytes:
    """Stdin of a call: at most `limit` bytes until end of file within `seconds`. A CNIError 5
    naming the limit otherwise; with `brief` (VERSION) b"" instead of an error."""
    import select

    from cni.errors import ERR_IO_FAILURE, CNIError

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    total = 0
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            if brief:
                return b""
            raise CNIError(ERR_IO_FAILURE, f"error reading from stdin: not at its end within "
                                           f"{seconds:g} s (the worker's limit)")
        try:
            if not poller.poll(int(left * 1000) + 1):
                continue
            chunk = os.read(fd, min(65536, limit + 1 - total))
        except BlockingIOError:
            time.sleep(0.01)  # a non-blocking description shared with the caller
            continue
        except OSError as e:
            if brief:
                return b""
            raise CNIError(ERR_IO_FAILURE, f"error reading from stdin: {e}") from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            if brief:
                return b""
            raise CNIError(ERR_IO_FAILURE, f"stdin is larger than {limit} bytes (the worker's limit)")
        chunks.append(chunk)


class Worker:
    """The server: accept loop, bounded call threads, idle/stale/limit shutdown."""

    def __init__(self, dirfd: int, sock_name: str, self_path: str, resident: bool = False) -> None:
        self.dirfd = dirfd
        self.sock_name = sock_name
        self.self_path = self_path
        self.resident = resident
        self.activated = False
        self.build_id = build_id_of(self_path)
        self.env = stable_env(os.environ)
        self.idle = _number("PYCNI_WORKER_IDLE", 30.0)
        self.max_requests = int(_number("PYCNI_WORKER_MAX", 10000))
        self.max_age = _number("PYCNI_WORKER_MAX_AGE", 600.0)
        self.lock_wait = _number("PYCNI_WORKER_LOCK_WAIT", LOCK_SECONDS)
        self.started = time.monotonic()
        self.stale = False
        self.active = 0
        self.served = 0
        self.last = time.monotonic()
        self.cond = threading.Condition()
        self._own_ns = {ns: self._ns_id(ns) for ns in ("pid", "user")}
        self._own_mnt = self._ns_id("mnt")
        self._own_status = peer.own_status()
        self._own_privileges = peer.privileges(self._own_status)
        self._own_label = peer.own_label()
        self._module_files: dict[str, int] = {}
        self._checked = time.monotonic()
        self._sock_id: tuple[int, int] | None = None
        self._log_budget = (time.monotonic(), 0)
        self._log_fd = _open_log()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.lock_fd: int | None = None
        self.stderr = _Routed(sys.stderr)

    @staticmethod
    def _ns_id(ns: str) -> tuple[int, int]:
        st = os.stat(f"/proc/self/ns/{ns}")
        return (st.st_dev, st.st_ino)

    # ------------------------------------------------------------------ start-up

    def prewarm(self) -> None:
        """Import every plugin module and what their calls import lazily; build the models."""
        import importlib
        import pkgutil

        import cni
        import ipam
        import plugins

        skip = {"cni.libcni.cnitool", "plugins.worker.server"}
        for pkg in (cni, plugins, ipam):
            for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                if info.name not in skip:
                    try:
                        importlib.import_module(info.name)
                    except Exception:  # noqa: BLE001 - a module we cannot import is simply not warm
                        pass
        from plugins.linux import netlink

        netlink.import_iproute()  # as the plugins import it: without unittest
        for mod in ("pyroute2.netlink.exceptions", "subprocess", "ipaddress", "fcntl", "ctypes"):
            try:
                importlib.import_module(mod)
            except ImportError:
                pass
        self._build_models()
        if not getattr(sys, "frozen", False):
            for mod in list(sys.modules.values()):
                f = getattr(mod, "__file__", None)
                if f:
                    try:
                        self._module_files[f] = os.stat(f).st_mtime_ns
                    except OSError:
                        pass

    @staticmethod
    def _build_models() -> None:
        try:
            from pydantic import BaseModel
        except ImportError:
            return
        todo = list(BaseModel.__subclasses__())
        while todo:
            cls = todo.pop()
            todo.extend(cls.__subclasses__())
            if cls.__module__.split(".")[0] in ("cni", "plugins", "ipam") and not getattr(
                cls, "__pydantic_complete__", True
            ):
                try:
                    cls.model_rebuild()
                except Exception:  # noqa: BLE001 - built on first use then, as without a worker
                    pass

    # ------------------------------------------------------------------ log

    def log(self, text: str) -> None:
        """One line to the worker log (PYCNI_WORKER_LOG when set, else the worker's own stderr:
        the journal under systemd); at most LOG_PER_MINUTE lines a minute."""
        start, count = self._log_budget
        now = time.monotonic()
        if now - start >= 60:
            start, count = now, 0
        self._log_budget = (start, count + 1)
        if count > LOG_PER_MINUTE:
            return
        if count == LOG_PER_MINUTE:
            text = "further lines this minute not logged"
        self._write_log(f"pycni worker {os.getpid()}: {time.strftime('%Y-%m-%d %H:%M:%S')}: {text}\n")

    def _write_log(self, text: str) -> None:
        try:
            os.write(self._log_fd, text.encode("utf-8", "backslashreplace"))
        except OSError:
            pass

    def log_exception(self) -> None:
        """Append the current exception's traceback to the worker log."""
        import traceback

        self._write_log(f"pycni worker {os.getpid()}: {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                        + traceback.format_exc())

    # ------------------------------------------------------------------ checks

    def is_stale(self) -> bool:
        """True once the executable was replaced or (from source) a loaded module changed."""
        if self.stale:
            return True
        self._checked = time.monotonic()
        try:
            stale = build_id_of(self.self_path) != self.build_id
        except OSError:
            stale = True
        if not stale:
            for f, mtime in self._module_files.items():
                try:
                    if os.stat(f).st_mtime_ns != mtime:
                        stale = True
                        break
                except OSError:
                    stale = True
                    break
        self.stale = stale
        return stale

    def refusal(self, caller: peer.Caller, req: Request) -> str | None:
        """Why this worker must not run the pinned caller's call, or None."""
        if caller.uid != os.geteuid():
            return f"uid {caller.uid}"
        euid = caller.status.get("Uid", "").split()[1:2]
        if euid != [str(os.geteuid())]:
            return "effective uid changed"
        if req.build_id != self.build_id:
            return "another build"
        if stable_env(req.env) != self.env:
            return "another environment"
        for ns, own in self._own_ns.items():
            if caller.ns_id(ns) != own:
                return f"another {ns} namespace"
        if peer.privileges(caller.status) != self._own_privileges:
            return "other privileges"
        if caller.label != self._own_label:
            return "another security label"
        if self.is_stale():
            self._unlink()  # no new client reaches a stale worker
            return "stale"
        return None

    # ------------------------------------------------------------------ requests

    def receive(self, conn) -> Request | None:
        """The request on `conn`, which has one to read (poll said so), or None after refusing
        or closing it. Never blocks, never raises."""
        import socket as _socket

        fds: list[int] = []
        try:
            msg, anc, flags, _ = conn.recvmsg(
                MAX_REQUEST, _socket.CMSG_SPACE(4 * MAX_FDS),
                _socket.MSG_DONTWAIT | _socket.MSG_CMSG_CLOEXEC,
            )
            for level, kind, data in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
        except OSError:
            _close_all(fds)
            conn.close()
            return None
        if not msg and not fds and _peer_gone(conn):
            conn.close()  # hung up without a request (an empty datagram is refused below)
            return None
        why: str | None = None
        if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC):
            why = "request or descriptors truncated"
            parsed = None
        else:
            parsed = parse(msg, fds)
            if isinstance(parsed, str):
                why, parsed = parsed, None
        if parsed is None:
            self.refuse_now(conn, fds, f"malformed request: {why}")
            return None
        return Request(conn, *parsed, fds)

    def refuse_now(self, conn, fds: list[int], why: str) -> None:
        """Answer "R" without waiting, log why, close everything."""
        import socket as _socket

        self.log(f"refused: {why}")
        try:
            conn.send(b"R", _socket.MSG_DONTWAIT)
        except OSError:
            pass
        _close_all(fds)
        _close(conn)

    def handle(self, req: Request) -> None:
        """One request, on its own call thread (which ends with it)."""
        conn = req.conn
        caller: peer.Caller | None = None
        held = None
        try:
            conn.settimeout(SEND_SECONDS)
            try:
                caller = peer.pin(conn, req.pidfd)
            except peer.Refused as e:
                if not isinstance(e, peer.Gone):
                    self.log(f"refused: {e}")
                conn.send(b"R")
                return
            why = self.refusal(caller, req)
            if why is not None:
                self.log(f"refused pid {caller.pid}: {why}")
                conn.send(b"R")
                return
            if not caller.alive():
                return  # decided about a process that is gone: nothing to answer
            conn.send(b"A")
            with self.cond:
                self.served += 1
            held = attachment.acquire(
                self.dirfd, req.env, self.lock_wait, req.inherited,
                cancelled=lambda: not caller.alive() or _peer_gone(conn),
            )
            if not caller.alive() or _peer_gone(conn):
                return  # killed while it waited: the runtime no longer expects this call
            rc, out = self._call(req, caller, held is not None)
            data = out.encode("utf-8", "surrogateescape")
            for i in range(0, len(data), 65536):
                conn.send(b"O" + data[i : i + 65536])
            conn.send(b"X" + bytes([rc & 0xFF]))
        except OSError:
            pass  # the client went away or stopped reading; nothing to answer
        except BaseException:
            self.log_exception()
            raise
        finally:
            if held is not None:
                held.release()
            if caller is not None:
                caller.close()
            req.close()

    def _call(self, req: Request, caller: peer.Caller, locked: bool) -> tuple[int, str]:
        """Enter the caller's namespaces and run its call: (exit status, stdout)."""
        from cni import skel
        from cni.errors import ERR_INTERNAL, ERR_TRY_AGAIN_LATER, CNIError, os_error_text
        from plugins import multicall

        plugin = multicall.plugin_for(req.name)
        if not locked:
            env = req.env

            def busy(args):
                raise CNIError(
                    ERR_TRY_AGAIN_LATER,
                    f"another call for container {env.get('CNI_CONTAINERID', '')} interface "
                    f"{env.get('CNI_IFNAME', '')} is still running; try again later",
                )

            plugin = skel.Plugin(add=busy, delete=busy, check=busy, status=plugin.status,
                                 gc=plugin.gc, versions=plugin.versions, about=plugin.about)
        try:
            self._become(caller)
        except OSError as e:
            err = CNIError(ERR_INTERNAL, f"pycni worker could not enter the caller's namespaces: "
                                         f"{os_error_text(e)}")
            return 1, err.to_json()
        return self._run(plugin, req.env, req.fds[0], req.fds[1])

    def _become(self, caller: peer.Caller) -> None:
        """This thread: the caller's mount namespace, root, working directory, umask and network
        namespace, all from descriptors taken while it was pinned. Raises OSError."""
        from cni.netns import _setns

        _unshare_fs()  # cwd, root, umask and mount namespace become this thread's own
        if caller.ns_id("mnt") != self._own_mnt:  # e.g. a caller under `ip netns exec`
            _setns(caller.ns["mnt"], CLONE_NEWNS)
        root, here = os.fstat(caller.root), os.stat("/")
        if (root.st_dev, root.st_ino) != (here.st_dev, here.st_ino):
            os.fchdir(caller.root)  # a chrooted caller: its paths mean what they mean to it
            os.chroot(".")
        os.fchdir(caller.cwd)
        os.umask(int(caller.status.get("Umask", "0022"), 8))
        _setns(caller.ns["net"], CLONE_NEWNET)

    def _run(self, plugin, env: dict[str, str], stdin_fd: int, stderr_fd: int) -> tuple[int, str]:
        """`cni.skel.main` without the process around it: (exit status, stdout). The descriptors
        stay owned (and closed) by the request."""
        from cni import skel

        try:
            stderr = open(  # noqa: SIM115
                stderr_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                closefd=False,
            )
        except (OSError, ValueError):  # a directory, say: what the call writes there is lost
            import io

            stderr = io.StringIO()
        self.stderr.route(stderr)
        try:
            def source() -> bytes:
                if env.get("CNI_COMMAND") == "VERSION":
                    return _read_stdin(stdin_fd, MAX_STDIN, VERSION_STDIN_SECONDS, brief=True)
                return _read_stdin(stdin_fd, MAX_STDIN, STDIN_SECONDS, brief=False)

            try:
                return skel.run(plugin, env, source)
            except SystemExit as e:  # what the process would have exited with
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                return code, ""
        finally:
            self.stderr.route(None)
            try:
                stderr.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ loop

    def _thread(self, req: Request) -> None:
        try:
            self.handle(req)
        finally:
            with self.cond:
                self.active -= 1
                self.last = time.monotonic()
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full: the loop is awake anyway

    def _done(self, queue: deque) -> bool:
        """True when the worker should stop accepting."""
        now = time.monotonic()
        if self.stale or self.served >= self.max_requests:
            return True
        with self.cond:
            idle = self.active == 0 and not queue
            idle_for = now - self.last if idle else 0.0
        if idle and now - self._checked >= STALE_SECONDS and self.is_stale():
            return True
        if self.resident:
            return False
        return idle_for >= self.idle or now - self.started >= self.max_age

    def serve(self, listener) -> None:
        """Accept until idle, stale or at a limit; then close and wait for the calls."""
        import select

        listener.setblocking(False)
        lfd = listener.fileno()
        poller = select.poll()
        poller.register(lfd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        pending: OrderedDict[int, tuple[object, float]] = OrderedDict()
        queue: deque[Request] = deque()
        try:
            while not self._done(queue):
                now = time.monotonic()
                waits = [STALE_SECONDS if self.resident else 1.0]
                if pending:
                    waits.append(next(iter(pending.values()))[1] - now)
                if queue:
                    waits.append(queue[0].deadline - now)
                for fd, _ev in poller.poll(max(10, int(min(waits) * 1000) + 1)):
                    if fd == lfd:
                        self._accept(listener, poller, pending)
                    elif fd == self._wake_r:
                        try:
                            os.read(self._wake_r, 4096)
                        except OSError:
                            pass
                    elif fd in pending:
                        conn, _ = pending.pop(fd)
                        poller.unregister(fd)
                        req = self.receive(conn)
                        if req is None:
                            continue
                        if len(queue) >= QUEUE_MAX:
                            self.refuse_now(req.conn, req.fds, "queue full")
                            req.fds = []
                        else:
                            queue.append(req)
                self._expire(poller, pending, queue)
                self._dispatch(queue)
        finally:
            self._unlink()
            listener.close()
            if self.lock_fd is not None:
                os.close(self.lock_fd)  # a successor may start while calls drain
                self.lock_fd = None
            for conn, _ in pending.values():
                conn.close()
            for req in queue:
                req.close()  # not accepted: the client runs its call itself
            # Calls in progress finish; one that hangs (its client long killed by the runtime's
            # timeout) does not keep the worker alive past DRAIN_SECONDS.
            deadline = time.monotonic() + DRAIN_SECONDS
            with self.cond:
                while self.active and time.monotonic() < deadline:
                    self.cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def _accept(self, listener, poller, pending: OrderedDict) -> None:
        import select

        for _ in range(PENDING_MAX):
            try:
                conn, _ = listener.accept()
            except OSError as e:
                import errno

                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors: let calls end instead of spinning
                return  # nothing more (EAGAIN), or a connection that went away
            conn.setblocking(False)
            fd = conn.fileno()
            pending[fd] = (conn, time.monotonic() + RECV_SECONDS)
            poller.register(fd, select.POLLIN)
            if len(pending) > PENDING_MAX:  # the oldest has had longest to send its request
                old_fd, (old, _) = pending.popitem(last=False)
                poller.unregister(old_fd)
                old.close()

    def _expire(self, poller, pending: OrderedDict, queue: deque) -> None:
        now = time.monotonic()
        while pending:
            fd, (conn, deadline) = next(iter(pending.items()))
            if deadline > now:
                break
            del pending[fd]
            poller.unregister(fd)
            conn.close()
        while queue and queue[0].deadline <= now:
            queue.popleft().close()  # never accepted: the client runs its call itself

    def _dispatch(self, queue: deque) -> None:
        while queue:
            with self.cond:
                if self.active >= MAX_CALLS:
                    return
                self.active += 1
            req = queue.popleft()
            req.conn.setblocking(True)
            try:
                threading.Thread(target=self._thread, args=(req,), daemon=True).start()
            except RuntimeError:  # no thread to be had: the client runs its call itself
                with self.cond:
                    self.active -= 1
                req.close()
                return

    def _unlink(self) -> None:
        if self.activated or self._sock_id is None:
            return  # systemd's socket stays
        try:
            st = os.stat(self.sock_name, dir_fd=self.dirfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == self._sock_id:
                os.unlink(self.sock_name, dir_fd=self.dirfd)
        except OSError:
            pass

    def listen(self):
        """Bind the socket (replacing a dead worker's file) and listen; the lock must be held."""
        import socket

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            os.unlink(self.sock_name, dir_fd=self.dirfd)
        except FileNotFoundError:
            pass
        old = os.umask(0o077)
        try:
            listener.bind(directory.proc_path(self.dirfd, self.sock_name))
        finally:
            os.umask(old)
        st = os.stat(self.sock_name, dir_fd=self.dirfd, follow_symlinks=False)
        self._sock_id = (st.st_dev, st.st_ino)
        listener.listen(256)
        self.last = time.monotonic()
        return listener


def _peer_gone(conn) -> bool:
    """True when the client closed its end (what it may still have queued does not count)."""
    import select

    poller = select.poll()
    poller.register(conn, select.POLLRDHUP)
    return any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))


def _lock(dirfd: int, name: str, wait: float = 2.0) -> int | None:
    """The worker lock file `name`, locked and holding this pid; None when another worker holds
    it past `wait` seconds or it is not root's regular file."""
    import fcntl

    try:
        fd = directory.open_in(dirfd, name, os.O_RDWR | os.O_CREAT)
    except OSError:
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # who serves this socket, for operators
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def _activated_listener():
    """The listening socket systemd passed (LISTEN_PID is this process, LISTEN_FDS=1: fd 3),
    or None. The LISTEN_* variables are removed so nothing this process starts sees them."""
    import socket

    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    try:
        listener = socket.socket(fileno=3)
    except OSError:
        return None
    if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_SEQPACKET:
        listener.detach()
        return None
    os.set_inheritable(3, False)
    return listener


def _open_log() -> int:
    """The worker log, opened once (a call thread that joined a caller's mount namespace
    resolves no path): PYCNI_WORKER_LOG appended to, else the worker's stderr."""
    path = os.environ.get("PYCNI_WORKER_LOG")
    if path:
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            pass
    return 2


def _reset_process_state() -> None:
    """What a worker must not keep from whoever started it: its working directory and its OOM
    score (containerd's -999 would make the worker the last thing the kernel kills)."""
    os.chdir("/")
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0")
    except OSError:
        pass


def serve(sock_path: str, self_path: str) -> None:
    """Process entry of a worker (PYCNI_WORKER_SERVE=<socket path>, or systemd socket
    activation with the socket `<dir>/pycni.sock`); exits the process when done."""
    listener = _activated_listener()
    _reset_process_state()
    folder, name = os.path.split(sock_path)
    dirfd = directory.open_worker_dir(folder, create=False)
    if dirfd is None or not name or len(directory.proc_path(dirfd, name)) >= 108:
        os._exit(1 if listener is not None else 0)  # an unsafe directory is never served
    lock = _lock(dirfd, name + ".lock", wait=0.0 if listener is not None else 2.0)
    if lock is None and listener is None:
        os._exit(0)  # another worker serves this socket
    try:
        resident = listener is not None or os.environ.get("PYCNI_WORKER_RESIDENT") == "1"
        worker = Worker(dirfd, name, self_path, resident=resident)
        worker.activated = listener is not None
        worker.lock_fd = lock
        worker.prewarm()
        sys.stderr = worker.stderr  # type: ignore[assignment]
        worker.serve(listener if listener is not None else worker.listen())
    except Exception:  # noqa: BLE001 - a worker that cannot start just is not there
        pass
    os._exit(0)
