"""portmap's firewall backends behind one interface, as the reference's PortMapper.

Both `plugins.portmap.iptables` and `plugins.portmap.nftables` are modules that implement
`PortMapper` (type checkers accept a module for a protocol); `for_settings` picks the one the
configuration names. It is the one place a backend module is imported: each brings its own
firewall tooling, and a call needs only one of them.
"""

from __future__ import annotations

import ipaddress
from importlib import import_module
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from plugins.portmap.config import Settings
    from plugins.portmap.holders import Mapped

# A container address with its prefix, as the prevResult gives it.
Net = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_MODULES = {"iptables": "plugins.portmap.iptables", "nftables": "plugins.portmap.nftables"}


class PortMapper(Protocol):
    """What a backend does for the verbs (Go's PortMapper, plus GC and STATUS)."""

    def add(
        self, settings: Settings, container_id: str, nets: list[Net], seen: dict[int, list[Mapped]]
    ) -> None:
        """Install the mappings of `nets` (one batch per family); fill `seen` with the mappings
        other containers already had in place, per IP version, for the clash warning."""

    def delete(self, settings: Settings, container_id: str) -> None:
        """Remove every mapping of the container in both families; absent ones are no error."""

    def check(self, settings: Settings, container_id: str, net: Net) -> None:
        """Raise CNIError when a mapping of `net` is not in place."""

    def gc(self, settings: Settings, valid_container_ids: set[str]) -> list[str]:
        """Remove this network's mappings of containers not in `valid_container_ids`; return
        what was removed."""

    def available(self) -> bool:
        """Whether this backend's tools can be used on this node (STATUS)."""


def for_settings(settings: Settings) -> PortMapper:
    """The backend that `settings.backend` names ("iptables" or "nftables")."""
    return cast("PortMapper", import_module(_MODULES[settings.backend]))
