"""The bridge's firewall steps: the MAC spoof check (nftables) and the masquerade rules of one
attachment; the rules themselves are built in plugins/linux/spoofcheck.py and ipmasq.py.

Imported only by an ADD or DEL whose configuration asks for one of them: these modules bring
`subprocess` (and shutil, bz2, lzma) and cost 7-12 ms of start-up (measured with the rest of an
ADD loaded) that a call without ipMasq or macspoofchk does not pay.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from cni.errors import CNIError
from plugins.linux import ipmasq, spoofcheck

if TYPE_CHECKING:
    from collections.abc import Sequence

    from plugins.bridge.common import Undo
    from plugins.bridge.config import BridgeNetConf
    from plugins.linux.addr import IPInterface


def spoofcheck_setup(container_id: str, ifname: str, host_veth: str, container_mac: str,
                     undo: Undo) -> None:
    """Let only `container_mac` leave through `host_veth`; the rollback removes the rules."""
    ref = spoofcheck.ref_id(container_id, ifname)
    spoofcheck.setup(host_veth, container_mac, ref)
    undo.push(lambda: spoofcheck.teardown(ref))


def spoofcheck_teardown(container_id: str, ifname: str) -> None:
    """Remove the attachment's spoof check; a failure is written to stderr, not raised (DEL
    goes on)."""
    try:
        spoofcheck.teardown(spoofcheck.ref_id(container_id, ifname))
    except CNIError as e:
        sys.stderr.write(f"{e.msg}\n")


def masq_setup(conf: BridgeNetConf, ips: Sequence[IPInterface], ifname: str, container_id: str,
               undo: Undo) -> None:
    """Masquerade traffic from `ips` leaving their subnets, with the configured backend; the
    rollback removes the rules (pushed first: a half-applied setup is undone too)."""
    undo.push(lambda: ipmasq.teardown(ips, conf.name, ifname, container_id))
    ipmasq.setup(conf.ipMasqBackend, ips, conf.name, ifname, container_id)


def masq_teardown(conf: BridgeNetConf, addrs: Sequence[IPInterface] | None, ifname: str,
                  container_id: str) -> None:
    """Remove the attachment's masquerade rules, found by `addrs` or, when None (the pod's
    link is gone), by their chain name and comment."""
    ipmasq.teardown(addrs, conf.name, ifname, container_id)
