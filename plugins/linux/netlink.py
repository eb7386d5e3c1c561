"""pyroute2 without its package-wide import.

`import pyroute2.iproute.linux` runs `pyroute2/__init__.py` first, which imports most of the
library (ndb, ipdb, conntrack, ...): about 165 ms, against about 60 ms for what IPRoute needs.
Registering a bare package module with the real search path lets the submodules load alone.
"""

from __future__ import annotations

import sys


def _bare_package(name: str) -> None:
    if name in sys.modules:
        return
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"package {name} not found")
    module = importlib.util.module_from_spec(spec)  # created, not executed
    sys.modules[name] = module


def bare_pyroute2() -> None:
    """Make pyroute2's submodules importable one by one, without its package-wide import.

    Idempotent; call it before any `from pyroute2.<submodule> import ...`.
    """
    _bare_package("pyroute2")


def netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError class (for `except` clauses), loaded without the package import."""
    _bare_package("pyroute2")
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


class _InertMock:
    """Stands in for unittest.mock.Mock while pyroute2 is imported (see `import_iproute`):
    any method called on it does nothing."""

    def __getattr__(self, name: str):
        return _noop


def _noop(*args: object, **kwargs: object) -> None:
    return None


def import_iproute():
    """The module pyroute2.iproute.linux (IPRoute, its request processors), imported once
    without the package-wide import and, when possible, without unittest.

    pyroute2 0.9.7's netlink/rtnl/iprsocket.py does `from unittest import mock` for one class
    attribute (`NotLocal.msg_queue = mock.Mock()`, a message-queue placeholder its sync
    IPRSocket never calls into on the paths plugins/linux uses); importing unittest costs
    about 8 ms of CPU (unittest.case, difflib, pprint, ...). When no unittest is loaded yet,
    that one import is served by a stand-in which is taken out of sys.modules again right
    after, so a later `import unittest` anywhere in the process gets the real package; a
    unittest already loaded (a test process) is used as it is, never shadowed.
    """
    module = sys.modules.get("pyroute2.iproute.linux")
    if module is not None:
        return module
    _bare_package("pyroute2")
    if "unittest" in sys.modules or "unittest.mock" in sys.modules:
        import pyroute2.iproute.linux as module

        return module
    import types

    stub = types.ModuleType("unittest")
    stub_mock = types.ModuleType("unittest.mock")
    stub_mock.Mock = _InertMock  # type: ignore[attr-defined]
    stub.mock = stub_mock  # type: ignore[attr-defined]
    sys.modules["unittest"] = stub
    sys.modules["unittest.mock"] = stub_mock
    try:
        import pyroute2.iproute.linux as module
    except ImportError:  # a pyroute2 that needs more of unittest: import it for real below
        module = None
    finally:
        if sys.modules.get("unittest") is stub:
            del sys.modules["unittest"]
        if sys.modules.get("unittest.mock") is stub_mock:
            del sys.modules["unittest.mock"]
    if module is None:
        import pyroute2.iproute.linux as module
    return module


def iproute():
    """A new pyroute2 IPRoute bound to the calling thread's current network namespace."""
    return import_iproute().IPRoute()
