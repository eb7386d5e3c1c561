"""Running one accepted call on a worker thread, as the caller would have run it itself.

The thread unshares its fs_struct and enters the caller's mount namespace, root, working
directory, umask and network namespace from the descriptors taken when the caller was pinned
(plugins/worker/peer.py), then runs `cni.skel.run` with the caller's environment, its stdin (at
most MAX_STDIN bytes within STDIN_SECONDS) and its stderr.
"""

from __future__ import annotations

import ctypes
import io
import os
import select
import threading
import time
from collections.abc import Mapping
from typing import TextIO

from cni import skel
from cni.errors import ERR_INTERNAL, ERR_IO_FAILURE, ERR_TRY_AGAIN_LATER, CNIError, os_error_text
from cni.netns import _get_libc, _setns
from plugins.worker import peer
from plugins.worker.limits import MAX_STDIN, STDIN_SECONDS, VERSION_STDIN_SECONDS
from plugins.worker.request import Request

CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000


class Routed:
    """A stand-in for sys.stderr that routes to the current thread's stream (a call's stdin
    reaches skel.run as bytes read from its own descriptor)."""

    def __init__(self, default: TextIO) -> None:
        self._default = default
        self._local = threading.local()

    def route(self, stream: TextIO | None) -> None:
        """Use `stream` for the calling thread (None: back to the process's own)."""
        self._local.stream = stream

    def _target(self) -> TextIO:
        return getattr(self._local, "stream", None) or self._default

    def __getattr__(self, name: str) -> object:
        return getattr(self._target(), name)

    def write(self, text: str) -> int:
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
    libc = _get_libc()
    if libc.unshare(ctypes.c_int(CLONE_FS)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def read_stdin(fd: int, limit: int, seconds: float, brief: bool) -> bytes:
    """Stdin of a call: at most `limit` bytes until end of file within `seconds`. A CNIError 5
    naming the limit otherwise; with `brief` (VERSION) b"" instead of an error."""
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
            raise CNIError(ERR_IO_FAILURE,
                           f"stdin is larger than {limit} bytes (the worker's limit)")
        chunks.append(chunk)


def call(
    req: Request,
    caller: peer.Caller,
    plugin: skel.Plugin,
    locked: bool,
    own_mnt: tuple[int, int],
    stderr: Routed,
) -> tuple[int, str]:
    """Enter the caller's namespaces and run its call of `plugin`: (exit status, stdout).
    Without the attachment lock (`locked` false) ADD, CHECK and DEL answer CNI error 11."""
    if not locked:
        env = req.env

        def busy(args: skel.CmdArgs) -> None:
            raise CNIError(
                ERR_TRY_AGAIN_LATER,
                f"another call for container {env.get('CNI_CONTAINERID', '')} interface "
                f"{env.get('CNI_IFNAME', '')} is still running; try again later",
            )

        plugin = plugin.replacing(("ADD", "DEL", "CHECK"), lambda _callback: busy)
    try:
        become(caller, own_mnt)
    except OSError as e:
        err = CNIError(ERR_INTERNAL, f"pycni worker could not enter the caller's namespaces: "
                                     f"{os_error_text(e)}")
        return 1, err.to_json()
    return run(plugin, req.env, req.fds[0], req.fds[1], stderr)


def become(caller: peer.Caller, own_mnt: tuple[int, int]) -> None:
    """This thread: the caller's mount namespace, root, working directory, umask and network
    namespace, all from descriptors taken while it was pinned. Raises OSError."""
    _unshare_fs()  # cwd, root, umask and mount namespace become this thread's own
    if caller.ns_id("mnt") != own_mnt:  # e.g. a caller under `ip netns exec`
        _setns(caller.ns["mnt"], CLONE_NEWNS)
    root, here = os.fstat(caller.root), os.stat("/")
    if (root.st_dev, root.st_ino) != (here.st_dev, here.st_ino):
        os.fchdir(caller.root)  # a chrooted caller: its paths mean what they mean to it
        os.chroot(".")
    os.fchdir(caller.cwd)
    os.umask(int(caller.status.get("Umask", "0022"), 8))
    _setns(caller.ns["net"], CLONE_NEWNET)


def run(
    plugin: skel.Plugin, env: Mapping[str, str], stdin_fd: int, stderr_fd: int, router: Routed
) -> tuple[int, str]:
    """`cni.skel.main` without the process around it: (exit status, stdout). The descriptors
    stay owned (and closed) by the request; the call's stderr goes through `router`."""
    stderr: TextIO
    try:
        stderr = open(  # noqa: SIM115
            stderr_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
            closefd=False,
        )
    except (OSError, ValueError):  # a directory, say: what the call writes there is lost
        stderr = io.StringIO()
    router.route(stderr)
    try:
        def source() -> bytes:
            if env.get("CNI_COMMAND") == "VERSION":
                return read_stdin(stdin_fd, MAX_STDIN, VERSION_STDIN_SECONDS, brief=True)
            return read_stdin(stdin_fd, MAX_STDIN, STDIN_SECONDS, brief=False)

        try:
            return skel.run(plugin, env, source)
        except SystemExit as e:  # what the process would have exited with
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            return code, ""
    finally:
        router.route(None)
        try:
            stderr.close()
        except OSError:
            pass

