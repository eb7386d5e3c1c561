"""A worker process from start to exit: taking its socket, warming up, serving, leaving.

Started by a client that finds no worker (plugins/worker/spawn.py), as this same executable
with PYCNI_WORKER_SERVE=<socket path>, or by systemd socket activation (LISTEN_FDS=1: the
listener is descriptor 3). `serve` refuses an unsafe worker directory, takes `<socket>.lock`
(one worker per socket, holding its pid), imports every plugin module and builds their models,
then hands over to the accept loop (plugins/worker/server.py).
"""

from __future__ import annotations

import fcntl
import importlib
import os
import pkgutil
import socket
import sys
import time

from pydantic import BaseModel

import cni
import ipam
import plugins
from plugins.linux import netlink
from plugins.worker import directory
from plugins.worker.server import PluginFor, Worker

# Not imported ahead: cnitool is no plugin, and this package is imported already.
_NOT_WARMED = {"cni.libcni.cnitool", "plugins.worker.server"}


def prewarm() -> None:
    """Import every plugin module and what their calls import lazily; build the models."""
    for pkg in (cni, plugins, ipam):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name not in _NOT_WARMED:
                try:
                    importlib.import_module(info.name)
                except Exception:  # noqa: BLE001 - a module we cannot import is simply not warm
                    pass
    netlink.import_iproute()  # as the plugins import it: without unittest
    for mod in ("pyroute2.netlink.exceptions", "subprocess", "ipaddress", "fcntl", "ctypes"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    _build_models()


def _build_models() -> None:
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


def _lock(dirfd: int, name: str, wait: float = 2.0) -> int | None:
    """The worker lock file `name`, locked and holding this pid; None when another worker holds
    it past `wait` seconds or it is not root's regular file."""
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


def _activated_listener() -> socket.socket | None:
    """The listening socket systemd passed (LISTEN_PID is this process, LISTEN_FDS=1: fd 3),
    or None. The LISTEN_* variables are removed so nothing this process starts sees them."""
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


def _reset_process_state() -> None:
    """What a worker must not keep from whoever started it: its working directory and its OOM
    score (containerd's -999 would make the worker the last thing the kernel kills)."""
    os.chdir("/")
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0")
    except OSError:
        pass


def serve(sock_path: str, self_path: str, plugin_for: PluginFor, names: frozenset[str]) -> None:
    """Process entry of a worker (PYCNI_WORKER_SERVE=<socket path>, or systemd socket
    activation with the socket `<dir>/pycni.sock`) serving the entry points `names`, whose
    plugins `plugin_for` gives; exits the process when done."""
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
        worker = Worker(dirfd, name, self_path, plugin_for, names, resident=resident)
        worker.activated = listener is not None
        worker.lock_fd = lock
        prewarm()
        worker.identity.record_modules()
        sys.stderr = worker.stderr  # type: ignore[assignment]
        worker.serve(listener if listener is not None else worker.listen())
    except Exception:  # noqa: BLE001 - a worker that cannot start just is not there
        pass
    os._exit(0)
