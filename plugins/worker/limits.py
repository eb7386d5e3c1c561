"""Every bound the worker applies (docs/worker-threat-model.md, "Bounds", lists them all)."""

from __future__ import annotations

import os

from plugins.worker import attachment

MAX_REQUEST = 256 * 1024  # bytes of one request datagram
MAX_FDS = 4  # stdin, stderr, the client's pidfd, an inherited attachment lock
RECV_SECONDS = 2.0  # from accept to a complete request
PENDING_MAX = 64  # accepted connections without a request yet
MAX_CALLS = 16  # call threads at once
QUEUE_MAX = 64  # received requests waiting for a call thread
QUEUE_SECONDS = 30.0  # how long one may wait there
MAX_STDIN = 4 * 1024 * 1024  # bytes of a call's stdin
STDIN_SECONDS = 30.0  # to read it (VERSION: VERSION_STDIN_SECONDS, as in-process)
VERSION_STDIN_SECONDS = 0.2
SEND_SECONDS = 5.0  # per reply datagram
LOCK_SECONDS = attachment.MAX_WAIT  # for another call of the attachment (PYCNI_WORKER_LOCK_WAIT)
DRAIN_SECONDS = 120.0  # calls in progress at exit
STALE_SECONDS = 5.0  # a resident idle worker checks its executable this often
LOG_PER_MINUTE = 60  # refusal lines in the worker log
LISTEN_BACKLOG = 256  # as the socket unit's Backlog=

# The limits an operator may set through the worker's environment, with their defaults.
IDLE_DEFAULT = 30.0  # PYCNI_WORKER_IDLE: seconds without a call before a burst worker leaves
MAX_SERVED_DEFAULT = 10000  # PYCNI_WORKER_MAX: calls before a worker leaves
MAX_AGE_DEFAULT = 600.0  # PYCNI_WORKER_MAX_AGE: seconds a burst worker lives


def number(name: str, default: float) -> float:
    """A positive number from the environment variable `name`, else `default`."""
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default
