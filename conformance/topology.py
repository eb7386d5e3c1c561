"""Two flannel nodes on an underlay, as the flannel documentation draws them; the test plays
flanneld.

    underlay ns: bridge br0
      |-- veth -- node1 ns: eth0 192.168.50.2/24, subnet.env 10.244.1.1/24, MTU 1450
      `-- veth -- node2 ns: eth0 192.168.50.3/24, subnet.env 10.244.2.1/24, MTU 1450

What flanneld would do on each node, per backend:

* ``vxlan``: `flannel.1` (VNI 1, UDP 8472, local = the node's underlay address, no learning, MTU
  1450) holding `<subnet network>/32`. Unlike flanneld, the device copies the inner don't-fragment
  bit to the outer header (`df inherit`): with the kernel default the outer packet would be
  fragmented silently and a DF ping could not show that the pod MTU fits; for the other node a
  permanent neighbour entry (its flannel.1 address -> its flannel.1 MAC), a permanent fdb entry
  (that MAC -> its underlay address) and a route to its subnet via its flannel.1 address, onlink.
* ``host-gw``: a route to the other node's subnet via its underlay address.

Everything lives in namespaces of a `Sandbox`; nothing touches the root namespace.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import harness
from conformance.sandbox import Sandbox

NETWORK = "10.244.0.0/16"
MTU = 1450
VNI = 1
VXLAN_PORT = 8472


@dataclass
class Node:
    """One node: its namespace, underlay address, flannel lease and private state."""

    index: int
    ns: harness.Netns
    underlay_ip: str
    subnet: str  # FLANNEL_SUBNET as flanneld writes it, e.g. 10.244.1.1/24
    subnet_env: Path
    flannel_data: Path
    ipam_data: Path
    vtep_mac: str = ""
    pods: list[harness.Netns] = field(default_factory=list)

    @property
    def network_addr(self) -> str:
        """The lease's network address (10.244.1.0), what flanneld puts on flannel.1."""
        return self.subnet.split("/")[0].rsplit(".", 1)[0] + ".0"

    @property
    def subnet_cidr(self) -> str:
        """The lease as a network (10.244.1.0/24)."""
        return f"{self.network_addr}/{self.subnet.split('/')[1]}"

    def subnet_env_text(self) -> str:
        """subnet.env exactly as flanneld writes it (docs/flannel-behaviour.md §2.1)."""
        return (f"FLANNEL_NETWORK={NETWORK}\nFLANNEL_SUBNET={self.subnet}\n"
                f"FLANNEL_MTU={MTU}\nFLANNEL_IPMASQ=true\n")


class TwoNodes:
    """Builds the underlay, both nodes and the chosen backend inside `sb`."""

    def __init__(self, sb: Sandbox, mode: str) -> None:
        if mode not in ("vxlan", "host-gw"):
            raise ValueError(f"unknown backend {mode!r}")
        self.sb, self.mode = sb, mode
        self.underlay = sb.netns("underlay")
        self.underlay.ip("link", "add", "br0", "type", "bridge")
        self.underlay.ip("link", "set", "br0", "up")
        self.nodes = [self._node(1, "192.168.50.2"), self._node(2, "192.168.50.3")]
        if mode == "vxlan":
            for n in self.nodes:
                self._vtep(n)
            for n in self.nodes:
                for other in self.nodes:
                    if other is not n:
                        self._vxlan_peer(n, other)
        else:
            for n in self.nodes:
                for other in self.nodes:
                    if other is not n:
                        n.ns.ip("route", "add", other.subnet_cidr, "via", other.underlay_ip,
                                "dev", "eth0")

    def _node(self, i: int, ip: str) -> Node:
        ns = self.sb.netns("node")
        peer = f"ul{i}"
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns",
              self.underlay.name)
        self.underlay.ip("link", "set", peer, "master", "br0", "up")
        ns.ip("addr", "add", f"{ip}/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        state = self.sb.dir(f"node{i}")
        env = state / "run-flannel" / "subnet.env"
        env.parent.mkdir(parents=True)
        node = Node(i, ns, ip, f"10.244.{i}.1/24", env, state / "flannel", state / "networks")
        env.write_text(node.subnet_env_text())
        return node

    def _vtep(self, n: Node) -> None:
        n.ns.ip("link", "add", "flannel.1", "type", "vxlan", "id", str(VNI), "local",
                n.underlay_ip, "dev", "eth0", "dstport", str(VXLAN_PORT), "nolearning",
                "df", "inherit")
        n.ns.ip("link", "set", "flannel.1", "mtu", str(MTU))
        n.ns.ip("addr", "add", f"{n.network_addr}/32", "dev", "flannel.1")
        n.ns.ip("link", "set", "flannel.1", "up")
        info = json.loads(n.ns.ip("-j", "link", "show", "flannel.1").stdout)[0]
        n.vtep_mac = info["address"]

    def _vxlan_peer(self, n: Node, other: Node) -> None:
        n.ns.ip("neigh", "replace", other.network_addr, "lladdr", other.vtep_mac, "dev",
                "flannel.1", "nud", "permanent")
        n.ns.exec("bridge", "fdb", "append", other.vtep_mac, "dev", "flannel.1", "dst",
                  other.underlay_ip, "self", "permanent")
        n.ns.ip("route", "add", other.subnet_cidr, "via", other.network_addr, "dev",
                "flannel.1", "onlink")

    def flannel_conf(self, n: Node) -> dict[str, Any]:
        """The flannel network config of node `n` (kube-flannel's delegate settings)."""
        return {"cniVersion": "1.0.0", "name": "cbr0", "type": "flannel",
                "subnetFile": str(n.subnet_env), "dataDir": str(n.flannel_data),
                "ipam": {"dataDir": str(n.ipam_data)},
                "delegate": {"hairpinMode": True, "isDefaultGateway": True}}

    def bridge_conf(self, n: Node) -> dict[str, Any]:
        """The bridge config flannel generates for node `n` (docs/flannel-behaviour.md §3.2-3.4),
        used to attach pods when a directory has no flannel (the reference stand-in)."""
        return {"cniVersion": "1.0.0", "name": "cbr0", "type": "bridge", "ipMasq": False,
                "isGateway": True, "mtu": MTU, "hairpinMode": True, "isDefaultGateway": True,
                "ipam": {"type": "host-local", "dataDir": str(n.ipam_data),
                         "ranges": [[{"subnet": n.subnet_cidr}]],
                         "routes": [{"dst": NETWORK}]}}

    def vtep_tx_packets(self, n: Node) -> int:
        """Packets sent by node n's flannel.1 so far."""
        info = json.loads(n.ns.ip("-j", "-s", "link", "show", "flannel.1").stdout)[0]
        return int(info["stats64"]["tx"]["packets"])


def ping(src: harness.Netns, dst_ip: str, *, size: int | None = None, dont_fragment: bool = False,
         tries: int = 3) -> subprocess.CompletedProcess[str]:
    """`ping -c 1` from inside `src`, retried (the first packet may wait on ARP)."""
    argv = ["ping", "-c", "1", "-W", "2"]
    if size is not None:
        argv += ["-s", str(size)]
    if dont_fragment:
        argv += ["-M", "do"]
    proc = None
    for _ in range(tries):
        proc = harness.ns_exec(src, *argv, dst_ip, check=False)
        if proc.returncode == 0:
            return proc
    assert proc is not None
    return proc
