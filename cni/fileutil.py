"""Crash-safe state files: atomic replace (temp file, fsync, rename, fsync dir) and reading.

A reader of a path written here sees either the old content or the complete new content, never
a truncated file, also across a power loss. Temporary files are named ``.<name>.tmp-<pid>-<hex>``
in the target's directory: they start with a dot, so they can never be mistaken for a container
ID or network name (those start with a letter or digit).
"""

from __future__ import annotations

import errno
import os
import stat

TMP_MARK = ".tmp-"


PATH_MAX = 4096


def ensure_dir(path: str, mode: int = 0o700) -> None:
    """Create `path` and missing parents (like `mkdir -p`, `mode` for the ones created).

    Iterative, so a path of thousands of components cannot exhaust Python's recursion limit.
    Raises OSError when it cannot (ENAMETOOLONG past PATH_MAX), or when `path` exists and is not
    a directory.
    """
    if len(os.fsencode(path)) >= PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
    pending: list[str] = []
    head = path
    while head and not os.path.exists(head):
        pending.append(head)
        parent = os.path.dirname(head.rstrip("/"))
        if parent == head or not parent:
            break
        head = parent
    for directory in reversed(pending):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def fsync_dir(path: str) -> None:
    """fsync the directory `path`, so a rename or unlink inside it is durable.

    Raises OSError when the directory cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file made by `atomic_write` (possibly a crash leftover)."""
    return name.startswith(".") and TMP_MARK in name


def temp_owner_pid(name: str) -> int | None:
    """The pid a temporary file name carries (`.<name>.tmp-<pid>` or `.<name>.tmp-<pid>-<hex>`,
    as `atomic_write` and the host-local store make them), or None when it carries none."""
    if not is_temp_name(name):
        return None
    text = name.rsplit(TMP_MARK, 1)[1].split("-", 1)[0]
    return int(text) if text.isdigit() else None


def sweep_dead_temps(directory: str, prefix: str = ".") -> int:
    """Remove the temporary files in `directory` whose names start with `prefix` and whose
    writer is gone (its pid no longer exists: killed mid-write); the number removed.

    A temp of a live pid, of this process (a writer in another thread), or without a pid is
    kept. Errors (an unreadable directory, a file removed meanwhile) are ignored.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    me = os.getpid()
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = temp_owner_pid(name)
        if pid is None or pid == me or pid <= 0:
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or the pid was reused): leave it
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except OSError:
            pass
    return removed


def atomic_write(
    path: str, data: bytes, mode: int = 0o600, *, durable: bool = True, temp_dir: str | None = None
) -> None:
    """Replace the file at `path` with `data` atomically, file mode `mode`.

    The data goes to a temporary file (`.<name>.tmp-<pid>-<hex>`, which `sweep_dead_temps`
    recognises) in `temp_dir`, by default the directory of `path` (it must be on the same file
    system), and is renamed over `path`. With `durable` the file is fsynced before the rename
    and the directory after it; without, a killed writer still never leaves a partial file at
    `path`, but a power loss may lose the new content. On any error the temporary file is
    removed, the old content of `path` (if any) is untouched, and the OSError is raised.
    """
    directory, name = os.path.split(path)
    directory = directory or "."
    unique = f"{os.getpid()}-{os.urandom(4).hex()}"  # a worker's threads share the pid
    tmp = os.path.join(temp_dir or directory, f".{name}{TMP_MARK}{unique}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)  # the umask must not loosen or tighten what was asked for
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(directory)


def remove(path: str, *, durable: bool = True) -> bool:
    """Unlink `path`; True when it was removed, False when it did not exist.

    With `durable`, the directory is fsynced afterwards. Other OSErrors are raised.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    if durable:
        fsync_dir(os.path.dirname(path) or ".")
    return True


SMALL_FILE_LIMIT = 1 << 20


def read_small_file(path: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The contents of the regular file at `path`, which must be at most `limit` bytes.

    For files a configuration names (resolv.conf, subnet.env): opened non-blocking, so a FIFO
    cannot hang the plugin, and anything but a regular file (a device such as /dev/zero, a
    socket) or a file over `limit` is refused with OSError (EISDIR, EINVAL, EFBIG) instead of
    being read without end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"file larger than {limit} bytes", path)
            chunks.append(chunk)
    finally:
        os.close(fd)
