"""host-local IPAM: addresses from configured ranges, leases as files (docs/reference-behaviour.md
§1).

A drop-in for the reference host-local: same configuration, results, messages and files, so
a node can switch between the two (or run both) without losing a lease. Beyond the
reference: GC frees leases of attachments the runtime no longer knows, STATUS says whether an
address can be handed out, ADD/DEL/CHECK cost the same at any number of leases (owner index,
ipam/index.py), lease files are never visible half-written, and a failed ADD writes nothing.
"""

from __future__ import annotations

from cni import __version__
from cni.skel import CmdArgs, plugin_of

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from types import ModuleType

    from cni.result import Result


def _steps() -> ModuleType:
    """ipam.steps, imported on first use."""
    # The one lazy import of this thin main: the steps load pydantic (~120 ms) and the lease
    # store, which VERSION never needs.
    from ipam import steps

    return steps


def cmd_add(args: CmdArgs) -> Result:
    """Lease one address per range set to (CNI_CONTAINERID, CNI_IFNAME) and return them."""
    return _steps().add(args)


def cmd_del(args: CmdArgs) -> None:
    """Release every lease of (CNI_CONTAINERID, CNI_IFNAME) (legacy ID-only leases when there
    is none). Idempotent; a data directory that does not exist and cannot be created is success."""
    _steps().delete(args)


def cmd_check(args: CmdArgs) -> None:
    """Succeed when (CNI_CONTAINERID, CNI_IFNAME) holds a lease, and when every prevResult
    address inside this plugin's ranges is leased to exactly that attachment."""
    _steps().check(args)


def cmd_status(args: CmdArgs) -> None:
    """Succeed when an ADD could get an address from every range set; else code 50.

    Read-only: the data directory must exist and be writable (or be creatable), and every
    range set must have a free address. Nothing is created or locked.
    """
    _steps().status(args)


def cmd_gc(args: CmdArgs) -> None:
    """Free every lease whose holder is not among the valid attachments (spec 1.1.0 GC).

    Attachments come from `cni.dev/valid-attachments` (or the older `cni.dev/attachments`);
    null or missing means none is valid. A lease file with empty or unreadable owner content
    is freed too. Failures are collected and reported after the whole directory was handled.
    """
    _steps().gc(args)


PLUGIN = plugin_of(globals(), f"CNI host-local plugin {__version__} (pycni)")
