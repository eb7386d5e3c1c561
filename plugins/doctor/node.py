"""The facts about a node that the checks share, each read once and only when first needed.

Configured like cnitool: NETCONFPATH, CNI_PATH, CNI_CACHE_DIR; subnet.env and data directories
come from the configurations themselves (`subnetFile`, `dataDir`, `ipam.dataDir`, with the
plugins' defaults). `proc_root` and `sys_root` let tests point the kernel-global readings at a
prepared tree; netlink, iptables and nft always read the calling thread's network namespace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cni.errors import CNIError

DEFAULT_CACHE_DIR = "/var/lib/cni"
DEFAULT_CNI_PATH = "/opt/cni/bin"
EXTENSIONS = (".conf", ".conflist", ".json")
DEFAULT_BRIDGE = "cni0"
DEFAULT_LEASE_DIR = "/var/lib/cni/networks"


@dataclass
class ConfFile:
    """One file of NETCONFPATH as a runtime loads it: the list, or the error that stops it."""

    path: str
    conf: Any = None  # cni.libcni.conflist.NetworkConfigList
    error: str | None = None


@dataclass
class Network:
    """A loadable network configuration and what its plugins imply for this node."""

    path: str
    conf: Any  # cni.libcni.conflist.NetworkConfigList
    flannel: Any = None  # plugins.flannel.config.FlannelNetConf of its flannel plugin
    flannel_error: str | None = None
    subnet_env: Any = None  # plugins.flannel.subnet.SubnetEnv
    subnet_error: str | None = None
    delegate: dict[str, Any] | None = None  # what flannel hands its delegate now
    bridge: str | None = None  # the bridge its pods attach to
    ipam: Any = None  # ipam.config.Settings when host-local allocates for it
    ipam_error: str | None = None

    @property
    def name(self) -> str:
        """The network name."""
        return self.conf.name

    @property
    def types(self) -> list[str]:
        """The plugin types of the list, in order."""
        return [p.type for p in self.conf.plugins]


@dataclass
class Owner:
    """What is known of a container: its network namespace and whether it still exists."""

    container_id: str
    state: str  # "live", "dead" or "unknown"
    netns: str = ""
    why: str = ""
    networks: set[str] = field(default_factory=set)


class Node:
    """The node as the checks see it (the calling thread's network namespace)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        network: str | None = None,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
    ) -> None:
        self.env = dict(env)
        self.net_dir = env.get("NETCONFPATH", "") or "/etc/cni/net.d"
        cni_path = env.get("CNI_PATH", "") or DEFAULT_CNI_PATH
        self.cni_path = [p for p in cni_path.split(os.pathsep) if p]
        self.cache_dir = env.get("CNI_CACHE_DIR", "") or DEFAULT_CACHE_DIR
        self.only = network
        self.proc_root = proc_root
        self.sys_root = sys_root
        self._ipr: Any = None
        self._fresh: Node | None = None

    def fresh(self) -> Node:
        """A Node configured like this one that reads everything again (made once, at the first
        call): repairs judge evidence by it, not by what the checks saw earlier."""
        if self._fresh is None:
            self._fresh = Node(self.env, network=self.only, proc_root=self.proc_root,
                               sys_root=self.sys_root)
        return self._fresh

    def close(self) -> None:
        """Release the netlink socket, if one was opened."""
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        if self._fresh is not None:
            self._fresh.close()

    # ------------------------------------------------------------------ configurations

    @cached_property
    def conf_files(self) -> list[ConfFile]:
        """Every .conf, .conflist and .json file of NETCONFPATH in name order, loaded as libcni
        loads it (a .conflist as a list, any other as a single plugin up-converted)."""
        from cni.libcni import conflist

        try:
            paths = conflist.conf_files(self.net_dir, EXTENSIONS)
        except CNIError as e:
            return [ConfFile(self.net_dir, error=e.msg)]
        out = []
        for path in paths:
            try:
                if path.endswith(".conflist"):
                    conf = conflist.list_from_file(path)
                else:
                    with open(path, "rb") as f:
                        data = f.read()
                    plugin = conflist.plugin_from_bytes(data)
                    conf = conflist.list_from_plugin(plugin)
                out.append(ConfFile(path, conf=conf))
            except CNIError as e:
                out.append(ConfFile(path, error=e.msg))
            except OSError as e:
                out.append(ConfFile(path, error=f"{e.strerror}"))
        return out

    @cached_property
    def networks(self) -> list[Network]:
        """The loadable networks (only `--network NAME` when given), in libcni's file order."""
        out = []
        for cf in self.conf_files:
            if cf.conf is None or (self.only is not None and cf.conf.name != self.only):
                continue
            out.append(_network(cf))
        return out

    def flannel_networks(self) -> list[Network]:
        """The networks with a flannel plugin."""
        return [n for n in self.networks if "flannel" in n.types]

    # ------------------------------------------------------------------ links

    @property
    def ipr(self) -> Any:
        """An rtnetlink socket in this namespace (opened once)."""
        if self._ipr is None:
            from plugins.linux.rtnl import iproute

            self._ipr = iproute()
        return self._ipr

    @cached_property
    def links(self) -> dict[str, Any]:
        """Every link of this namespace by name (plugins.linux.link.Link)."""
        from plugins.linux.link import list_links

        return {link.name: link for link in list_links(self.ipr)}

    def link_by_index(self, index: int) -> Any:
        """The link with `index`, or None."""
        for link in self.links.values():
            if link.index == index:
                return link
        return None

    def ports(self, bridge: str) -> list[Any]:
        """The links enslaved to `bridge`, by name."""
        br = self.links.get(bridge)
        if br is None:
            return []
        return sorted((lk for lk in self.links.values() if lk.master == br.index), key=lambda lk: lk.name)

    def addresses(self, name: str) -> list[Any]:
        """The addresses of link `name` (ipaddress interfaces), [] when there is no such link."""
        from plugins.linux.addr import list_addresses

        link = self.links.get(name)
        if link is None:
            return []
        return [a.iface for a in list_addresses(self.ipr, link.index)]

    # ------------------------------------------------------------------ attachments

    @cached_property
    def attachments(self) -> list[Any]:
        """The runtime's cached attachments (cni.libcni.cache.Attachment) in CNI_CACHE_DIR."""
        from cni.libcni.cache import ResultCache

        try:
            return ResultCache(self.cache_dir).attachments()
        except OSError:
            return []

    @cached_property
    def owners(self) -> dict[str, Owner]:
        """Container ID -> Owner, from the cached attachments: an attachment whose recorded
        namespace no longer exists (or is no network namespace) is dead, one whose namespace
        exists is live, one that recorded none is unknown. Live wins over dead."""
        from cni.netns import netns_exists

        out: dict[str, Owner] = {}
        for att in self.attachments:
            if not att.netns:
                state, why = "unknown", "no namespace recorded"
            elif netns_exists(att.netns):
                state, why = "live", f"namespace {att.netns} exists"
            else:
                state, why = "dead", f"namespace {att.netns} is gone"
            known = out.get(att.container_id)
            if known is None or _rank(state) > _rank(known.state):
                out[att.container_id] = Owner(att.container_id, state, att.netns, why)
            out[att.container_id].networks.add(att.network)
        from ipam.liveness import DEAD, LIVE

        for states in self.leases.values():
            for ls in states:
                if ls.state not in (DEAD, LIVE):
                    continue
                state = "dead" if ls.state == DEAD else "live"
                known = out.get(ls.container_id)
                if known is None or _rank(state) > _rank(known.state):
                    why = f"lease {ls.ip}: {ls.reason}" + (f" ({ls.netns})" if ls.netns else "")
                    out[ls.container_id] = Owner(ls.container_id, state, ls.netns, why)
        return out

    def lease_dirs(self) -> list[tuple[Network, str, str]]:
        """(network, host-local dataDir, network name) of every network whose leases are kept by
        host-local, once per directory."""
        out, seen = [], set()
        for net in self.networks:
            data_dir = None
            if net.ipam is not None:
                data_dir = net.ipam.data_dir
            elif net.flannel is not None:
                ipam = net.flannel.ipam or {}
                if ipam.get("type", "host-local") == "host-local":
                    data_dir = ipam.get("dataDir") or DEFAULT_LEASE_DIR
            if data_dir and (data_dir, net.name) not in seen:
                seen.add((data_dir, net.name))
                out.append((net, data_dir, net.name))
        return out

    @cached_property
    def leases(self) -> dict[tuple[str, str], list[Any]]:
        """(dataDir, network) -> the state of each lease (ipam.liveness.LeaseState), read only."""
        from ipam.liveness import lease_states

        out = {}
        for _, data_dir, name in self.lease_dirs():
            try:
                out[(data_dir, name)] = lease_states(data_dir, name)
            except (CNIError, OSError):
                out[(data_dir, name)] = []
        return out

    def owner(self, container_id: str) -> Owner:
        """What is known of `container_id` (unknown when nothing is)."""
        return self.owners.get(container_id) or Owner(container_id, "unknown", why="no record")

    @cached_property
    def veth_owners(self) -> dict[str, str]:
        """Host-side interface name -> container ID, from the cached results."""
        out: dict[str, str] = {}
        for path, cid in self._cached_results():
            try:
                with open(path, "rb") as f:
                    doc = json.loads(f.read())
            except (OSError, ValueError):
                continue
            result = doc.get("result") if isinstance(doc, dict) else None
            for iface in (result or {}).get("interfaces") or ():
                if isinstance(iface, dict) and iface.get("name") and not iface.get("sandbox"):
                    out.setdefault(str(iface["name"]), cid)
        return out

    def _cached_results(self) -> list[tuple[str, str]]:
        from cni.libcni.cache import ResultCache

        cache = ResultCache(self.cache_dir)
        out = []
        for att in self.attachments:
            try:
                out.append((cache.path(att.network, att.container_id, att.ifname), att.container_id))
            except CNIError:
                continue
        return out

    # ------------------------------------------------------------------ kernel

    def proc(self, rel: str) -> str | None:
        """The content of `<proc_root>/<rel>` without its trailing newline, or None."""
        try:
            with open(os.path.join(self.proc_root, rel)) as f:
                return f.read().rstrip("\n")
        except OSError:
            return None

    # ------------------------------------------------------------------ firewall

    @cached_property
    def nat(self) -> dict[bool, Any]:
        """iptables nat table per family (False: IPv4), None where it cannot be read."""
        return {v6: _table(v6, "nat") for v6 in (False, True)}

    @cached_property
    def filter(self) -> dict[bool, Any]:
        """iptables filter table per family, None where it cannot be read."""
        return {v6: _table(v6, "filter") for v6 in (False, True)}


