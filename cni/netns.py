"""Network-namespace plumbing: enter a netns for a block, compare, test for existence.

Standard library only, and cheap to import: this module is on every plugin's start-up
path, so it imports neither pyroute2 nor asyncio, and it loads `ctypes` only on first use
of a function that needs it (`setns` on Python < 3.12, `statfs`).

Threads. A network namespace is a property of one OS thread, not of the process.
`in_netns` switches only the calling thread, and every promise below is about that
thread:

* Do not hand work to another thread inside the block (thread pools, executors,
  asyncio's default executor, pyroute2 objects that run their own worker threads):
  such code runs in whatever netns *its* thread is in.
* A thread started inside the block begins in the target netns and stays there: it
  does not follow the block back out.
* A child process forked inside the block starts in the target netns.
* A socket (netlink included) belongs to the netns its creator was in when it was
  created, forever. Create `IPRoute()` & co. inside the block, and close them there.
* Leave the block on the thread that entered it; leaving from another thread is
  refused with RuntimeError (the entering thread would stay in the target netns).

Errors mirror the Go reference (`pkg/ns/ns_linux.go`, verified against the v1.1.1
binaries): opening problems are *untyped* errors there, which the skel reports with
code 999 (`ERR_INTERNAL`), so `NetnsError` carries code 999 and the reference's text:

* missing path:      ``failed to Statfs "<p>": no such file or directory``  (NetnsNotFoundError)
* not nsfs / procfs: ``unknown FS magic on "<p>": ef53``                    (NotANetnsError)
* not a *network* namespace (e.g. /proc/self/ns/mnt):
  ``error switching to ns <p>: Error switching to ns <p>: invalid argument``
"""

from __future__ import annotations

import _thread
import fcntl
import os

from cni.errors import ERR_INTERNAL, ERR_INVALID_NETNS, CNIError, os_error_text

TYPE_CHECKING = False  # typing costs ~2.5 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from ctypes import CDLL
    from types import TracebackType

__all__ = [
    "CLONE_NEWNET",
    "NetnsError",
    "NetnsNotFoundError",
    "NotANetnsError",
    "current_netns_path",
    "in_netns",
    "netns_exists",
    "same_as_current",
]

CLONE_NEWNET = 0x40000000
NSFS_MAGIC = 0x6E736673
PROCFS_MAGIC = 0x9FA0
_NS_GET_NSTYPE = 0xB703  # ioctl(2) on a namespace fd -> its CLONE_NEW* type (Linux >= 4.11)


class NetnsError(CNIError):
    """A netns path that cannot be entered. Code 999, as the reference's untyped errors.

    `path` is the offending path exactly as given.
    """

    def __init__(self, path: str, msg: str, details: str = "") -> None:
        super().__init__(ERR_INTERNAL, msg, details)
        self.path = path


class NetnsNotFoundError(NetnsError):
    """The path does not exist (Go `NSPathNotExistErr`; DEL paths treat this as success)."""


class NotANetnsError(NetnsError):
    """The path exists but is on neither nsfs nor procfs (Go `NSPathNotNSErr`)."""


# --------------------------------------------------------------------------- helpers


_libc: CDLL | None = None


