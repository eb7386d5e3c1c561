"""Stands in for PyInstaller's bootstrap module `pyimod02_importers` in the standalone build.

The stock module installs a path hook that looks every import up in the PYZ archive before
handing it to Python's own FileFinder. The shipped build has no PYZ archive (every module is a
plain .pyc file in the contents directory), so Python's own path finder, which imports sourceless
.pyc files natively, does all the work; this module only keeps the one thing of the stock
install() that Python itself needs here: the standard library modules that Python 3.11 carries
frozen inside libpython get a `__file__` (as if they had been imported from the contents
directory), which Python leaves unset when it does not know the stdlib directory.
build.spec puts this module in its place (docs/startup.md, "Bootstrap").
"""

import sys


def install() -> None:
    """Forget the (empty) archive the bootloader announced; give frozen stdlib modules a
    __file__."""
    import _imp

    if hasattr(sys, "_pyinstaller_pyz"):
        del sys._pyinstaller_pyz
    base = sys._MEIPASS
    if not sys._stdlib_dir:
        sys._stdlib_dir = base  # modules frozen into libpython and imported later get __file__
    for name, module in list(sys.modules.items()):
        if not _imp.is_frozen(name):
            continue
        state = module.__spec__.loader_state
        parts = state.origname.split(".")
        if _imp.is_frozen_package(name):
            parts.append("__init__")
        path = base + "/" + "/".join(parts) + ".pyc"
        if not hasattr(module, "__file__"):
            try:
                module.__file__ = path
            except AttributeError:
                pass
        if state.filename is None and state.origname != "importlib._bootstrap":
            state.filename = path
