"""Whom a worker serves: a pinned caller exactly as privileged as the worker, of its build.

`Identity` is what the worker is (its build id, the environment its tools read, its pid and
user namespaces, capability sets, no_new_privs, seccomp mode and LSM label), taken once at
start; `Identity.refusal` compares a caller pinned by plugins/worker/peer.py with it, so no
caller gains a privilege it does not have. `Identity.is_stale` says when the worker is no longer
the build it was started as (its executable replaced or, from source, a loaded module changed).
"""

from __future__ import annotations

import os
import sys
import time

from plugins.worker import peer
from plugins.worker.protocol import build_id, stable_env
from plugins.worker.request import Request


def build_id_of(path: str) -> str:
    """The build id a client sends: the identity (device, inode, size, mtime) of its executable."""
    return build_id(os.stat(path))


def ns_id(ns: str) -> tuple[int, int]:
    """(device, inode) of this process's namespace `ns`."""
    st = os.stat(f"/proc/self/ns/{ns}")
    return (st.st_dev, st.st_ino)


class Identity:
    """The worker's own identity, and the callers and builds that match it."""

    def __init__(self, self_path: str) -> None:
        self.self_path = self_path
        self.build_id = build_id_of(self_path)
        self.env = stable_env(os.environ)
        self.own_ns = {ns: ns_id(ns) for ns in ("pid", "user")}
        self.own_mnt = ns_id("mnt")
        self._own_privileges = peer.privileges(peer.own_status())
        self._own_label = peer.own_label()
        self._module_files: dict[str, int] = {}
        self.stale = False
        self.checked = time.monotonic()

    def record_modules(self) -> None:
        """Remember the modification time of every loaded module's file (from source only:
        a frozen build's modules change only with its executable)."""
        if getattr(sys, "frozen", False):
            return
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if f:
                try:
                    self._module_files[f] = os.stat(f).st_mtime_ns
                except OSError:
                    pass

    def is_stale(self) -> bool:
        """True once the executable was replaced or (from source) a loaded module changed."""
        if self.stale:
            return True
        self.checked = time.monotonic()
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
        """Why this worker must not run the pinned caller's call, or None. Staleness is the
        worker's to check after this (it unlinks its socket then)."""
        if caller.uid != os.geteuid():
            return f"uid {caller.uid}"
        euid = caller.status.get("Uid", "").split()[1:2]
        if euid != [str(os.geteuid())]:
            return "effective uid changed"
        if req.build_id != self.build_id:
            return "another build"
        if stable_env(req.env) != self.env:
            return "another environment"
        for ns, own in self.own_ns.items():
            if caller.ns_id(ns) != own:
                return f"another {ns} namespace"
        if peer.privileges(caller.status) != self._own_privileges:
            return "other privileges"
        if caller.label != self._own_label:
            return "another security label"
        return None
