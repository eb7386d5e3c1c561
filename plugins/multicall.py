"""One entry point for every executable of the suite, chosen by the name it was started as.

The built suite is one executable behind hard links (`bridge`, `host-local`, ...), so "is this
delegate one of ours?" is an exact inode comparison with the executable that started this process.

This module is on every call's path, so it imports os and sys only; each way a call can go
imports what it needs where `main` takes it: a worker process (plugins/worker/startup.py), a
call handed to a worker (plugins/worker/client.py), a call run in-process (plugins/inprocess.py).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself is not imported: this module is on every call's path
if TYPE_CHECKING:
    from collections.abc import Mapping

    from cni.skel import Plugin

# executable name -> module holding `main()` (cnitool) or else `PLUGIN` (a cni.skel.Plugin,
# run by cni.skel.main)
ENTRY_POINTS: dict[str, str] = {
    "loopback": "plugins.loopback",
    "bridge": "plugins.bridge",
    "flannel": "plugins.flannel",
    "portmap": "plugins.portmap",
    "host-local": "ipam.host_local",
    "cnitool": "plugins.cnitool_main",
}
# the entry points a worker serves (cnitool is a tool, not a plugin)
SERVED = frozenset(name for name in ENTRY_POINTS if name != "cnitool")

_self_id: tuple[int, int] | None = None
_self_stat: os.stat_result | None = None


def set_self(path: str) -> None:
    """Record the file this process was started from, and register the in-process runner with
    `cni.invoke`, so a delegate that is this very file runs in this interpreter."""
    _record_self(path)
    # Only a process that runs calls itself (a library user, a test) pays for cni.invoke.
    from plugins import inprocess

    inprocess.register(runs_here, plugin_for)


def _record_self(path: str) -> None:
    global _self_id, _self_stat
    try:
        st = os.stat(path)
    except OSError:
        _self_id = _self_stat = None
        return
    _self_id = (st.st_dev, st.st_ino)
    _self_stat = st


def runs_here(path: str) -> bool:
    """True when the delegate at `path` is one of our entry points and this very file: it runs
    in this interpreter, and being ours, a failed ADD of it has undone what it made."""
    return os.path.basename(path) in ENTRY_POINTS and is_self(path)


def is_self(path: str) -> bool:
    """True when `path` is the very file (same device and inode) this process was started from."""
    if _self_id is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == _self_id


def plugin_for(name: str) -> Plugin:
    """The cni.skel.Plugin of entry point `name`, importing only that module."""
    # __import__ (a builtin) rather than importlib, which this module does not import
    return __import__(ENTRY_POINTS[name], fromlist=["PLUGIN"]).PLUGIN


# PYCNI_WORKER values that switch the warm worker off (it is on when the variable is unset)
_WORKER_OFF = ("0", "false", "no", "off")
# Calls a worker serves; anything else (no or an unknown CNI_COMMAND: an error or the about
# text) is answered in-process and never starts a worker.
_WORKER_COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")


def worker_enabled(env: Mapping[str, str]) -> bool:
    """True unless PYCNI_WORKER is one of 0, false, no, off (any case): the warm worker is the
    default way a plugin call runs (docs/performance.md, "Warm worker")."""
    return env.get("PYCNI_WORKER", "1").strip().lower() not in _WORKER_OFF


def _serve_as_worker(serve_path: str, self_path: str) -> None:
    """This process is a worker (PYCNI_WORKER_SERVE): serve until done, then exit."""
    # The worker's modules, imported here only: no plugin call pays for them.
    from plugins.worker import spawn

    if os.environ.pop("PYCNI_WORKER_SPAWNED", None) == "1":
        spawn.spawned_worker_setup(serve_path)  # at SPAWN_NICE before the imports below
    from plugins import inprocess
    from plugins.worker import startup

    inprocess.register(runs_here, plugin_for)
    startup.serve(serve_path, self_path, plugin_for, SERVED)


def main(argv0: str | None = None) -> None:
    """Dispatch on the basename of argv[0] (or `argv0`) to that entry point's main."""
    exe = argv0 or sys.argv[0]
    name = os.path.basename(exe)
    self_path = sys.executable if getattr(sys, "frozen", False) else os.path.abspath(exe)
    _record_self(self_path)
    env = os.environ
    serve_path = env.get("PYCNI_WORKER_SERVE")
    if serve_path:
        _serve_as_worker(serve_path, self_path)
    modname = ENTRY_POINTS.get(name)
    if modname is None:
        sys.stderr.write(
            f"{name}: unknown entry point; link this file as one of: "
            f"{', '.join(sorted(ENTRY_POINTS))}\n"
        )
        sys.exit(2)
    if (
        name in SERVED
        and _self_stat is not None
        and env.get("CNI_COMMAND") in _WORKER_COMMANDS
        and worker_enabled(env)
    ):
        # The client of the warm worker: os, _socket and two small modules of its own.
        from plugins.worker import client as worker_client
        from plugins.worker.protocol import build_id

        rc = worker_client.call(name, self_path, build_id(_self_stat), env)
        if rc is not None:
            os._exit(rc)
    # A call run in-process: cni.skel, cni.invoke and the attachment lock, then the plugin.
    from plugins import inprocess

    inprocess.main(modname, runs_here, plugin_for)
