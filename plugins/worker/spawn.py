"""Starting a worker in the background: how many are alive, spawning one more, and the
spawned worker's first step (its niceness while it starts).

Loaded by the client (plugins/worker/client.py) only when it finds no worker to serve its call,
so that a served call never pays for fcntl, and by a worker process first of all.
"""

from __future__ import annotations

import _thread  # not threading: the cold client imports this module, and needs no thread
import fcntl
import os
import stat
import time

from plugins.worker import directory
from plugins.worker.protocol import ATTACHMENT_FD_VAR, RESIDENT_SOCKET, worker_dir

TYPE_CHECKING = False  # as in protocol.py: no typing import on the client path
if TYPE_CHECKING:
    from collections.abc import Mapping

# argv[0] of a worker, so `ps` says what the process is (its executable is still the plugin's)
WORKER_ARGV0 = "pycni-worker"
# Live workers one directory may hold, all builds and environments together. A runtime whose
# environment changed on every call would otherwise start a new set of workers per call, each
# holding ≈40 MiB until its idle timeout.
MAX_LIVE_WORKERS = 16
# Niceness a worker started by a call begins with: its start-up (imports, ≈150 ms CPU) must not
# slow down the call that started it. `spawned_worker_setup` sets it back to 0 once it listens.
SPAWN_NICE = 10


def live_workers(dirfd: int) -> int:
    """How many workers serve a socket in the directory `dirfd`: each holds its socket's `.lock`
    file locked while it accepts calls (a killed worker's socket file may stay, its lock does
    not)."""
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


def spawn_worker(dirfd: int, sock_name: str, self_path: str, env: Mapping[str, str]) -> bool:
    """Start the worker of `sock_name` in the background, unless one holds the socket's lock
    already; True when one was started. Never raises, never waits for it.

    The worker gets nothing of this process but its environment (CNI_* and the attachment lock
    variable removed): a session of its own, /dev/null as stdin, stdout and stderr, no other
    descriptor (every inheritable one above 2 is closed in it); it then starts at niceness
    SPAWN_NICE (PYCNI_WORKER_SPAWNED: `spawned_worker_setup`) and plugins/worker/startup.py
    moves it to / and resets its OOM score to 0.
    The resident socket's worker is started resident (PYCNI_WORKER_RESIDENT=1: no idle exit)
    unless the caller's environment has PYCNI_WORKER_RESIDENT=0 (the opt-out)."""
    try:
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


def spawned_worker_setup(serve_path: str) -> None:
    """A worker a call started (`spawn_worker`) begins at niceness SPAWN_NICE, so that its
    start-up does not slow the call that started it; once it listens on `serve_path`, a thread
    puts the main thread (and so every request thread it starts later) back to 0. (Working
    directory and OOM score: plugins/worker/startup.py resets them for every worker.)"""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, SPAWN_NICE)
    except OSError:
        return
    _thread.start_new_thread(_renice_when_listening, (serve_path,))  # dies with the process


def _renice_when_listening(serve_path: str, timeout: float = 60.0) -> None:
    """Set the main thread's niceness back to 0 once a new socket file is at `serve_path`."""

    def ident() -> tuple[int, int] | None:
        try:
            st = os.stat(serve_path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None

    before = ident()  # a dead worker's socket file, replaced when this one binds
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = ident()
        if now is not None and now != before:
            break
        time.sleep(0.02)
    try:
        os.setpriority(os.PRIO_PROCESS, os.getpid(), 0)  # Linux: the main thread (tid == pid)
    except OSError:
        pass
