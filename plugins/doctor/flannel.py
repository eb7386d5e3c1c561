"""Checks of flannel networks: flannel.subnet-env, flannel.bridge-addr, flannel.mtu,
flannel.saved."""

from __future__ import annotations

import ipaddress
import os

from cni import fileutil
from cni.errors import CNIError
from cni.validate import container_id
from plugins.bridge.readdress import PortsAttached, conflicting, fix_bridge_address
from plugins.doctor import leftovers
from plugins.doctor.facts import Network
from plugins.doctor.node import Node
from plugins.doctor.report import FAIL, WARN, Check, Repair, ok
from plugins.flannel.mtu import wrong_mtu
from plugins.linux.addr import IPInterface
from plugins.linux.link import Link

NO_FLANNEL = "no flannel network in {dir}: not applicable"


def _none(check_id: str, node: Node) -> Check:
    return ok(check_id, NO_FLANNEL.format(dir=node.net_dir))


def check_subnet_env(node: Node) -> Check:
    """subnet.env of every flannel network is present, has every key, and FLANNEL_SUBNET lies
    inside FLANNEL_NETWORK."""
    nets = node.flannel_networks()
    if not nets:
        return _none("flannel.subnet-env", node)
    found: list[str] = []
    for net in nets:
        if net.flannel_error is not None:
            return Check("flannel.subnet-env", FAIL,
                         f'the flannel configuration of network "{net.name}" ({net.path}) is '
                         f"invalid: {net.flannel_error}", f"repair {net.path}", [net.path])
        path = net.flannel.subnet_file()
        if net.subnet_error is not None:
            if "no such file" in net.subnet_error:
                return Check(
                    "flannel.subnet-env", FAIL,
                    f"{path} does not exist: flanneld is not (yet) running on this node, "
                    f'or network "{net.name}" ({net.path}) was left behind by an uninstalled '
                    "flannel",
                    "start flanneld (kubectl -n kube-flannel get pods -o wide; its log says why it "
                    f"does not start), or remove {net.path} if flannel was uninstalled",
                    [path, net.path],
                )
            return Check("flannel.subnet-env", FAIL, f"{path} is not usable: {net.subnet_error}",
                         f"restart flanneld so that it rewrites {path}", [path])
        warnings = net.subnet_env.warnings()
        if warnings:
            return Check("flannel.subnet-env", FAIL, f"{path}: " + "; ".join(warnings),
                         f"restart flanneld so that it rewrites {path} from the cluster's network "
                         "configuration (kube-flannel-cfg net-conf.json)", [path])
        env = net.subnet_env
        found.append(
            f"{path}: node subnet {env.subnet or env.ip6_subnet} inside "
            f"{', '.join(env.route_dsts())}, MTU {env.mtu}, IPMASQ {str(env.ipmasq).lower()}"
        )
    return ok("flannel.subnet-env", "; ".join(found), [n.flannel.subnet_file() for n in nets])


def _gateways(net: Network) -> list[IPInterface]:
    """The bridge addresses flannel's subnets give (first host of each subnet, its prefix)."""
    out = []
    for sn in (net.subnet_env.subnet, net.subnet_env.ip6_subnet):
        if sn:
            n = ipaddress.ip_network(sn)
            out.append(ipaddress.ip_interface(f"{n.network_address + 1}/{n.prefixlen}"))
    return out


def _usable(check_id: str, node: Node) -> list[Network] | Check:
    """The flannel networks with a usable subnet.env and a bridge, or the ok Check saying why
    there is nothing to examine."""
    nets = node.flannel_networks()
    if not nets:
        return _none(check_id, node)
    usable = [n for n in nets if n.subnet_env is not None and n.bridge]
    if not usable:
        return ok(check_id, "no usable subnet.env (see flannel.subnet-env): not checked")
    return usable


def _port_text(node: Node, link: Link) -> str:
    cid = node.veth_owners.get(link.name)
    if cid is None:
        return link.name
    owner = node.owner(cid)
    return f"{link.name} (pod {cid}{', ' + owner.netns if owner.netns else ''})"


def check_bridge_addr(node: Node) -> Check:
    """cni0 (the flannel delegate's bridge) carries the FLANNEL_SUBNET gateway address."""
    usable = _usable("flannel.bridge-addr", node)
    if isinstance(usable, Check):
        return usable
    found = []
    for net in usable:
        bridge = net.bridge
        gws = _gateways(net)
        if bridge not in node.links:
            found.append(f"{bridge} does not exist yet: the first pod creates it with "
                         f"{', '.join(map(str, gws))}")
            continue
        have = node.addresses(bridge)
        for gw in gws:
            same_family = conflicting(have, gw)  # the bridge plugin's own rule
            if not same_family:
                continue
            ports = node.ports(bridge)
            wrong = ", ".join(str(a) for a in same_family)
            msg = (f"{bridge} has {wrong}, not the FLANNEL_SUBNET gateway {gw} of network "
                   f'"{net.name}": every new pod fails ("already has an IP address different '
                   f'from {gw}")')
            if ports:
                listed = ", ".join(_port_text(node, p) for p in ports)
                return Check(
                    "flannel.bridge-addr", FAIL, f"{msg}; pods still attached: {listed}",
                    f"drain the node (kubectl drain <node> --ignore-daemonsets), then "
                    f"ip link delete {bridge} (the next pod re-creates it with {gw})",
                    [bridge, *[p.name for p in ports]],
                )
            return Check(
                "flannel.bridge-addr", FAIL, f"{msg}; no pod is attached to {bridge}",
                f"cnitool doctor --fix (re-addresses {bridge} to {gw}), or ip addr flush dev "
                f"{bridge}",
                [bridge],
                [Repair(f"re-address {bridge} to {gw}", _readdress(node, bridge, gw), phase=90)],
            )
        found.append(f"{bridge} has {', '.join(map(str, gws))}")
    return ok("flannel.bridge-addr", "; ".join(found), [n.bridge for n in usable])


