"""Helpers for the demo's "default path" step (scripts/demo.py): timed plugin calls made the way
a runtime makes them, and the warm workers those calls start.

Standard library only (the demo runs with the system python3). The calls are timed by one
small python3 process run inside the node namespace (`ip netns exec` once, so its cost is not
in any figure): it starts each plugin as a process, as a runtime does, and measures the wall
time and the CPU time of that process (wait4's rusage: the worker's share is not in it).

Workers are found by the worker directory they serve: a process whose environment names it
(PYCNI_WORKER_DIR) or that holds a file in it open. Only processes of this demo's own private
directory are ever ended.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
from pathlib import Path
from types import ModuleType


def _workers() -> ModuleType:
    """conformance/workers.py (standard library only), loaded from its file: the demo runs as a
    script with the system python3, where the repository is not importable."""
    path = Path(__file__).resolve().parents[1] / "conformance" / "workers.py"
    spec = importlib.util.spec_from_file_location("conformance_workers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_w = _workers()
accepting, alive, end = _w.accepting, _w.alive, _w.end

__all__ = ["accepting", "end_workers", "timed_calls", "workers_of"]

# Run inside the node namespace: argv[1] is a JSON list of calls {exe, env, stdin}; prints a
# JSON list of {rc, ms, cpu, stdout, stderr}.
TIMER = r"""
import json, os, sys, time
calls = json.loads(sys.argv[1])
out = []
for c in calls:
    r, w = os.pipe()
    o, e = os.memfd_create("out"), os.memfd_create("err")
    acts = [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, o, 1), (os.POSIX_SPAWN_DUP2, e, 2)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(c["exe"], [c["exe"]], c["env"], file_actions=acts)
    os.close(r)
    os.write(w, c["stdin"].encode())
    os.close(w)
    _, status, ru = os.wait4(pid, 0)
    ms = (time.perf_counter() - t0) * 1000
    texts = []
    for fd in (o, e):
        os.lseek(fd, 0, 0)
        texts.append(os.read(fd, 1 << 20).decode(errors="replace"))
        os.close(fd)
    out.append({"rc": os.waitstatus_to_exitcode(status), "ms": ms,
                "cpu": (ru.ru_utime + ru.ru_stime) * 1000, "stdout": texts[0], "stderr": texts[1]})
print(json.dumps(out))
"""


def timed_calls(netns_argv: list[str], python: str, calls: list[dict]) -> list[dict]:
    """Run `calls` ({exe, env, stdin}) one after the other inside the namespace that
    `netns_argv` (e.g. ["ip", "netns", "exec", NAME]) enters; each call's rc, ms, cpu, output."""
    proc = subprocess.run(
        [*netns_argv, python, "-c", TIMER, json.dumps(calls)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"timed calls failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def workers_of(directory: str | os.PathLike[str]) -> list[int]:
    """Pids of the processes serving `directory`: its name in their environment as
    PYCNI_WORKER_DIR, or a file of it open."""
    want = str(directory)
    env_mark = f"PYCNI_WORKER_DIR={want}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if env_mark in environ or _holds_file_in(entry, want):
            found.append(int(entry))
    return found


def _holds_file_in(pid: str, directory: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(directory + "/"):
                return True
        except OSError:
            continue
    return False


def end_workers(directory: str | os.PathLike[str], wait: float = 5.0) -> list[int]:
    """SIGTERM (then SIGKILL) every worker of `directory`; the pids that were running."""
    pids = workers_of(directory)
    end(pids, wait=wait)
    if any(alive(p) for p in pids):
        end(pids, signal.SIGKILL, wait=wait)
    return pids
