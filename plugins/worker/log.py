"""The worker log: refusals and failures, rate-limited so that a prober cannot fill the disk."""

from __future__ import annotations

import os
import time
import traceback

from plugins.worker.limits import LOG_PER_MINUTE


def open_log() -> int:
    """The worker log, opened once (a call thread that joined a caller's mount namespace
    resolves no path): PYCNI_WORKER_LOG appended to, else the worker's stderr."""
    path = os.environ.get("PYCNI_WORKER_LOG")
    if path:
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            pass
    return 2


class WorkerLog:
    """Lines to the worker log (PYCNI_WORKER_LOG when set, else the worker's own stderr: the
    journal under systemd)."""

    def __init__(self) -> None:
        self._fd = open_log()
        self._budget = (time.monotonic(), 0)

    def line(self, text: str) -> None:
        """One line to the log; at most LOG_PER_MINUTE lines a minute."""
        start, count = self._budget
        now = time.monotonic()
        if now - start >= 60:
            start, count = now, 0
        self._budget = (start, count + 1)
        if count > LOG_PER_MINUTE:
            return
        if count == LOG_PER_MINUTE:
            text = "further lines this minute not logged"
        self._write(f"{_prefix()}: {text}\n")

    def exception(self) -> None:
        """Append the current exception's traceback to the log."""
        self._write(f"{_prefix()}\n" + traceback.format_exc())

    def _write(self, text: str) -> None:
        try:
            os.write(self._fd, text.encode("utf-8", "backslashreplace"))
        except OSError:
            pass


def _prefix() -> str:
    return f"pycni worker {os.getpid()}: {time.strftime('%Y-%m-%d %H:%M:%S')}"