def _readdress(node: Node, bridge: str, gw: IPInterface):
    """A repair: put `gw` on `bridge` in place of the conflicting address, through the bridge
    plugin's own re-addressing, which refuses (changing nothing) once a port is attached."""

    def run() -> list[str]:
        try:
            return fix_bridge_address(bridge, str(gw))
        except PortsAttached as e:
            return [f"left {bridge} alone: {e}"]

    return run


def check_mtu(node: Node) -> Check:
    """cni0 and every port on it have FLANNEL_MTU; names the pods that do not."""
    usable = _usable("flannel.mtu", node)
    if isinstance(usable, Check):
        return usable
    found, wrong, objects = [], [], []
    for net in usable:
        mtu = net.delegate.get("mtu") if net.delegate else net.subnet_env.mtu
        bridge = net.bridge
        if bridge not in node.links:
            found.append(f"{bridge} does not exist yet")
            continue
        ports = node.ports(bridge)
        # a bridge without ports says nothing: its MTU follows the ports it gets
        off = [lk for lk in wrong_mtu(node.links.values(), bridge, mtu)
               if ports or lk.name != bridge]
        for lk in off:
            who = _port_text(node, lk) if lk.name != bridge else bridge
            wrong.append(f"{who} has MTU {lk.mtu}")
            objects.append(lk.name)
        if not off:
            found.append(f"{bridge} and its {len(ports)} port(s) have MTU {mtu} (FLANNEL_MTU)"
                         if ports else f"{bridge} has no port yet (new pods get MTU {mtu})")
    if wrong:
        mtu = usable[0].subnet_env.mtu
        return Check(
            "flannel.mtu", WARN,
            f"FLANNEL_MTU is {mtu}, but " + "; ".join(wrong)
            + ": large packets between these pods and the rest of the cluster hang",
            f"ip link set {usable[0].bridge} mtu {mtu}; delete and re-create the pods named "
            "(their interfaces keep the old MTU until then)",
            objects,
        )
    return ok("flannel.mtu", "; ".join(found), [n.bridge for n in usable])


def saved_entries(data_dir: str) -> list[tuple[str, str]]:
    """(container ID, path) of the saved delegate configurations in `data_dir`, read only."""
    try:
        entries = list(os.scandir(data_dir))
    except OSError:
        return []
    out = []
    for e in entries:
        if fileutil.is_temp_name(e.name):
            continue
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            container_id(e.name)
        except (OSError, CNIError):
            continue
        out.append((e.name, e.path))
    return sorted(out)


def check_saved(node: Node) -> Check:
    """Saved delegate configurations (and cached attachments) of pods whose namespace is gone."""
    nets = node.flannel_networks()
    if not nets:
        return _none("flannel.saved", node)
    found, stale, objects, repairs = [], [], [], []
    for net in nets:
        if net.flannel is None:
            continue
        data_dir = net.flannel.data_dir()
        entries = saved_entries(data_dir)
        dead = [(cid, path) for cid, path in entries if node.owner(cid).state == "dead"]
        live = sum(1 for cid, _ in entries if node.owner(cid).state == "live")
        if not entries:
            found.append(f"{data_dir}: no saved delegate configuration")
        elif not dead:
            found.append(f"{data_dir}: {len(entries)} saved delegate configuration(s), {live} of "
                         f"live pods, {len(entries) - live} whose namespace is not known, none of "
                         "a pod whose namespace is gone")
        for cid, path in dead:
            owner = node.owner(cid)
            stale.append(f"{cid} ({owner.why})")
            objects.append(path)
        dead_ids = {cid for cid, _ in dead}
        att = leftovers.dead_attachments(node, net.name)
        dead_ids |= {a.container_id for a in att}
        if dead_ids:
            repairs.append(Repair(
                f'DEL the attachments of network "{net.name}" whose namespace is gone',
                leftovers.release_dead(node, net, sorted(dead_ids)), phase=10,
            ))
        for a in att:
            if a.container_id not in {cid for cid, _ in dead}:
                stale.append(f"{a.container_id} (cached attachment; namespace {a.netns} is gone)")
                objects.append(a.container_id)
    if stale:
        return Check(
            "flannel.saved", WARN,
            f"{len(stale)} saved delegate configuration(s) or attachment(s) belong to pods whose "
            f"namespace is gone: {', '.join(stale)}",
            "cnitool doctor --fix (DELs each: lease, masquerade rules, saved file and cache entry "
            "go)",
            objects, repairs,
        )
    if not found:
        return ok("flannel.saved", "no flannel configuration to read a dataDir from")
    return ok("flannel.saved", "; ".join(found))


CHECKS = [check_subnet_env, check_bridge_addr, check_mtu, check_saved]
