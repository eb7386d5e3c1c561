"""Two nodes, two pods, both flannel backends: the pods attached by our flannel plugin on each
node reach each other across the nodes, and a don't-fragment ping shows the pod MTU fits the
tunnel. The test plays flanneld (conformance/topology.py).

A directory without flannel (the reference) attaches the pods with the bridge config flannel
would generate, which proves the topology itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import observe
from conformance.bindir import CniDir
from conformance.checks import require
from conformance.sandbox import Sandbox
from conformance.topology import MTU, TwoNodes, ping

pytestmark = pytest.mark.twonode

# 20 bytes of IPv4 header + 8 of ICMP: the largest payload whose packet is exactly the MTU
MAX_PAYLOAD = MTU - 28


def _attach(cni: CniDir, topo: TwoNodes, n: Any, plugin: str) -> tuple[Any, dict[str, Any]]:
    pod = topo.sb.netns("pod")
    n.pods.append(pod)
    conf = topo.flannel_conf(n) if plugin == "flannel" else topo.bridge_conf(n)
    run = cni.run(plugin, "ADD", conf, in_netns=n.ns, netns=pod.path,
                  containerid=f"pod{n.index}")
    assert run.returncode == 0, f"ADD on node{n.index}: {run.stdout} {run.stderr[-500:]}"
    return pod, run.result


def _detach(cni: CniDir, topo: TwoNodes, n: Any, pod: Any, plugin: str) -> None:
    conf = topo.flannel_conf(n) if plugin == "flannel" else topo.bridge_conf(n)
    run = cni.run(plugin, "DEL", conf, in_netns=n.ns, netns=pod.path,
                  containerid=f"pod{n.index}")
    assert run.returncode == 0, f"DEL on node{n.index}: {run.stdout} {run.stderr[-500:]}"


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_two_nodes(cni: CniDir, sb: Sandbox, mode: str) -> None:
    """Pods on node1 (10.244.1.0/24) and node2 (10.244.2.0/24) ping each other both ways;
    eth0 MTU is 1450; a DF ping of exactly 1450 bytes passes and one byte more is refused;
    in VXLAN mode the traffic went through flannel.1. DEL on both nodes then releases the
    leases (and flannel's scratch files)."""
    if cni.has("flannel"):
        require(cni, "flannel", "bridge", "host-local")
        plugin = "flannel"
    else:
        require(cni, "bridge", "host-local")
        plugin = "bridge"  # the stand-in: the delegate config flannel would generate
    topo = TwoNodes(sb, mode)
    n1, n2 = topo.nodes
    pod1, res1 = _attach(cni, topo, n1, plugin)
    pod2, res2 = _attach(cni, topo, n2, plugin)
    ip1 = res1["ips"][0]["address"].split("/")[0]
    ip2 = res2["ips"][0]["address"].split("/")[0]
    assert ip1.startswith("10.244.1.") and ip2.startswith("10.244.2."), (ip1, ip2)
    for pod in (pod1, pod2):
        eth0 = next(li for li in observe.kernel(pod)["links"] if li["ifname"] == "eth0")
        assert eth0["mtu"] == MTU, eth0
    tx_before = topo.vtep_tx_packets(n1) if mode == "vxlan" else 0
    p = ping(pod1, ip2)
    assert p.returncode == 0, f"pod1 -> pod2 ({mode}): {p.stdout}{p.stderr}"
    p = ping(pod2, ip1)
    assert p.returncode == 0, f"pod2 -> pod1 ({mode}): {p.stdout}{p.stderr}"
    p = ping(pod1, ip2, size=MAX_PAYLOAD, dont_fragment=True)
    assert p.returncode == 0, f"DF ping of {MTU} bytes ({mode}): {p.stdout}{p.stderr}"
    p = ping(pod1, ip2, size=MAX_PAYLOAD + 1, dont_fragment=True, tries=1)
    assert p.returncode != 0, f"a {MTU + 1}-byte DF packet left the pod ({mode}): {p.stdout}"
    if mode == "vxlan":
        assert topo.vtep_tx_packets(n1) > tx_before, "no packet went through flannel.1"
    _detach(cni, topo, n1, pod1, plugin)
    _detach(cni, topo, n2, pod2, plugin)
    for n in topo.nodes:
        leases = [f for f in (n.ipam_data / "cbr0").iterdir() if f.name.startswith("10.")]
        assert leases == [], leases
        if plugin == "flannel":
            assert list(n.flannel_data.iterdir()) == []
