"""Warm worker (on unless PYCNI_WORKER=0): one pre-imported process runs the calls of many.

Started in the background by the first client that finds no worker (plugins/worker/client.py),
as this same executable with PYCNI_WORKER_SERVE=<socket path> and the client's environment
minus CNI_*. It takes `<socket>.lock` (one worker per socket), imports every plugin module and
builds their models, then listens on a SOCK_SEQPACKET unix socket (mode 0600). Each request
runs in its own thread, which first makes itself look like the client process:

* peer credentials (SO_PEERCRED) must be this worker's uid, and the client's build id,
  environment (CNI_* aside), pid and user namespaces, capability sets, no_new_privs, seccomp
  mode and LSM label must equal the worker's; otherwise the answer is "R" and the client runs
  the call itself (it never gains a privilege it does not have);
* the thread unshares its fs_struct (CLONE_FS), enters the client's mount namespace when it
  differs (a caller under `ip netns exec` has its own), requires the client's root directory,
  takes its working directory and umask, then enters its network namespace (setns on
  /proc/<pid>/ns/net), so every path and every netlink socket means what it means to the
  client;
* stdin and stderr are the client's own file descriptors (passed with SCM_RIGHTS), routed per
  thread through sys.stdin / sys.stderr; stdout goes back over the socket.

Then "A" (accepted); for ADD, CHECK and DEL the attachment's lock (one call per container ID and
interface at a time across the workers: a runtime that killed a client on timeout must find
that call finished before its DEL runs, as it would after killing a process; a call whose
client died while it waited is dropped); `cni.skel.run` exactly as `cni.skel.main` would; and
"O<stdout>" + "X<status>". The worker exits after PYCNI_WORKER_IDLE seconds (default 30) without a request,
after PYCNI_WORKER_MAX requests (default 10000) or PYCNI_WORKER_MAX_AGE seconds (default 600),
or as soon as it notices it is stale: its executable was replaced, or (from source) a loaded
module file changed. Exiting unlinks the socket and releases the lock first, so no new client
reaches it and a successor can start at once; clients queued but not accepted see the socket
close before "A" and run their call themselves; calls in progress finish (at most
DRAIN_SECONDS more, so a call that hangs cannot keep the worker alive).
"""

from __future__ import annotations

import os
import sys
import threading
import time

from plugins.worker.client import MAGIC, build_id, stable_env

CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
_MAX_REQUEST = 1 << 20
DRAIN_SECONDS = 120.0
ATTACHMENT_STRIPES = 1024  # lock files per worker directory (a collision only serialises two pods)


def _number(name: str, default: float) -> float:
    """A positive number from the environment, else `default`."""
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


class _Routed:
    """A stand-in for sys.stdin / sys.stderr that routes to the current thread's stream."""

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


# Privilege-related lines of /proc/<pid>/status that must equal the worker's: a caller with
# fewer capabilities, or under a seccomp filter or no_new_privs, must not borrow the worker's.
_PRIVILEGE_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")


