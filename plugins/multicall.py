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
    _record_self(path)
    _register_in_process()


def _register_in_process() -> None:
    """What a call run in this interpreter needs from cni.invoke: our delegates in-process, and
    the held attachment lock passed to the ones executed. Not done for a call a worker serves."""
    from cni import invoke
    from plugins.worker import attachment

    invoke.set_local_runner(run_local)
    invoke.set_exec_extras(attachment.exec_extras)


def _record_self(path: str) -> None:
    global _self_id, _self_stat
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


def locked(plugin):
    """`plugin` with its ADD, CHECK and DEL callbacks run under the attachment lock
    (plugins/worker/attachment.py), for a call this process runs itself: the same lock a worker
    takes, so calls of one attachment never overlap whichever way each of them runs."""
    from cni.skel import Plugin

    def wrap(callback):
        if callback is None:
            return None

        def run(args):
            held = hold_attachment(args.env)
            try:
                return callback(args)
            finally:
                if held is not None:
                    held.release()

        return run

    return Plugin(
        add=wrap(plugin.add), delete=wrap(plugin.delete), check=wrap(plugin.check),
        status=plugin.status, gc=plugin.gc, versions=plugin.versions, about=plugin.about,
    )


def hold_attachment(env):
    """The attachment lock of this in-process call (an attachment.Held), or None when the worker
    directory is missing or refused (then no worker can be serving it either).
    Presents the lock the caller's ancestry passed down instead of waiting for it. Raises
    CNIError 11 when the lock is not had within attachment.max_wait(env) seconds (another call
    of the attachment still running, or a lock file that is not root's regular file)."""
    from plugins.worker import attachment, directory
    from plugins.worker.client import worker_dir

    # Not created here: without the directory no worker can be running a call to wait for.
    dirfd = directory.open_worker_dir(worker_dir(env), create=False)
    if dirfd is None:
        return None
    try:
        held = attachment.acquire(dirfd, env, attachment.max_wait(env), attachment.presented(env))
    finally:
        os.close(dirfd)
    if held is None:
        from cni.errors import ERR_TRY_AGAIN_LATER, CNIError

        raise CNIError(
            ERR_TRY_AGAIN_LATER,
            f"could not lock the attachment of container {env.get('CNI_CONTAINERID', '')} "
            f"interface {env.get('CNI_IFNAME', '')} (another call of it still running?); "
            "try again later",
        )
    return held


# PYCNI_WORKER values that switch the warm worker off (it is on when the variable is unset)
_WORKER_OFF = ("0", "false", "no", "off")
# Calls a worker serves; anything else (no or an unknown CNI_COMMAND: an error or the about
# text) is answered in-process and never starts a worker.
_WORKER_COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")


def worker_enabled(env) -> bool:
    """True unless PYCNI_WORKER is one of 0, false, no, off (any case): the warm worker is the
    default way a plugin call runs (docs/performance.md, "Warm worker")."""
    return env.get("PYCNI_WORKER", "1").strip().lower() not in _WORKER_OFF


def spawned_worker_setup(serve_path: str) -> None:
    """A worker a call started (plugins/worker/client.py spawn_worker) begins at niceness
    SPAWN_NICE, so that its start-up does not slow the call that started it; once it listens on
    `serve_path`, a thread puts the main thread (and so every request thread it starts later)
    back to 0. (Working directory and OOM score: the server resets them for every worker.)"""
    from plugins.worker.client import SPAWN_NICE

    try:
        os.setpriority(os.PRIO_PROCESS, 0, SPAWN_NICE)
    except OSError:
        return
    import threading

    threading.Thread(target=_renice_when_listening, args=(serve_path,), daemon=True).start()


def _renice_when_listening(serve_path: str, timeout: float = 60.0) -> None:
    """Set the main thread's niceness back to 0 once a new socket file is at `serve_path`."""
    import stat
    import time

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


def main(argv0: str | None = None) -> None:
    """Dispatch on the basename of argv[0] (or `argv0`) to that entry point's main."""
    exe = argv0 or sys.argv[0]
    name = os.path.basename(exe)
    self_path = sys.executable if getattr(sys, "frozen", False) else os.path.abspath(exe)
    _record_self(self_path)
    env = os.environ
    serve_path = env.get("PYCNI_WORKER_SERVE")
    if serve_path:
        _register_in_process()
        if env.pop("PYCNI_WORKER_SPAWNED", None) == "1":
            spawned_worker_setup(serve_path)
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
    _register_in_process()
    import importlib

    module = importlib.import_module(modname)
    if hasattr(module, "main"):
        module.main()
    else:
        from cni.skel import main as skel_main

        skel_main(locked(module.PLUGIN))
