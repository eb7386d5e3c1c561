"""What a network configuration implies for this node: its file, its flannel facts
(subnet.env, the delegate it builds), the bridge its pods attach to and host-local's settings.

Read the way the plugins read them (plugins.flannel, ipam.config), never by rules of our own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cni.errors import CNIError
from cni.libcni.conflist import NetworkConfigList, PluginConfig
from cni.libcni.request import build_request
from ipam import config as ipam_config
from plugins.flannel import config as flannel_config
from plugins.flannel import delegate as flannel_delegate
from plugins.flannel import subnet as flannel_subnet

DEFAULT_BRIDGE = "cni0"


@dataclass
class ConfFile:
    """One file of NETCONFPATH as a runtime loads it: the list, or the error that stops it."""

    path: str
    conf: NetworkConfigList | None = None
    error: str | None = None


@dataclass
class Network:
    """A loadable network configuration and what its plugins imply for this node."""

    path: str
    conf: NetworkConfigList
    flannel: flannel_config.Settings | None = None  # of its flannel plugin
    flannel_error: str | None = None
    subnet_env: flannel_subnet.SubnetEnv | None = None
    subnet_error: str | None = None
    delegate: dict[str, Any] | None = None  # what flannel hands its delegate now
    bridge: str | None = None  # the bridge its pods attach to
    ipam: ipam_config.Settings | None = None  # when host-local allocates for it
    ipam_error: str | None = None

    @property
    def name(self) -> str:
        """The network name."""
        return self.conf.name

    @property
    def types(self) -> list[str]:
        """The plugin types of the list, in order."""
        return [p.type for p in self.conf.plugins]


def network_of(cf: ConfFile) -> Network:
    """The Network of a loaded file (`cf.conf` set) with its flannel, subnet.env, delegate,
    bridge and host-local facts."""
    assert cf.conf is not None
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


def _request(conf: NetworkConfigList, plugin: PluginConfig) -> dict[str, Any]:
    """The plugin's stdin as the runtime builds it (name and cniVersion set)."""
    return json.loads(build_request(plugin, conf.name, conf.cni_version))


def _flannel_facts(net: Network, plugin: PluginConfig) -> None:
    try:
        flannel = net.flannel = flannel_config.load(_request(net.conf, plugin), for_add=False)
    except CNIError as e:
        net.flannel_error = e.msg
        return
    try:
        subnet_env = net.subnet_env = flannel_subnet.read(
            flannel.subnet_file(), lenient=flannel.subnetFileLenient
        )
    except flannel_subnet.SubnetEnvError as e:
        net.subnet_error = str(e)
        return
    try:
        delegate = net.delegate = flannel_delegate.build(flannel, subnet_env)
    except CNIError as e:
        net.flannel_error = e.msg
        return
    if delegate.get("type") == "bridge":
        bridge = delegate.get("bridge")
        net.bridge = bridge if isinstance(bridge, str) and bridge else DEFAULT_BRIDGE
    _ipam_facts(net, json.loads(flannel_delegate.encode(delegate)))


def _ipam_facts(net: Network, request: dict[str, Any]) -> None:
    ipam = request.get("ipam")
    if not isinstance(ipam, dict) or ipam.get("type") != "host-local":
        return
    try:
        net.ipam = ipam_config.load(request, "")
    except CNIError as e:
        net.ipam_error = e.msg
