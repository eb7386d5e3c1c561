"""What pods whose network namespace is gone left behind, and their release (`--fix` only).

A container counts as gone only on evidence (node.Node.owners): its cached attachment names a
namespace that no longer exists. Every repair checks that again right before it acts, so a pod
that came back meanwhile is never touched.
"""

from __future__ import annotations

import os

from cni.errors import CNIError
from cni.invoke import delegate_del
from cni.libcni import conflist
from cni.libcni.cache import Attachment, ResultCache
from cni.libcni.runtime import CNIConfig, RuntimeConf
from cni.netns import netns_exists
from plugins.doctor.facts import Network
from plugins.doctor.node import Node
from plugins.flannel import GC_IFNAME
from plugins.flannel import delegate as flannel_delegate


def dead_attachments(node: Node, network: str) -> list[Attachment]:
    """The cached attachments of `network` whose container is gone."""
    return [
        a for a in node.attachments
        if a.network == network and node.owner(a.container_id).state == "dead"
    ]


def still_dead(node: Node, cid: str) -> bool:
    """Re-read the evidence: every cached attachment of `cid` names a namespace that is gone."""
    try:
        atts = ResultCache(node.cache_dir).attachments(cid)
    except OSError:
        return False
    if atts:
        return all(a.netns and not netns_exists(a.netns) for a in atts)
    return node.fresh().owner(cid).state == "dead"


def _del_cached(node: Node, att: Attachment) -> str:
    """libcni DEL of one cached attachment, with the configuration and arguments ADD used and
    no namespace (it is gone); the plugins release the lease, rules and saved files."""
    try:
        net = conflist.list_from_bytes(att.config)
    except CNIError:
        net = conflist.load(node.net_dir, att.network)
    rt = RuntimeConf(container_id=att.container_id, netns="", ifname=att.ifname,
                     args=list(att.cni_args or []), capability_args=att.capability_args)
    CNIConfig(node.cni_path, cache_dir=node.cache_dir, environ=_env(node)).del_network_list(net, rt)
    return (f'DEL of network "{att.network}" for {att.container_id} {att.ifname} '
            f"(namespace {att.netns} is gone): lease, rules, saved configuration and cache entry "
            "released")


def _env(node: Node) -> dict[str, str]:
    env = dict(node.env)
    env["CNI_PATH"] = os.pathsep.join(node.cni_path)
    return env


def _del_saved(node: Node, net: Network, cid: str) -> str | None:
    """Delegate DEL with a saved flannel configuration, then remove it; None when none is saved."""
    path = flannel_delegate.saved_path(net.flannel.data_dir(), cid)
    data = flannel_delegate.read_saved(path)
    if data is None:
        return None
    saved = flannel_delegate.parse_saved(data)
    if saved is not None:
        env = _env(node)
        env.update(CNI_CONTAINERID=cid, CNI_IFNAME=GC_IFNAME, CNI_NETNS="", CNI_ARGS="")
        delegate_del(saved["type"], data, env)
    flannel_delegate.remove_saved(path)
    return f"DEL through the saved delegate configuration {path}, then removed it"


def release_dead(node: Node, net: Network, cids: list[str]):
    """A repair: DEL every attachment of `net` of the containers `cids` that are still gone."""

    def run() -> list[str]:
        done = []
        for cid in cids:
            if not still_dead(node, cid):
                continue
            try:
                atts = [a for a in ResultCache(node.cache_dir).attachments(cid)
                        if a.network == net.name]
                for att in atts:
                    done.append(_del_cached(node, att))
                if net.flannel is not None:
                    text = _del_saved(node, net, cid)
                    if text:
                        done.append(text)
            except CNIError as e:
                done.append(f"could not release {cid}: {e.msg}")
        return done

    return run
