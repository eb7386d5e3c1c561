"""The warm workers a test run or the benchmark started in its own worker directory: find them
(each worker writes its pid into its socket's `.lock` file), wait until one accepts calls, and
end them."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_pids(wdir: str | os.PathLike[str] | None) -> list[int]:
    """Pids of the live workers whose lock files are in `wdir` (a lock file a starting worker
    has not written yet holds no pid and is skipped)."""
    pids = []
    for lock in Path(wdir).glob("*.lock") if wdir else ():
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid > 0 and alive(pid):
            pids.append(pid)
    return pids


def end(pids: list[int], sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
    """Send `sig` to each of `pids` and wait up to `wait` seconds for them to be gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def stop_workers(wdir: str | os.PathLike[str] | None) -> None:
    """End the workers of `wdir` and wait for them."""
    end(worker_pids(wdir))


def accepting(wdir: str | os.PathLike[str]) -> bool:
    """True when a worker accepts on one of the sockets of `wdir` (a killed worker's socket file
    stays behind and refuses; a starting worker has written its pid before it listens)."""
    for path in Path(wdir).glob("*.sock"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(str(path))
            return True
        except OSError:
            pass
        finally:
            s.close()
    return False


def wait_accepting(wdir: str | os.PathLike[str], timeout: float = 20.0) -> None:
    """Until a worker of `wdir` accepts calls; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker_pids(wdir) and accepting(wdir):
            return
        time.sleep(0.05)
    raise AssertionError(f"no worker listening in {wdir}")
