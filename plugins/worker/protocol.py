"""What a worker and its clients agree on: names, the request datagram, the build id.

Shared by the client (plugins/worker/client.py), the server side (plugins/worker/server.py and
the modules it uses) and the attachment lock (plugins/worker/attachment.py). Imports `os` only:
the client imports this module on every call.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself is not imported: it would cost the client a millisecond
if TYPE_CHECKING:
    from collections.abc import Mapping

MAGIC = b"PYCNI-W1"
DEFAULT_DIR = "/run/pycni"
RESIDENT_SOCKET = "pycni.sock"
# getsockopt option of Linux >= 6.5 (Python 3.11 lacks the constant): a pidfd of the peer.
SO_PEERPIDFD = 77
# The variable naming, in an executed delegate, the descriptor of its caller's attachment lock
# (plugins/worker/attachment.py).
ATTACHMENT_FD_VAR = "PYCNI_ATTACHMENT_FD"

# What a worker and its client must agree on besides the build (contract 5): the variables the
# plugins and the tools they start (iptables, nft, conntrack, ip) read from the process
# environment. A worker runs each call with the call's own environment (cni.skel.run gets it, and
# executed delegates get it), but the tools run with the worker's: their lookup (PATH), loader,
# locale, time zone, temporary directory and xtables settings. Everything else (HOME, a runtime's
# own variables, PYCNI_* knobs, CNI_* per call) may differ, so a resident worker started by
# systemd serves a runtime's calls.
_MATCHED = frozenset(
    ("PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "LANG", "LANGUAGE", "TZ", "TMPDIR",
     "XTABLES_LIBDIR", "XTABLES_LOCKFILE", "IPTABLES_LIB_DIR", "IP6TABLES_LIB_DIR")
)
_MATCHED_PREFIX = ("LC_",)


def stable_env(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables of `env` a worker must share with its client (see _MATCHED), sorted."""
    return sorted((k, v) for k, v in env.items() if k in _MATCHED or k.startswith(_MATCHED_PREFIX))


def build_id(st: os.stat_result) -> str:
    """The build id of an executable from its stat: device, inode, size and mtime. A worker
    serves only clients started from the very file it was started from."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def fnv1a64(data: bytes) -> int:
    """The 64-bit FNV-1a hash of `data` (names of sockets and attachment lock stripes)."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def worker_count(env: Mapping[str, str]) -> int:
    """How many workers may share the calls (PYCNI_WORKER_PROCS, default: CPUs, at most 4): the
    plugins' Python work is bound to one core per worker, and a burst of pods wants them all."""
    try:
        n = int(env.get("PYCNI_WORKER_PROCS", "") or 0)
    except ValueError:
        n = 0
    if n <= 0:
        n = min(os.cpu_count() or 1, 4)
    return min(n, 64)


def worker_dir(env: Mapping[str, str]) -> str:
    """The worker directory: PYCNI_WORKER_DIR, default /run/pycni (refused unless absolute)."""
    return env.get("PYCNI_WORKER_DIR") or DEFAULT_DIR


def socket_name(build_id: str, env: Mapping[str, str], index: int) -> str:
    """The socket of worker `index` for this build, user and environment (see stable_env)."""
    text = "\0".join([build_id, str(os.geteuid())] + [f"{k}={v}" for k, v in stable_env(env)])
    return f"w-{fnv1a64(text.encode('utf-8', 'surrogateescape')):016x}-{index}.sock"


def encode_request(name: str, build_id: str, env: Mapping[str, str]) -> bytes:
    """MAGIC, name, build id, then every KEY=VALUE of `env`, NUL-separated."""
    fields = [MAGIC, name.encode(), build_id.encode()]
    fields += [f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in env.items()]
    return b"\0".join(fields)


def decode_request(
    msg: bytes, names: frozenset[str]
) -> tuple[str, str, dict[str, str]] | str:
    """(name, build id, environment) of a request datagram whose name is one of `names`, or
    why it is malformed (the descriptors are checked by the server)."""
    parts = msg.split(b"\0")
    if len(parts) < 3 or parts[0] != MAGIC:
        return "bad magic"
    try:
        name = parts[1].decode("ascii")
        bid = parts[2].decode("ascii")
    except UnicodeDecodeError:
        return "name or build id not ASCII"
    if name not in names:
        return "unknown entry point"
    env: dict[str, str] = {}
    for item in parts[3:]:
        key, sep, value = item.decode("utf-8", "surrogateescape").partition("=")
        if not sep or not key or key in env:
            return "malformed environment"
        env[key] = value
    return name, bid, env


def presented_lock(env: Mapping[str, str]) -> int | None:
    """The descriptor PYCNI_ATTACHMENT_FD names when it is open in this process and above 2,
    else None. What it refers to is checked by whoever acquires the lock, not trusted here."""
    value = env.get(ATTACHMENT_FD_VAR, "")
    if not value.isdigit() or len(value) > 7 or int(value) <= 2:
        return None
    try:
        os.fstat(int(value))
    except OSError:
        return None
    return int(value)


def read_at(dirfd: int, name: str) -> bytes:
    """The first 64 KiB of the file `name` relative to the directory descriptor `dirfd` (a
    /proc/<pid> descriptor: reads fail once that process is gone)."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)
