"""bridge: attach a pod to a Linux bridge with a veth pair (docs/reference-behaviour.md §2).

This is the plugin's main: its verbs, each running the steps in its own module (add.py,
delete.py, check.py, status.py, gc.py), over the configuration (config.py), the link steps
(port.py), the gateway steps (gateway.py, readdress.py) and the firewall steps (firewall.py).
The netlink and firewall work lives in plugins/linux/.

Each verb imports its module when it is called, not before: VERSION loads neither pydantic nor
the netlink plumbing, and a DEL does not pay for what only ADD needs (README "Start-up"). The
only other imports made inside functions are the firewall steps (firewall.py, only with ipMasq
or macspoofchk) and the re-address step (readdress.py, only on an address conflict), each for
its measured start-up cost; tests/unit/test_bridge.py checks what each verb loads.

Deliberate differences from the reference (upstream commit 3d27709f):
* A failed ADD undoes everything it created (the reference undoes only the IPAM lease and the
  spoof check): the veth pair, a bridge it created (when no port is left on it), masquerade
  rules; so a bad request leaves nothing behind. Addresses and sysctls on a bridge that
  existed before are left as they are.
* Configuration errors that need no kernel (VLAN range, trunk list, hairpin with promisc,
  IPAM with disableContainerInterface, MTU range, masquerade backend name, MAC syntax) are
  code 7 and are raised before anything is created.
* DEL with an empty or vanished CNI_NETNS, or with the pod's link already gone, still removes
  the masquerade rules (found by their chain name and comment); the reference leaks them.
* GC forwards to the IPAM plugin and removes masquerade rules of attachments not in the
  valid list (the reference's bridge has no GC).
"""

from __future__ import annotations

from cni import __version__
from cni.skel import plugin_of

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from cni.result import Result100
    from cni.skel import CmdArgs


def cmd_add(args: CmdArgs) -> Result100:
    """Attach the pod: the bridge, a veth pair, IPAM, addresses, gateways, masquerade; a
    failure undoes what was made (add.py)."""
    from plugins.bridge import add

    return add.cmd_add(args)


def cmd_del(args: CmdArgs) -> None:
    """Detach the pod: its link, lease, spoof check and masquerade rules; idempotent
    (delete.py)."""
    from plugins.bridge import delete

    delete.cmd_del(args)


def cmd_check(args: CmdArgs) -> None:
    """Verify an attachment against its prevResult (check.py)."""
    from plugins.bridge import check

    check.cmd_check(args)


def cmd_status(args: CmdArgs) -> None:
    """Ready when the IPAM plugin (if any) says so (status.py)."""
    from plugins.bridge import status

    status.cmd_status(args)


def cmd_gc(args: CmdArgs) -> None:
    """Forward GC to IPAM and drop stale masquerade rules (gc.py)."""
    from plugins.bridge import gc

    gc.cmd_gc(args)


PLUGIN = plugin_of(globals(), f"CNI bridge plugin {__version__} (pycni)")
