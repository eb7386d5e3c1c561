"""pydantic without its plugin discovery: ~25 ms less per process that builds a model.

pydantic looks for third-party plugins (entry points of the `pydantic` group) the first time it
builds a model, through `pydantic.plugin._loader`, whose import pulls in importlib.metadata
(and with it email, zipfile, csv, ...). This suite registers no such plugin, and the standalone
build carries no package metadata to find one in, so the loader is replaced by one that reports
none: exactly what pydantic itself does under PYDANTIC_DISABLE_PLUGINS=__all__, without
putting that variable into the environment every delegate and firewall tool inherits.

Importing this module installs the stand-in (once; a loader already imported is left alone).
Every module of ours that defines pydantic models imports it before pydantic builds any.
"""

from __future__ import annotations

import sys
import types

_LOADER = "pydantic.plugin._loader"


def _no_plugins() -> tuple:
    """What pydantic's get_plugins() returns when plugins are disabled."""
    return ()


def install() -> None:
    """Register the stand-in loader unless pydantic's own is already imported."""
    if _LOADER in sys.modules:
        return
    module = types.ModuleType(_LOADER, "pycni stand-in: pydantic plugins disabled")
    module.get_plugins = _no_plugins  # type: ignore[attr-defined]
    module._plugins = {}  # type: ignore[attr-defined]
    module._loading_plugins = False  # type: ignore[attr-defined]
    sys.modules[_LOADER] = module


install()