def _status_of(pid: int | str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def _privileges(status: dict[str, str]) -> tuple[str, ...]:
    return tuple(status.get(k, "") for k in _PRIVILEGE_FIELDS)


def _security_label(pid: int | str) -> bytes:
    try:
        with open(f"/proc/{pid}/attr/current", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def build_id_of(path: str) -> str:
    """The build id a client sends: the identity (device, inode, size, mtime) of its executable."""
    return build_id(os.stat(path))


class Worker:
    """The server: accept loop, per-request threads, idle/stale/limit shutdown."""

    def __init__(self, sock_path: str, self_path: str) -> None:
        self.sock_path = sock_path
        self.self_path = self_path
        self.build_id = build_id_of(self_path)
        self.env = stable_env(os.environ)
        self.idle = _number("PYCNI_WORKER_IDLE", 30.0)
        self.max_requests = int(_number("PYCNI_WORKER_MAX", 10000))
        self.max_age = _number("PYCNI_WORKER_MAX_AGE", 600.0)
        self.started = time.monotonic()
        self.stale = False
        self.active = 0
        self.served = 0
        self.last = time.monotonic()
        self.cond = threading.Condition()
        self._own_ns = {ns: self._ns_id("self", ns) for ns in ("pid", "user")}
        self._own_mnt = self._ns_id("self", "mnt")
        self._own_privileges = _privileges(_status_of("self"))
        self._own_label = _security_label("self")
        self._module_files: dict[str, int] = {}
        self._exe = _identity(self_path)
        self.lock_fd: int | None = None
        self.stdin = _Routed(sys.stdin)
        self.stderr = _Routed(sys.stderr)

    @staticmethod
    def _ns_id(pid: str | int, ns: str) -> tuple[int, int]:
        st = os.stat(f"/proc/{pid}/ns/{ns}")
        return (st.st_dev, st.st_ino)

    # ------------------------------------------------------------------ start-up

    def prewarm(self) -> None:
        """Import every plugin module and what their calls import lazily; build the models."""
        import importlib
        import pkgutil

        import cni
        import ipam
        import plugins

        skip = {"cni.cnitool", "plugins.worker.server"}
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

    # ------------------------------------------------------------------ checks

    def is_stale(self) -> bool:
        """True once the executable was replaced or (from source) a loaded module changed."""
        if self.stale:
            return True
        try:
            stale = _identity(self.self_path) != self._exe
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

    def refusal(self, pid: int, uid: int, build_id: str, env: dict[str, str]) -> str | None:
        """Why this worker must not run the client's call, or None."""
        if uid != os.geteuid():
            return "another user"
        if build_id != self.build_id:
            return "another build"
        if stable_env(env) != self.env:
            return "another environment"
        try:
            for ns, own in self._own_ns.items():
                if self._ns_id(pid, ns) != own:
                    return f"another {ns} namespace"
            if _privileges(_status_of(pid)) != self._own_privileges:
                return "other privileges"
            if _security_label(pid) != self._own_label:
                return "another security label"
        except OSError:
            return "client not inspectable"
        if self.is_stale():
            self._unlink()  # no new client reaches a stale worker
            return "stale"
        return None

    # ------------------------------------------------------------------ requests

    def handle(self, conn) -> None:
        """One request, on its own thread (which ends with it)."""
        import socket as _socket

        fds: list[int] = []
        try:
            msg, anc, _flags, _addr = conn.recvmsg(_MAX_REQUEST, _socket.CMSG_SPACE(8 * 4))
            for level, kind, data in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
            parts = msg.split(b"\0")
            if len(parts) < 3 or parts[0] != MAGIC or len(fds) < 2:
                conn.send(b"Rbad request")
                return
            inherited = fds[3] if len(fds) > 3 else None  # the caller's attachment lock
            for extra in fds[2:]:  # the client's pidfd: used by the new server (sec)
                if extra != inherited:
                    os.close(extra)
            del fds[2:]
            name = parts[1].decode()
            build_id = parts[2].decode()
            env: dict[str, str] = {}
            for item in parts[3:]:
                k, _, v = item.decode("utf-8", "surrogateescape").partition("=")
                env[k] = v
            cred = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
            pid = int.from_bytes(cred[0:4], sys.byteorder)
            uid = int.from_bytes(cred[4:8], sys.byteorder)
            why = self.refusal(pid, uid, build_id, env) or self._become_client(pid)
            if why is not None:
                conn.send(b"R" + why.encode())
                return
            conn.send(b"A")
            try:
                attachment = self._lock_attachment(env, inherited)
            finally:
                if inherited is not None:
                    os.close(inherited)
            try:
                if attachment is not None and _peer_gone(conn):
                    return  # killed while it waited: the runtime no longer expects this call
                rc, out = self._run(name, env, fds[0], fds[1])
                fds = []  # closed by _run
            finally:
                if attachment is not None:
                    attachment.release()
            data = out.encode("utf-8", "surrogateescape")
            for i in range(0, len(data), 65536):
                conn.send(b"O" + data[i : i + 65536])
            conn.send(b"X" + bytes([rc & 0xFF]))
        except OSError:
            pass  # the client went away; nothing to answer
        except BaseException:
            self.log_exception()
            raise
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()

    def _lock_attachment(self, env: dict[str, str], inherited: int | None):
        """The attachment lock (plugins/worker/attachment.py) for ADD, CHECK and DEL, held while
        the call runs: a runtime that killed a client on timeout must find that call finished
        before its DEL runs. `inherited`: the lock the caller's ancestry holds (a delegate a
        call executed), presented instead of waiting for it."""
        from plugins.worker import attachment, directory

        dirfd = directory.open_worker_dir(os.path.dirname(self.sock_path), create=False)
        if dirfd is None:
            raise OSError("worker directory refused")
        try:
            held = attachment.acquire(dirfd, env, attachment.MAX_WAIT, inherited)
        finally:
            os.close(dirfd)
        if held is None:
            raise OSError("attachment lock not had in time")
        return held

    def log_exception(self) -> None:
        """Append the current exception's traceback to PYCNI_WORKER_LOG, when set."""
        path = os.environ.get("PYCNI_WORKER_LOG")
        if not path:
            return
        import traceback

        try:
            with open(path, "a") as f:
                f.write(f"pycni worker {os.getpid()}: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                traceback.print_exc(file=f)
        except OSError:
            pass

    def _become_client(self, pid: int) -> str | None:
        """This thread: the client's mount namespace, working directory, umask and network
        namespace. A reason to refuse (nothing was run yet) or None; raises OSError when a
        switch fails half-way (the thread then ends without running anything)."""
        from cni.netns import _setns

        _unshare_fs()  # cwd, root, umask and mount namespace become this thread's own
        if self._ns_id(pid, "mnt") != self._own_mnt:  # e.g. a caller under `ip netns exec`
            mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(mnt, CLONE_NEWNS)
            finally:
                os.close(mnt)
        root, own_root = os.stat(f"/proc/{pid}/root"), os.stat("/")
        if (root.st_dev, root.st_ino) != (own_root.st_dev, own_root.st_ino):
            return "another root directory"
        cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fchdir(cwd)
        finally:
            os.close(cwd)
        os.umask(int(_status_of(pid).get("Umask", "0022"), 8))
        net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(net, CLONE_NEWNET)
        finally:
            os.close(net)
        return None

    def _run(self, name: str, env: dict[str, str], stdin_fd: int, stderr_fd: int) -> tuple[int, str]:
        """`cni.skel.main` without the process around it: (exit status, stdout)."""
        from cni import skel
        from plugins import multicall

        stdin = open(stdin_fd, encoding="utf-8", errors="strict", closefd=True)  # noqa: SIM115
        stderr = open(  # noqa: SIM115
            stderr_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=True
        )
        self.stdin.route(stdin)
        self.stderr.route(stderr)
        try:
            plugin = multicall.plugin_for(name)

            def source() -> bytes:
                if env.get("CNI_COMMAND") == "VERSION":
                    return skel.read_stdin_briefly()
                return skel.read_stdin()

            try:
                return skel.run(plugin, env, source)
            except SystemExit as e:  # what the process would have exited with
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                return code, ""
        finally:
            self.stdin.route(None)
            self.stderr.route(None)
            for f in (stdin, stderr):
                try:
                    f.close()
                except OSError:
                    pass

    # ------------------------------------------------------------------ loop

    def _thread(self, conn) -> None:
        try:
            self.handle(conn)
        finally:
            with self.cond:
                self.active -= 1
                self.last = time.monotonic()
                self.cond.notify_all()

    def serve(self, listener) -> None:
        """Accept until idle, stale or at the request limit; then close and wait for threads."""
        import select

        try:
            while True:
                with self.cond:
                    idle_for = time.monotonic() - self.last if self.active == 0 else 0.0
                old = time.monotonic() - self.started >= self.max_age
                if idle_for >= self.idle or self.stale or self.served >= self.max_requests or old:
                    break
                # wake at least once a second, to notice staleness found by a request thread
                ready, _, _ = select.select([listener], [], [], min(1.0, max(0.05, self.idle - idle_for)))
                if not ready:
                    continue
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with self.cond:
                    self.active += 1
                    self.served += 1
                threading.Thread(target=self._thread, args=(conn,), daemon=True).start()
        finally:
            self._unlink()
            listener.close()
            if self.lock_fd is not None:
                os.close(self.lock_fd)  # a successor may start while calls drain
                self.lock_fd = None
            # Calls in progress finish; one that hangs (its client long killed by the runtime's
            # timeout) does not keep the worker alive past DRAIN_SECONDS.
            deadline = time.monotonic() + DRAIN_SECONDS
            with self.cond:
                while self.active and time.monotonic() < deadline:
                    self.cond.wait(max(0.0, deadline - time.monotonic()))

    def _unlink(self) -> None:
        try:
            st = os.stat(self.sock_path)
            if (st.st_dev, st.st_ino) == self._sock_id:
                os.unlink(self.sock_path)
        except (OSError, AttributeError):
            pass

    def listen(self):
        """Bind the socket (replacing a dead worker's file) and listen; the lock must be held."""
        import socket

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
        old = os.umask(0o077)
        try:
            listener.bind(self.sock_path)
        finally:
            os.umask(old)
        st = os.stat(self.sock_path)
        self._sock_id = (st.st_dev, st.st_ino)
        listener.listen(256)
        self.last = time.monotonic()
        return listener


def _child_of_worker(pid: int) -> bool:
    """True when process `pid` descends from a pycni worker: a delegate that one of its calls
    executed, directly or through a delegate of its own (a copy of bridge that executes
    host-local). A worker's environment says what it is (PYCNI_WORKER_SERVE, set for every
    worker); the walk up the parents stops at init."""
    for _ in range(32):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if pid <= 1:
                return False
            with open(f"/proc/{pid}/environ", "rb") as f:
                if b"\0PYCNI_WORKER_SERVE=" in b"\0" + f.read():
                    return True
        except (OSError, ValueError, IndexError):
            return False
    return False


def _peer_gone(conn) -> bool:
    """True when the client closed its end (it sends nothing after its request)."""
    import select

    poller = select.poll()
    poller.register(conn, select.POLLIN | select.POLLHUP | select.POLLRDHUP)
    return bool(poller.poll(0))


def _lock(path: str, wait: float = 2.0) -> int | None:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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


def serve(sock_path: str, self_path: str) -> None:
    """Process entry of a worker (PYCNI_WORKER_SERVE); exits the process when done."""
    lock = _lock(sock_path + ".lock")
    if lock is None:
        os._exit(0)  # another worker serves this socket
    try:
        worker = Worker(sock_path, self_path)
        worker.lock_fd = lock
        worker.prewarm()
        sys.stdin = worker.stdin  # type: ignore[assignment]
        sys.stderr = worker.stderr  # type: ignore[assignment]
        listener = worker.listen()
        worker.serve(listener)
    except Exception:  # noqa: BLE001 - a worker that cannot start just is not there
        pass
    os._exit(0)
