"""Which firewall backend the plugins use on this node, decided in one place for portmap, the
bridge's ipMasq and the doctor.

The reference's rule, for a configuration that names no backend: iptables, unless iptables is
unusable here and nftables is. "Unusable" is judged cheaply first: both iptables-save and
iptables-restore on PATH settle it without a process; only a node without them pays for asking
`nft` (`nftables.available`).
"""

from __future__ import annotations

import shutil

from plugins.linux import iptables, nftables

BACKENDS = ("iptables", "nftables")


def iptables_installed(path: str | None = None) -> bool:
    """True when iptables-save and iptables-restore are on `path` (default: PATH)."""
    return bool(shutil.which("iptables-save", path=path)
                and shutil.which("iptables-restore", path=path))


def nft_installed(path: str | None = None) -> bool:
    """True when the nft binary is on `path` (default: PATH)."""
    return shutil.which("nft", path=path) is not None


def default_backend() -> str:
    """The backend for a configuration that names none: "iptables" when its tools are
    installed, else "nftables" when nft can list the ruleset, else "iptables" (whose errors
    then say what is missing)."""
    if iptables_installed():
        return "iptables"
    return "nftables" if nftables.available() else "iptables"


def usable(backend: str, ipv6: bool = False) -> bool:
    """True when `backend` ("iptables" or "nftables") can read this node's tables (for
    iptables, the nat table of the IPv4 or IPv6 family). Costs one process."""
    if backend == "nftables":
        return nftables.available()
    return iptables.available(ipv6)
