"""Guards for processes that run generated inputs: prove isolation before touching anything,
keep every path a case can name inside the run's temporary tree, bound memory.

The fuzz runner runs inside a test node namespace (`ip netns exec`, which also gives it a
private mount namespace). Before its first case it checks both namespaces differ from pid 1's,
then mounts a tmpfs over /var/lib in its own mount namespace, so a configuration that falls back
to a default state path (/var/lib/cni/...) writes into that tmpfs, never onto the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Paths a case may name outside its tree: reading them is harmless, writing below them fails.
READ_ONLY_SPECIALS = ("/dev/null", "/dev/zero", "/proc/self/status")
DEFAULT_STATE_ROOT = "/var/lib"
CLONE_NEWNET = 0x40000000
_NS_GET_NSTYPE = 0xB703


class IsolationError(RuntimeError):
    """This process is not where generated inputs may be run."""


def ns_id(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of a namespace file: equal ids mean the same namespace."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def check_isolated(outer_pid: int) -> None:
    """Raise IsolationError unless this process's network AND mount namespaces differ from
    those of `outer_pid` (the test process, which runs in the machine's root namespaces) and,
    where readable, from pid 1's."""
    for pid in (outer_pid, 1):
        for kind in ("net", "mnt"):
            try:
                theirs = ns_id(f"/proc/{pid}/ns/{kind}")
            except PermissionError:
                if pid == 1:
                    continue  # pid 1 may be out of reach (no CAP_SYS_PTRACE); the outer pid is not
                raise
            if ns_id(f"/proc/self/ns/{kind}") == theirs:
                raise IsolationError(
                    f"refusing to run: this process shares pid {pid}'s {kind} namespace"
                )


def private_default_state(outer_pid: int) -> str:
    """Mount a private tmpfs over /var/lib (after check_isolated) and return its path.

    The mount namespace is first made recursively private, so nothing propagates back.
    """
    check_isolated(outer_pid)
    for argv in (
        ["mount", "--make-rprivate", "/"],
        ["mount", "-t", "tmpfs", "-o", "size=256m,mode=0755", "pycni-fuzz", DEFAULT_STATE_ROOT],
    ):
        subprocess.run(argv, check=True, capture_output=True, env={"PATH": SAFE_PATH}, timeout=30)
    return DEFAULT_STATE_ROOT


def limit_memory(limit: int = 2 << 30) -> None:
    """Cap this process's (and its children's) address space, so a case that reads an endless
    file (/dev/zero) fails with MemoryError instead of waking the OOM killer."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def is_foreign_netns(path: str, allowed: set[tuple[int, int]]) -> bool:
    """True when `path` opens as a *network* namespace other than the `allowed` ones (the
    root one, another test run's): such a CNI_NETNS must never reach a plugin."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError):
        return False  # cannot be opened, so cannot be entered either
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in allowed:
            return False
        try:
            return fcntl.ioctl(fd, _NS_GET_NSTYPE) == CLONE_NEWNET
        except OSError:
            return False  # not a namespace file at all
    finally:
        os.close(fd)


def contain_path(value: str, cwd: str, root: str) -> str:
    """`value` when it resolves (relative to `cwd`) inside `root` or is a read-only special;
    otherwise the same path re-rooted under `root`, so no case can name a real system path."""
    if "\x00" in value:
        return value  # cannot name any file: the plugin must refuse it
    if value in READ_ONLY_SPECIALS or value == "":
        return value
    resolved = os.path.normpath(os.path.join(cwd, value))
    real_root = os.path.normpath(root)
    if resolved == real_root or resolved.startswith(real_root + os.sep):
        return value
    return os.path.join(real_root, "rerooted", value.lstrip("/").replace("..", "up"))
