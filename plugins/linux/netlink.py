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


def iproute():
    """A new pyroute2 IPRoute bound to the calling thread's current network namespace."""
    _bare_package("pyroute2")
    from pyroute2.iproute.linux import IPRoute

    return IPRoute()
