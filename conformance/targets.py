"""Per-plugin minimal valid configurations and attach points, for cases that run every plugin.

Every configuration points all state (host-local `dataDir`, flannel `dataDir` and
`subnetFile`) into the sandbox, so even a GC or DEL that acts on state cannot reach
/var/lib/cni or /run/flannel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.bindir import CniDir
from conformance.sandbox import Sandbox

SUBNET_ENV_V4 = (
    "FLANNEL_NETWORK=10.1.0.0/16\n"
    "FLANNEL_SUBNET=10.1.17.1/24\n"
    "FLANNEL_MTU=1472\n"
    "FLANNEL_IPMASQ=true\n"
)
"""docs/flannel-behaviour.md §3.4 / §5.2: the upstream v4 fixture."""


@dataclass(frozen=True)
class Attach:
    """Where one attachment happens: the node namespace the plugin runs in, the pod netns."""

    node: Any  # harness.Netns
    pod: Any  # harness.Netns
    conf: dict[str, Any]

    def kw(self, **extra: Any) -> dict[str, Any]:
        """run_plugin keyword arguments for this attachment."""
        kw: dict[str, Any] = {"in_netns": self.node, "netns": self.pod.path}
        kw.update(extra)
        return kw


def needs(plugin: str) -> tuple[str, ...]:
    """The executables a plugin needs in the same directory (its delegates)."""
    return {
        "bridge": ("bridge", "host-local"),
        "flannel": ("flannel", "bridge", "host-local"),
    }.get(plugin, (plugin,))


def conf(plugin: str, sb: Sandbox, version: str = "1.0.0", name: str = "confnet") -> dict[str, Any]:
    """A minimal valid configuration of `plugin` with all state inside the sandbox."""
    data = str(sb.dir("ipam"))
    if plugin == "loopback":
        c: dict[str, Any] = {"type": "loopback"}
    elif plugin == "host-local":
        c = {"type": "host-local",
             "ipam": {"type": "host-local", "subnet": "10.250.40.0/24", "dataDir": data}}
    elif plugin == "bridge":
        c = {"type": "bridge", "bridge": "confbr0", "isGateway": True,
             "ipam": {"type": "host-local", "subnet": "10.250.41.0/24", "dataDir": data}}
    elif plugin == "portmap":
        c = {"type": "portmap", "capabilities": {"portMappings": True},
             "prevResult": _prev_result(version)}
    elif plugin == "flannel":
        env = sb.dir("run-flannel") / "subnet.env"
        if not env.exists():
            env.write_text(SUBNET_ENV_V4)
        c = {"type": "flannel", "subnetFile": str(env), "dataDir": str(sb.dir("flannel")),
             "ipam": {"dataDir": data}, "delegate": {"bridge": "confbr1"}}
    else:
        raise ValueError(f"unknown plugin {plugin}")
    return {"cniVersion": version, "name": name, **c}


def _prev_result(version: str) -> dict[str, Any]:
    if version.startswith("0.3") or version == "0.4.0":
        return {"cniVersion": version,
                "ips": [{"version": "4", "address": "10.250.42.2/24", "gateway": "10.250.42.1"}],
                "dns": {}}
    return {"cniVersion": version, "ips": [{"address": "10.250.42.2/24", "gateway": "10.250.42.1"}]}


def attach(cni: CniDir, plugin: str, sb: Sandbox, version: str = "1.0.0") -> Attach:
    """A node namespace, a pod namespace and a valid config of `plugin` for one ADD."""
    node = sb.netns("node")
    pod = sb.netns("pod")
    return Attach(node, pod, conf(plugin, sb, version))