def _rank(state: str) -> int:
    return {"unknown": 0, "dead": 1, "live": 2}[state]


def _table(ipv6: bool, table: str) -> Any:
    import shutil

    from plugins.linux import iptables

    if shutil.which("ip6tables-save" if ipv6 else "iptables-save") is None:
        return None
    try:
        return iptables.load(ipv6, table)
    except CNIError:
        return None


def _network(cf: ConfFile) -> Network:
    """A Network with its flannel, subnet.env, delegate, bridge and host-local facts."""
    net = Network(cf.path, cf.conf)
    for plugin in cf.conf.plugins:
        if plugin.type == "flannel":
            _flannel_facts(net, plugin)
            break
        if plugin.type == "bridge":
            request = _request(cf.conf, plugin)
            bridge = request.get("bridge")
            net.bridge = bridge if isinstance(bridge, str) and bridge else DEFAULT_BRIDGE
            _ipam_facts(net, request)
            break
        ipam = plugin.conf.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":  # macvlan, ipvlan, ...
            _ipam_facts(net, _request(cf.conf, plugin))
            break
    return net


def _request(conf: Any, plugin: Any) -> dict[str, Any]:
    """The plugin's stdin as the runtime builds it (name and cniVersion set)."""
    from cni.libcni.request import build_request

    return json.loads(build_request(plugin, conf.name, conf.cni_version))


