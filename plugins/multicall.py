"""One entry point for every executable of the suite, chosen by the name it was started as.

The built suite is one executable behind hard links (`bridge`, `host-local`, ...), so "is this
delegate one of ours?" is an exact inode comparison with the executable that started this process.
"""

from __future__ import annotations

import os
import sys

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

_self_id: tuple[int, int] | None = None
_self_stat: os.stat_result | None = None


def set_self(path: str) -> None:
    """Record the file this process was started from, and register `run_local` with
    `cni.invoke`, so a delegate that is this very file runs in this interpreter."""
    global _self_id, _self_stat
    from cni import invoke

    invoke.set_local_runner(run_local)
    try:
        st = os.stat(path)
    except OSError:
        _self_id = _self_stat = None
        return
    _self_id = (st.st_dev, st.st_ino)
    _self_stat = st


def run_local(path: str, env, stdin: bytes) -> tuple[int, str] | None:
    """Run the delegate at `path` in this interpreter when it is one of our entry points and
    the very file this process started from: (exit status, stdout); None otherwise."""
    if not runs_here(path):
        return None
    from cni.skel import run

    return run(plugin_for(os.path.basename(path)), env, stdin)


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


def plugin_for(name: str):
    """The cni.skel.Plugin of entry point `name`, importing only that module."""
    import importlib

    module = importlib.import_module(ENTRY_POINTS[name])
    return module.PLUGIN


# PYCNI_WORKER values that switch the warm worker off (it is on when the variable is unset)
_WORKER_OFF = ("0", "false", "no", "off")
# Calls a worker serves; anything else (no or an unknown CNI_COMMAND: an error or the about
# text) is answered in-process and never starts a worker.
_WORKER_COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")


def worker_enabled(env) -> bool:
    """True unless PYCNI_WORKER is one of 0, false, no, off (any case): the warm worker is the
    default way a plugin call runs (docs/performance.md, "Warm worker")."""
    return env.get("PYCNI_WORKER", "1").strip().lower() not in _WORKER_OFF


def main(argv0: str | None = None) -> None:
    """Dispatch on the basename of argv[0] (or `argv0`) to that entry point's main."""
    exe = argv0 or sys.argv[0]
    name = os.path.basename(exe)
    self_path = sys.executable if getattr(sys, "frozen", False) else os.path.abspath(exe)
    set_self(self_path)
    env = os.environ
    serve_path = env.get("PYCNI_WORKER_SERVE")
    if serve_path:
        from plugins.worker import server as worker

        worker.serve(serve_path, self_path)
    modname = ENTRY_POINTS.get(name)
    if modname is None:
        sys.stderr.write(
            f"{name}: unknown entry point; link this file as one of: {', '.join(sorted(ENTRY_POINTS))}\n"
        )
        sys.exit(2)
    if (
        name != "cnitool"
        and _self_stat is not None
        and env.get("CNI_COMMAND") in _WORKER_COMMANDS
        and worker_enabled(env)
    ):
        from plugins.worker import client as worker_client

        rc = worker_client.call(name, self_path, worker_client.build_id(_self_stat), env)
        if rc is not None:
            os._exit(rc)
    import importlib

    module = importlib.import_module(modname)
    if hasattr(module, "main"):
        module.main()
    else:
        from cni.skel import main as skel_main

        skel_main(module.PLUGIN)
