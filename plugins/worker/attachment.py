"""The attachment lock: ADD, CHECK and DEL of one attachment never overlap, on any path.

An attachment is (CNI_CONTAINERID, CNI_IFNAME). Its lock is an flock on one of STRIPES files
`a-<nnn>.att` in the worker directory (a collision only serialises two pods), taken by whoever
runs the call: a worker thread (plugins/worker/server.py) or the process itself when the call
runs in-process (plugins/inprocess.py). A runtime that killed a client on timeout must find
that call finished before its DEL runs, as it would after killing a process that did the work.

Waits are bounded: a call waits at most `timeout` seconds (MAX_WAIT by default: as long as a
call may run) and then gets None, which the caller answers with CNI error 11 ("try again
later") instead of racing the holder. A holder that never lets go (a process that opened the
file itself) therefore delays a DEL, never blocks it for ever.

A call that holds the lock and executes a delegate (another copy of the suite, or a new build
mid-upgrade) passes its lock descriptor to it (`exec_extras`, registered with cni.invoke by
the entry point) and names it in PYCNI_ATTACHMENT_FD. The delegate presents that descriptor
instead of waiting for a lock its own caller holds: it is accepted only when it is an open
file description of the same stripe file (device and inode) on which flock(LOCK_EX|LOCK_NB)
succeeds, i.e. one that holds the lock itself or one nobody holds. A process can only present
a descriptor it was given or opened itself, and holding that is holding the lock: nothing in
it can be forged by naming a number.
"""

from __future__ import annotations

import fcntl
import os
import time
from _thread import _local  # threading.local itself, without importing threading on every call
from collections.abc import Callable, Mapping

from plugins.worker import directory

# FD_VAR: the variable naming, in an executed delegate, the descriptor of its caller's lock
from plugins.worker.protocol import ATTACHMENT_FD_VAR as FD_VAR
from plugins.worker.protocol import fnv1a64, presented_lock

STRIPES = 1024
LOCKED_COMMANDS = ("ADD", "CHECK", "DEL")
# How long a call may wait for another call of its attachment: as long as a call may run.
MAX_WAIT = 120.0

_current = _local()


def max_wait(env: Mapping[str, str]) -> float:
    """How long a call described by `env` waits for its attachment's lock: PYCNI_WORKER_LOCK_WAIT
    seconds when that is a positive number, else MAX_WAIT (the worker reads the same variable
    from its own environment)."""
    try:
        value = float(env.get("PYCNI_WORKER_LOCK_WAIT", "") or MAX_WAIT)
    except ValueError:
        return MAX_WAIT
    return value if 0 < value < float("inf") else MAX_WAIT


def needs_lock(env: Mapping[str, str]) -> bool:
    """True for the calls that take the attachment lock: ADD, CHECK and DEL with a container ID."""
    return env.get("CNI_COMMAND") in LOCKED_COMMANDS and bool(env.get("CNI_CONTAINERID"))


def stripe_name(env: Mapping[str, str]) -> str:
    """The lock file (in the worker directory) of the attachment named by `env`."""
    key = f"{env.get('CNI_CONTAINERID', '')}\0{env.get('CNI_IFNAME', '')}"
    return f"a-{fnv1a64(key.encode('utf-8', 'surrogateescape')) % STRIPES:03x}.att"


class Held:
    """A held attachment lock (or, with fd None, a call that needs none). `release()` once.

    While held it is the calling thread's current lock: `exec_extras` passes it to delegates
    the thread executes."""

    def __init__(self, fd: int | None, inherited: bool = False) -> None:
        self.fd = fd
        self.inherited = inherited
        if fd is not None:
            _current.held = self

    def release(self) -> None:
        """Let go: unlock (unless the lock belongs to the caller's ancestry) and close."""
        if getattr(_current, "held", None) is self:
            _current.held = None
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if not self.inherited:
                fcntl.flock(fd, fcntl.LOCK_UN)  # delegates that outlive the call keep no hold
        finally:
            os.close(fd)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(
    dirfd: int,
    env: Mapping[str, str],
    timeout: float = MAX_WAIT,
    inherited: int | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Held | None:
    """The attachment lock of the call `env` describes, in the worker directory `dirfd`.

    Returns Held(None) for calls that need no lock; a Held that holds it (its own, or the
    presented `inherited` descriptor when that is the same stripe file and its open file
    description holds or can take the lock without waiting); None when it could not be had
    within `timeout` seconds, when `cancelled()` turned true while waiting (a worker's caller
    that died), or the lock file is unusable (not a regular root-owned file). Never closes
    `inherited` (the caller owns it); never raises OSError."""
    if not needs_lock(env):
        return Held(None)
    try:
        fd = directory.open_in(dirfd, stripe_name(env), os.O_RDWR | os.O_CREAT)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if inherited is not None and _same_lock(inherited, st):
            os.close(fd)
            fd = -1
            return Held(os.dup(inherited), inherited=True)
        if _wait_lock(fd, timeout, cancelled):
            held = Held(fd)
            fd = -1
            return held
        return None
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def _same_lock(inherited: int, st: os.stat_result) -> bool:
    """True when `inherited` is an open file description of the stripe file `st` and holds
    (or takes, nobody holding it) the lock without waiting."""
    try:
        ist = os.fstat(inherited)
        if (ist.st_dev, ist.st_ino) != (st.st_dev, st.st_ino):
            return False
        fcntl.flock(inherited, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _wait_lock(fd: int, timeout: float, cancelled: Callable[[], bool] | None = None) -> bool:
    """flock(LOCK_EX) on `fd` within `timeout` seconds (polled: a thread cannot be interrupted
    out of a blocking flock); False at once when `cancelled()` says the wait is moot."""
    deadline = time.monotonic() + max(0.0, timeout)
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        left = deadline - time.monotonic()
        if left <= 0 or (cancelled is not None and cancelled()):
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)


def presented(env: Mapping[str, str]) -> int | None:
    """The descriptor PYCNI_ATTACHMENT_FD names in `env` when it is open here (checked by
    `acquire`, not trusted)."""
    return presented_lock(env)


def exec_extras() -> tuple[tuple[int, ...], dict[str, str | None]]:
    """For a delegate the calling thread executes: the descriptors to pass (its held lock) and
    the variables to change (PYCNI_ATTACHMENT_FD naming it; removed when it holds none)."""
    held = getattr(_current, "held", None)
    if held is None or held.fd is None:
        return (), {FD_VAR: None}
    return (held.fd,), {FD_VAR: str(held.fd)}