def _flannel_facts(net: Network, plugin: Any) -> None:
    from plugins.flannel import config as flannel_config
    from plugins.flannel import delegate as flannel_delegate
    from plugins.flannel import subnet as flannel_subnet

    try:
        net.flannel = flannel_config.load(_request(net.conf, plugin), for_add=False)
    except CNIError as e:
        net.flannel_error = e.msg
        return
    try:
        net.subnet_env = flannel_subnet.read(
            net.flannel.subnet_file(), lenient=net.flannel.subnetFileLenient
        )
    except flannel_subnet.SubnetEnvError as e:
        net.subnet_error = str(e)
        return
    try:
        net.delegate = flannel_delegate.build(net.flannel, net.subnet_env)
    except CNIError as e:
        net.flannel_error = e.msg
        return
    if net.delegate.get("type") == "bridge":
        bridge = net.delegate.get("bridge")
        net.bridge = bridge if isinstance(bridge, str) and bridge else DEFAULT_BRIDGE
    _ipam_facts(net, json.loads(flannel_delegate.encode(net.delegate)))


def _ipam_facts(net: Network, request: dict[str, Any]) -> None:
    ipam = request.get("ipam")
    if not isinstance(ipam, dict) or ipam.get("type") != "host-local":
        return
    from ipam.config import load

    try:
        net.ipam = load(request, "")
    except CNIError as e:
        net.ipam_error = e.msg