def _get_libc() -> CDLL:
    """libc through ctypes, loaded on first use only."""
    global _libc
    if _libc is None:
        import ctypes  # lazy, as every ctypes use here: ~3 ms most calls never pay

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread; raises OSError."""
    native = getattr(os, "setns", None)
    if native is not None:  # Python >= 3.12
        native(fd, nstype)
        return
    import ctypes  # lazy (see _get_libc)

    libc = _get_libc()
    if libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _statfs_type(path: str) -> int:
    """f_type of statfs(2) on path (following symlinks); raises OSError."""
    import ctypes  # lazy (see _get_libc)

    libc = _get_libc()
    buf = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit Linux
    if libc.statfs(os.fsencode(path), buf) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), path)
    # f_type is the first member: `long` everywhere except s390x (`unsigned int`).
    ctype = ctypes.c_uint if os.uname().machine == "s390x" else ctypes.c_long
    return ctype.from_buffer(buf).value & 0xFFFFFFFF


def current_netns_path() -> str:
    """The /proc path of the calling *thread's* netns (not the main thread's).

    /proc/self/ns/net names the thread-group leader's namespace, which is wrong for
    any other thread; /proc/thread-self (Linux >= 3.17) is used, with a fallback to
    /proc/<pid>/task/<tid>/ns/net.
    """
    if os.path.exists("/proc/thread-self/ns/net"):
        return "/proc/thread-self/ns/net"
    return f"/proc/{os.getpid()}/task/{_thread.get_native_id()}/ns/net"


def _open_netns(path: str) -> int:
    """Check path the way Go's `ns.GetNS` does and return an O_RDONLY|O_CLOEXEC fd.

    Raises NetnsNotFoundError, NotANetnsError or NetnsError with the reference's texts.
    """
    try:
        magic = _statfs_type(path)
    except OSError as err:
        from cni.gocompat.json import quote  # error path only: keeps this module's import cheap

        msg = f"failed to Statfs {quote(path)}: {os_error_text(err)}"
        cls = NetnsNotFoundError if isinstance(err, FileNotFoundError) else NetnsError
        raise cls(path, msg) from None
    if magic not in (NSFS_MAGIC, PROCFS_MAGIC):
        from cni.gocompat.json import quote  # error path only, as above

        raise NotANetnsError(path, f"unknown FS magic on {quote(path)}: {magic:x}")
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        cls = NetnsNotFoundError if isinstance(err, FileNotFoundError) else NetnsError
        raise cls(path, f"open {path}: {os_error_text(err)}") from None


# --------------------------------------------------------------------------- public API


class _InNetns:
    """The context manager behind `in_netns` (a class, so contextlib is not imported)."""

    __slots__ = ("_path", "_orig_fd", "_thread")

    def __init__(self, path: str) -> None:
        self._path = path
        self._orig_fd: int | None = None
        self._thread: int | None = None

    def __enter__(self) -> None:
        if self._orig_fd is not None:
            raise RuntimeError("in_netns() context is already active; it is not re-entrant")
        path = self._path
        target = _open_netns(path)
        try:
            try:
                orig = os.open(current_netns_path(), os.O_RDONLY | os.O_CLOEXEC)
            except OSError as err:
                raise CNIError(
                    ERR_INTERNAL, f"failed to open current netns: {os_error_text(err)}"
                ) from None
            try:
                _setns(target)
            except OSError as err:
                os.close(orig)
                text = os_error_text(err)
                raise NetnsError(
                    path, f"error switching to ns {path}: Error switching to ns {path}: {text}"
                ) from None
        finally:
            os.close(target)
        self._orig_fd = orig
        self._thread = _thread.get_ident()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        orig, self._orig_fd = self._orig_fd, None
        if orig is None:
            return
        try:
            if _thread.get_ident() != self._thread:
                raise RuntimeError(
                    f"in_netns({self._path!r}) left on a different thread than it was entered "
                    "on; the entering thread is still in that netns"
                )
            try:
                _setns(orig)
            except OSError as err:
                # Practically impossible (we hold an fd to it), and unrecoverable for this
                # thread: say so loudly rather than carry on in the wrong namespace.
                raise CNIError(
                    ERR_INTERNAL,
                    f"failed to return to the original netns after {self._path}: "
                    f"{os_error_text(err)}",
                ) from exc
        finally:
            os.close(orig)


def in_netns(path: str) -> _InNetns:
    """Run a `with` block with the calling thread inside the netns at `path`.

    Use as ``with in_netns("/run/netns/x"): ...``. Promises:

    * On entry the path is checked as the reference does (statfs: nsfs or procfs), opened
      and entered with setns(2). If any of that fails, nothing has changed and a
      `NetnsError` (a CNIError, code 999, message naming the path with the reference's
      wording) is raised; `NetnsNotFoundError` when the path does not exist.
    * On exit, normal or by any exception, the thread is switched back to the netns it
      was in on entry (a handle to it is held for the whole block, so this works even
      if the original namespace has no name or path any more). The block's exception
      propagates unchanged.
    * Nesting works (each level returns to its own starting point). One object from
      `in_netns()` can be entered only once at a time.

    Only the calling thread moves: see the module docstring for what that means for
    threads, child processes and sockets. The caller must not switch threads inside the
    block.
    """
    return _InNetns(os.fspath(path))


def same_as_current(path: str) -> bool:
    """True when `path` names the calling thread's own network namespace.

    The reference's execution-context check (docs/spec-rules.md §1.3): compare st_dev/st_ino of
    `path` with those of the thread's /proc/thread-self/ns/net. A path that cannot be
    opened or stat'ed (empty, missing, unreadable) gives False: the check "silently
    passes". Raises CNIError code 8 `get plugin's netns failed` only when the thread's
    own netns cannot be read.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    try:
        own = os.stat(current_netns_path())
    except OSError as err:
        raise CNIError(ERR_INVALID_NETNS, "get plugin's netns failed", str(err)) from None
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def netns_exists(path: str) -> bool:
    """True when `path` exists, can be opened, and refers to a *network* namespace.

    Never raises. The type is asked of the kernel (ioctl NS_GET_NSTYPE, Linux >= 4.11),
    so /proc/self/ns/mnt or a regular file give False. Does not enter the namespace.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)
