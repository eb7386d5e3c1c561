"""The worker directory, used only through a directory descriptor.

Every client call and every worker opens the directory with `open_worker_dir`: the path is walked
from "/" one component at a time with openat(O_NOFOLLOW), so no symlink anywhere in it is
followed, and the directory is refused unless it is root's, mode 0700, and no parent on the way
can be rewritten by anyone but root. Files in it are opened with `open_in` (never through a
symlink, never truncating something that is not root's regular file); a unix socket, which has no
*at() bind or connect, is reached through `proc_path`, the directory descriptor's /proc magic link.

Imports `os` only: the client imports this module on every call.
"""

from __future__ import annotations

import os

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parent_safe(st: os.stat_result) -> bool:
    """A parent no one but root can change entries of: root's, and not group/other writable
    unless sticky (then only an entry's owner, root for ours, may rename it)."""
    if st.st_uid != 0:
        return False
    return not (st.st_mode & 0o022) or bool(st.st_mode & 0o1000)


def _leaf_safe(st: os.stat_result) -> bool:
    return st.st_uid == 0 and (st.st_mode & 0o7777) == 0o700


def open_worker_dir(path: str, create: bool) -> int | None:
    """An O_DIRECTORY|O_CLOEXEC descriptor of the worker directory `path`, or None when it is
    refused: not absolute, a symlink at any component, "..", a parent root does not own or that
    others may write without the sticky bit, a directory not owned by uid 0 or with a mode other
    than 0700. With `create`, a missing last component is made (0700). Never raises OSError."""
    if not path.startswith("/"):
        return None
    names = [n for n in path.split("/") if n not in ("", ".")]
    if not names or ".." in names:
        return None
    try:
        fd = os.open("/", _DIR_FLAGS)
    except OSError:
        return None
    try:
        for i, name in enumerate(names):
            if not _parent_safe(os.fstat(fd)):
                return None
            last = i == len(names) - 1
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not (create and last):
                    return None
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass  # made by a concurrent call: checked like any other below
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                st = os.fstat(child)
                if st.st_uid == 0 and st.st_mode & 0o7777 != 0o700:
                    os.fchmod(child, 0o700)  # a umask without u=rwx
            os.close(fd)
            fd = child
        if not _leaf_safe(os.fstat(fd)):
            return None
        result, fd = fd, -1
        return result
    except OSError:  # ELOOP / ENOTDIR: a symlink or a file where a directory should be
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def proc_path(dirfd: int, name: str) -> str:
    """The path of `name` in the directory `dirfd` through /proc/self/fd, for bind() and
    connect(), which have no *at() form; resolving it never follows a symlink to the directory.
    (Threads of one process share descriptors, so it means the same in each of them.)"""
    return f"/proc/self/fd/{dirfd}/{name}"


def open_in(dirfd: int, name: str, flags: int, mode: int = 0o600) -> int:
    """Open the file `name` (one path component) in the directory `dirfd`, never following a
    symlink (O_NOFOLLOW|O_CLOEXEC added). The file must be a regular file owned by root; for
    O_TRUNC it is truncated only after that check. Raises OSError otherwise (ELOOP for a
    symlink, EPERM for another kind or owner, EINVAL for a name that is not one component)."""
    if not name or "/" in name or name in (".", ".."):
        raise OSError(22, "not a file name", name)
    truncate = bool(flags & os.O_TRUNC)
    blocking = not flags & os.O_NONBLOCK
    flags = (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(name, flags, mode, dir_fd=dirfd)  # O_NONBLOCK: a planted FIFO cannot block us
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or st.st_uid != 0:
            raise OSError(1, "not a regular file owned by root", name)
        if blocking:
            os.set_blocking(fd, True)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd
