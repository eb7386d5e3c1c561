"""portmap: hostPort mappings for a chained plugin result (docs/reference-behaviour.md §3).

Chained after the network plugin, portmap reads `runtimeConfig.portMappings` and forwards each
host port to the container address found in the prevResult: the first IPv4 and the first IPv6
address that belongs to CNI_IFNAME inside the sandbox (or names no interface). The firewall work
is one batch per address family and call (iptables: one iptables-save plus at most one
iptables-restore; nftables: one transaction), see plugins/portmap/iptables.py and
plugins/portmap/nftables.py, both behind plugins/portmap/backend.py's PortMapper; UDP conntrack
entries to the mapped host ports are flushed after the rules are in place; with snat,
`route_localnet` is set on the interface that routes to the container so 127.0.0.1:hostPort
works.

Verbs: ADD, DEL, CHECK as the reference (upstream 3d27709f) does them; GC (the reference has none)
removes this network's rules of containers not among `cni.dev/valid-attachments`; STATUS reports
whether the configured firewall backend can be used.

Deliberate differences from the reference: invalid mappings (port outside 1-65535, protocol other
than tcp/udp/sctp, hostIP that is not an address) are refused with code 7 before anything is
written; config errors use code 7 rather than 999; DEL neither judges mapping values nor parses the
prevResult, so it cannot be refused for them (without mappings it does not look at the config at
all); nftables rules use the protocol in lower case (the reference passes `TCP` through and nft
rejects it); an ADD with both address families is one nft transaction; the backend is
auto-detected by the presence of the iptables tools rather than by running them; nftables ADDs
also record the attachment for GC (plugins/portmap/nftables.py); DEL flushes the UDP conntrack
entries of its mappings as ADD does; ADD warns on stderr when another container already maps the
same hostPort, protocol and host IP (plugins/portmap/holders.py).
"""

from __future__ import annotations

from cni import __version__
from cni.gocompat.decode import field
from cni.skel import deferred, deferred_plugin

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from cni.skel import CmdArgs

# The verbs are plugins.portmap.steps' functions of the same names (DEL only once the config
# carries mappings), imported on a verb's first call: they load pydantic (~120 ms) and the
# firewall tooling, which a DEL without mappings (most pods' DEL) never needs.
_STEPS = "plugins.portmap.steps"
_delete = deferred(_STEPS, "delete")


def _has_raw_mappings(conf: dict) -> bool:
    """Does the raw config carry a non-empty runtimeConfig.portMappings? (keys matched as Go
    does)"""
    mappings = field(field(conf, "runtimeconfig"), "portmappings")
    return not (mappings is None or mappings == [])


def cmd_del(args: CmdArgs) -> None:
    """Remove this container's mappings; nothing to do when the config carries no mappings.

    Without mappings DEL returns before the config is even modelled (the reference parses it
    first and can refuse the DEL): most pods have no hostPort, and their DEL should cost nothing.
    With mappings, their values are never judged, not even their shape: the rules are found by
    the container ID, and a DEL refused over a malformed `portMappings` would stop a list's DEL
    for good (the reference refuses it).
    """
    if _has_raw_mappings(args.config):
        _delete(args)


PLUGIN = deferred_plugin(_STEPS, f"CNI portmap plugin {__version__} (pycni)", delete=cmd_del)
