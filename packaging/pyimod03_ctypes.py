"""Stands in for PyInstaller's bootstrap module `pyimod03_ctypes` in the standalone build.

PyInstaller's bootstrap imports ctypes on every start, only to wrap ctypes.CDLL & co. so that a
library named without a path is also looked for in the bundle directory. Every library this
suite loads through ctypes is the system's libc (cni/netns.py, pyroute2), which the bundle does
not hold, so the wrapper never changes anything; importing ctypes for it cost every call ≈1.5 ms
(ctypes, _ctypes, libffi), the client of the warm worker included. build.spec puts this module in
its place; ctypes is imported when a plugin first needs it.
"""


def install() -> None:
    """Install nothing (see the module docstring)."""
