"""A call this process runs itself (no worker served it): the attachment lock around ADD,
CHECK and DEL, and our own delegates run in this interpreter.

Imported by the entry point (plugins/multicall.py) only when the call runs in-process, and by a
worker at start, so that a call a worker serves never pays for cni.invoke or the attachment lock.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping

from cni import invoke, skel
from cni.errors import ERR_TRY_AGAIN_LATER, CNIError
from plugins.worker import attachment, directory
from plugins.worker.protocol import worker_dir


def register(runs_here: Callable[[str], bool], plugin_for: Callable[[str], skel.Plugin]) -> None:
    """What a call run in this interpreter needs from cni.invoke: a delegate for which
    `runs_here(path)` holds runs in-process (as `plugin_for(its name)`), and the held attachment
    lock is passed to the delegates executed."""

    def run_local(path: str, env: Mapping[str, str], stdin: bytes) -> tuple[int, str] | None:
        if not runs_here(path):
            return None
        return skel.run(plugin_for(os.path.basename(path)), env, stdin)

    invoke.set_local_runner(run_local)
    invoke.set_exec_extras(attachment.exec_extras)


def locked(plugin: skel.Plugin) -> skel.Plugin:
    """`plugin` with its ADD, CHECK and DEL callbacks run under the attachment lock
    (plugins/worker/attachment.py), for a call this process runs itself: the same lock a worker
    takes, so calls of one attachment never overlap whichever way each of them runs."""

    def wrap(callback: skel.Callback | None) -> skel.Callback | None:
        if callback is None:
            return None

        def run(args: skel.CmdArgs) -> object:
            held = hold_attachment(args.env)
            try:
                return callback(args)
            finally:
                if held is not None:
                    held.release()

        return run

    return plugin.replacing(("ADD", "DEL", "CHECK"), wrap)


def hold_attachment(env: Mapping[str, str]) -> attachment.Held | None:
    """The attachment lock of this in-process call, or None when the worker directory is
    missing or refused (then no worker can be serving it either).
    Presents the lock the caller's ancestry passed down instead of waiting for it. Raises
    CNIError 11 when the lock is not had within attachment.max_wait(env) seconds (another call
    of the attachment still running, or a lock file that is not root's regular file)."""
    # Not created here: without the directory no worker can be running a call to wait for.
    dirfd = directory.open_worker_dir(worker_dir(env), create=False)
    if dirfd is None:
        return None
    try:
        held = attachment.acquire(dirfd, env, attachment.max_wait(env), attachment.presented(env))
    finally:
        os.close(dirfd)
    if held is None:
        raise CNIError(
            ERR_TRY_AGAIN_LATER,
            f"could not lock the attachment of container {env.get('CNI_CONTAINERID', '')} "
            f"interface {env.get('CNI_IFNAME', '')} (another call of it still running?); "
            "try again later",
        )
    return held


def main(
    module_name: str, runs_here: Callable[[str], bool], plugin_for: Callable[[str], skel.Plugin]
) -> None:
    """Run the entry point `module_name` in this process (`register` first): its `main()`
    (cnitool), else its PLUGIN under the attachment lock through cni.skel.main."""
    register(runs_here, plugin_for)
    module = importlib.import_module(module_name)
    if hasattr(module, "main"):
        module.main()
    else:
        skel.main(locked(module.PLUGIN))
