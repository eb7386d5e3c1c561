"""The bridge's DEL (docs/reference-behaviour.md §2.6): the pod's link, the IPAM lease, the
spoof check and the masquerade rules. Idempotent; a vanished netns or link still releases the
lease and removes the rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cni import invoke
from cni.errors import CNIError
from cni.netns import NetnsNotFoundError
from plugins.bridge import config
from plugins.bridge.common import ifname_utf8, refused
from plugins.linux import addr, link, rtnl

if TYPE_CHECKING:
    from cni.skel import CmdArgs
    from plugins.linux.addr import IPInterface


def _global_unicast(iface: IPInterface) -> bool:
    ip = iface.ip
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    return not (ip.version == 4 and int(ip) == 0xFFFFFFFF)


def _delete_pod_link(netns: str, ifname: str, want_addrs: bool = True) -> list[IPInterface] | None:
    """Delete CNI_IFNAME in the pod netns; its global unicast addresses (an empty list unless
    `want_addrs`), or None when the link was not there. Raises NetnsNotFoundError when the
    netns is gone, other CNIErrors as is."""
    pod = rtnl.iproute_in(netns)
    try:
        if not want_addrs:  # one request: delete by name
            with refused(f'failed to delete "{ifname}": '):
                deleted = link.delete_link_named(pod, ifname)
            return [] if deleted else None
        lk = link.get_link(pod, ifname)
        if lk is None:
            return None
        addrs = [a.iface for a in addr.list_addresses(pod, lk.index) if _global_unicast(a.iface)]
        with refused(f'failed to delete "{ifname}": '):
            link.delete_link(pod, lk.index)
        return addrs
    finally:
        pod.close()


def cmd_del(args: CmdArgs) -> None:
    """Detach the pod (docs/reference-behaviour.md §2.6); idempotent, tolerates a vanished
    netns."""
    conf = config.load(args.config, args.args).conf
    try:
        ifname_utf8(args.ifname)
    except CNIError:  # ADD refuses such a name: the pod side cannot exist, the lease can
        if conf.is_layer3:
            invoke.delegate_del(conf.ipam_type, args.stdin, args.env)
        return
    addrs = None
    if args.netns:
        try:
            # the addresses only matter to the masquerade teardown
            addrs = _delete_pod_link(args.netns, args.ifname, conf.is_layer3 and conf.ipMasq)
        except NetnsNotFoundError:
            addrs = None
    if conf.is_layer3:
        invoke.delegate_del(conf.ipam_type, args.stdin, args.env)
    if conf.macspoofchk or (conf.is_layer3 and conf.ipMasq):
        from plugins.bridge import firewall  # start-up: only when asked (firewall.py docstring)

        if conf.macspoofchk:
            firewall.spoofcheck_teardown(args.container_id, args.ifname)
        if conf.is_layer3 and conf.ipMasq:
            firewall.masq_teardown(conf, addrs or None, args.ifname, args.container_id)
