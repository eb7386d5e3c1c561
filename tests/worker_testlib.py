"""Driving one warm worker (plugins/worker/server.py) straight through its wire protocol.

A worker is started as the built executable with PYCNI_WORKER_SERVE, in a private worker
directory (0700, root's, under /tmp); requests are datagrams built like the client builds them.
`Served` ends its worker (by pid) and removes the directory, also when the test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from conformance import harness
from conformance.workers import alive, end

DIST = harness.REPO_ROOT / "dist" / "bin"
SOCK = "w-test.sock"


def build_id() -> str:
    """The build id a client of dist/bin sends."""
    from plugins.worker.protocol import build_id as of

    return of(os.stat(DIST / "bridge"))


def threads(pid: int) -> int:
    """How many threads process `pid` has."""
    return len(os.listdir(f"/proc/{pid}/task"))


def descriptors(pid: int) -> int:
    """How many descriptors process `pid` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class Served:
    """One worker of dist/bin serving `<dir>/w-test.sock` (use as a context manager)."""

    def __init__(self, directory: Path | None = None, **env: str) -> None:
        self.dir = directory or Path(tempfile.mkdtemp(prefix="pws-", dir="/tmp"))
        self.sock = self.dir / SOCK
        self.log = self.dir / "log"
        self.env = {
            "PATH": harness.SAFE_PATH,
            "PYCNI_WORKER_LOG": str(self.log),
            "PYCNI_WORKER_IDLE": "60",
            **env,
        }
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True, timeout: float = 20.0) -> Served:
        """Start the worker; with `wait`, return once it accepts connections."""
        self.proc = subprocess.Popen(
            [str(DIST / "bridge")], env={**self.env, "PYCNI_WORKER_SERVE": str(self.sock)},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if wait:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"worker exited with {self.proc.returncode}")
                if self.accepting():
                    return self
                time.sleep(0.05)
            raise AssertionError("worker never listened")
        return self

    @property
    def pid(self) -> int:
        """The worker's pid."""
        assert self.proc is not None
        return self.proc.pid

    def accepting(self) -> bool:
        """True when a connection to the socket succeeds."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(str(self.sock))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def call_env(self, command: str = "VERSION", **cni: str) -> dict[str, str]:
        """A request environment this worker accepts: its own plus the CNI_* variables."""
        return {**self.env, "CNI_COMMAND": command, "CNI_PATH": str(DIST), **cni}

    def connect(self) -> socket.socket:
        """A connection to the worker."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(str(self.sock))
        return s

    def logged(self) -> str:
        """The worker log so far."""
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        """End the worker (SIGTERM, then SIGKILL) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            end([self.proc.pid])
            if alive(self.proc.pid):
                end([self.proc.pid], signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def request(env: dict[str, str], name: str = "bridge", bid: str | None = None) -> bytes:
    """A request datagram as the client builds it."""
    from plugins.worker.protocol import encode_request

    return encode_request(name, bid if bid is not None else build_id(), env)


def send(s: socket.socket, data: bytes, fds: list[int]) -> None:
    """Send one datagram with `fds` attached."""
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, "little") for fd in fds))]
    s.sendmsg([data], anc if fds else [])


def replies(s: socket.socket, timeout: float = 30.0) -> list[bytes]:
    """Every datagram the worker sends until it closes the connection or sends X."""
    s.settimeout(timeout)
    out = []
    while True:
        msg = s.recv(1 << 20)
        if not msg:
            return out
        out.append(msg)
        if msg[:1] in (b"X", b"R"):
            return out


def call(served: Served, stdin: bytes, env: dict[str, str], timeout: float = 30.0) -> list[bytes]:
    """One well-formed call (stdin from a pipe, stderr /dev/null, our own pidfd): the replies."""
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    pidfd = os.pidfd_open(os.getpid())
    try:
        os.write(w, stdin)
        os.close(w)
        w = -1
        with served.connect() as s:
            send(s, request(env), [r, null, pidfd])
            return replies(s, timeout)
    finally:
        for fd in (r, w, null, pidfd):
            if fd >= 0:
                os.close(fd)


def caller_argv(sock: Path, env: dict[str, str], name: str = "bridge", stdin: str = "",
                pidfd: bool = False, lock: str | None = None, bid: str | None = None) -> list[str]:
    """argv of a separate process making one call (see `_main`): it prints the replies as JSON.
    `pidfd`: send its own pidfd as the 3rd descriptor (the worker needs it only on kernels
    without SO_PEERPIDFD; leaving it out keeps the request one the worker before pinning took).
    `lock`: a file whose lock the process takes (flock on its own open description) and presents
    as the 4th descriptor; "other:<path>": a file presented without locking it."""
    import json
    import sys

    spec = {"sock": str(sock), "env": env, "name": name, "stdin": stdin, "pidfd": pidfd,
            "lock": lock, "bid": bid if bid is not None else build_id()}
    return [sys.executable, __file__, json.dumps(spec)]


def caller_env() -> dict[str, str]:
    """The environment for `caller_argv` processes (the repository importable)."""
    return {"PATH": harness.SAFE_PATH, "PYTHONPATH": str(harness.REPO_ROOT)}


def _main(spec_text: str) -> None:
    import fcntl
    import json

    spec = json.loads(spec_text)
    r, w = os.pipe()
    os.write(w, spec["stdin"].encode())
    os.close(w)
    fds = [r, os.open(os.devnull, os.O_WRONLY)]
    if spec["pidfd"] or spec["lock"] is not None:  # a lock is the 4th descriptor
        fds.append(os.pidfd_open(os.getpid()))
    lock = spec["lock"]
    if lock is not None:
        other = lock.startswith("other:")
        fd = os.open(lock.removeprefix("other:"), os.O_RDWR | os.O_CREAT, 0o600)
        if not other:
            fcntl.flock(fd, fcntl.LOCK_EX)
        fds.append(fd)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(spec["sock"])
    send(s, request(spec["env"], spec["name"], spec["bid"]), fds)
    try:
        out = [m.decode("utf-8", "replace") for m in replies(s, 30)]
    except OSError as e:
        out = [f"error: {e}"]
    print(json.dumps(out))


if __name__ == "__main__":
    import sys

    _main(sys.argv[1])
