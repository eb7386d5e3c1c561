"""One lease file: which names can be leases, what one holds, reading one safely, and the
synced temporary files that become leases.

A lease file `<ip>` holds `<containerID>\\r\\n<ifname>`, mode 0600 (ipam/store.py describes the
whole directory). It is never visible half-written: its content goes to a temporary file in the
index directory, fdatasync'ed, which is then hard-linked to `<ip>` (`LeaseTemps`).
"""

from __future__ import annotations

import os
import stat

from cni import fileutil
from ipam.index import temp_path

LOCK_FILE = "lock"
LAST_RESERVED = "last_reserved_ip."
_LEASE_TMP = "lease"
_MAX_LEASE = 64 * 1024


def is_lease_name(name: str) -> bool:
    """True for a name that can be a lease file (not the lock, a last_reserved file or ours)."""
    return not (name == LOCK_FILE or name.startswith(LAST_RESERVED) or name.startswith("."))


def lease_content(container_id: str, ifname: str) -> bytes:
    """A lease file's content: `<ID trimmed>\\r\\n<ifname>`."""
    return f"{container_id.strip()}\r\n{ifname}".encode("utf-8", "surrogateescape")


def read_small(path: str, limit: int = _MAX_LEASE) -> bytes | None:
    """The content of the regular file at `path` (at most `limit` bytes), or None when it is
    missing, not a regular file, or unreadable. Never follows a symlink, never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


class LeaseTemps:
    """Synced temporary files in the index directory `root`, all holding one lease content,
    ready to be hard-linked as lease files (the last one is used first)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._spares: list[str] = []  # written, synced lease temp files ready to be linked
        self._content: bytes = b""  # ... all with this content

    def _write(self, content: bytes) -> str:
        """A new temp file holding `content`, fdatasync'ed. Its name carries the pid (for the
        dead-writer sweep) and a random part (a worker's threads share the pid, and temps are
        written before the lock)."""
        fileutil.ensure_dir(self.root, 0o700)
        path = f"{temp_path(self.root, _LEASE_TMP)}-{os.urandom(4).hex()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.write(fd, content)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except BaseException:
            os.unlink(path)
            raise
        return path

    def prewrite(self, content: bytes, count: int) -> None:
        """Write `count` temps holding `content` ahead (before the store lock is taken). Raises
        OSError, after removing the ones written."""
        try:
            for _ in range(count):
                self._spares.append(self._write(content))
        except OSError:
            self.drop()
            raise
        self._content = content

    def prepare(self, content: bytes) -> str:
        """The path of a temp holding `content` (one written ahead, else a new one)."""
        if self._spares and self._content == content:
            return self._spares[-1]
        self.drop()
        self._spares.append(self._write(content))
        self._content = content
        return self._spares[-1]

    def consume(self) -> None:
        """The temp `prepare` gave was linked as a lease: a fresh inode for every lease, so its
        temp name goes."""
        tmp = self._spares.pop()
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass

    def drop(self) -> None:
        """Remove every temp not used."""
        while self._spares:
            try:
                os.unlink(self._spares.pop())
            except FileNotFoundError:
                pass
