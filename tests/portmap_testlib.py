"""Helpers for the portmap tests: a pod network built by the test inside a node namespace,
running portmap (ours or the reference) there, servers in pods and bounded clients.

The pod network is plain iproute2 inside the test's namespaces: a bridge `pmbr0` holding
10.250.7.1/24 and fd00:7::1/64, `pmeth0` holding the node's own address 192.168.77.1/24 and
fd00:77::1/64 (one end of a veth pair kept in the node), and per pod a veth whose pod end is `eth0`
with 10.250.7.<10+i>/24 and fd00:7::<10+i>/64 and default routes via the bridge. Nothing of this
touches the root namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from conformance import harness
from conformance.harness import Netns, PluginRun

OURS = harness.REPO_ROOT / "dist" / "bin" / "portmap"
REFERENCE = harness.REFERENCE_BIN / "portmap"
BRIDGE = "pmbr0"
NODE_IP4 = "192.168.77.1"
NODE_IP6 = "fd00:77::1"
GW4 = "10.250.7.1"
GW6 = "fd00:7::1"


@dataclass
class Pod:
    """A pod namespace wired to the node bridge."""

    ns: Netns
    index: int
    host_veth: str

    @property
    def ip4(self) -> str:
        return f"10.250.7.{10 + self.index}"

    @property
    def ip6(self) -> str:
        return f"fd00:7::{10 + self.index:x}"

    def prev_result(self, version: str = "1.0.0", v4: bool = True, v6: bool = True) -> dict:
        """The result a bridge plugin would have returned for this pod."""
        ips = []
        if v4:
            ips.append({"address": f"{self.ip4}/24", "gateway": GW4, "interface": 2})
        if v6:
            ips.append({"address": f"{self.ip6}/64", "gateway": GW6, "interface": 2})
        if version.startswith("0."):  # 0.3.x/0.4.0 results carry the IP version
            for ip in ips:
                ip["version"] = "6" if ":" in ip["address"] else "4"
        return {
            "cniVersion": version,
            "interfaces": [
                {"name": BRIDGE, "mac": "02:00:00:00:00:01"},
                {"name": self.host_veth, "mac": "02:00:00:00:00:02"},
                {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": self.ns.path},
            ],
            "ips": ips,
        }


def setup_node(node: Netns) -> None:
    """Bridge, node address and forwarding inside the node namespace."""
    node.ip("link", "add", BRIDGE, "type", "bridge")
    node.ip("addr", "add", f"{GW4}/24", "dev", BRIDGE)
    node.ip("addr", "add", f"{GW6}/64", "dev", BRIDGE, "nodad")
    node.ip("link", "set", BRIDGE, "up")
    # the node's "uplink": a veth pair kept inside the node (no dummy module needed)
    node.ip("link", "add", "pmeth0", "type", "veth", "peer", "name", "pmeth0p")
    node.ip("addr", "add", f"{NODE_IP4}/24", "dev", "pmeth0")
    node.ip("addr", "add", f"{NODE_IP6}/64", "dev", "pmeth0", "nodad")
    node.ip("link", "set", "pmeth0p", "up")
    node.ip("link", "set", "pmeth0", "up")
    node.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def add_pod(node: Netns, pod_ns: Netns, index: int) -> Pod:
    """Wire `pod_ns` to the node bridge as pod number `index` (1..200)."""
    veth = f"pmv{index}"
    node.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod_ns.name)
    node.ip("link", "set", veth, "master", BRIDGE, "up")
    pod = Pod(pod_ns, index, veth)
    pod_ns.ip("link", "set", "lo", "up")
    pod_ns.ip("addr", "add", f"{pod.ip4}/24", "dev", "eth0")
    pod_ns.ip("addr", "add", f"{pod.ip6}/64", "dev", "eth0", "nodad")
    pod_ns.ip("link", "set", "eth0", "up")
    pod_ns.ip("route", "add", "default", "via", GW4)
    pod_ns.ip("-6", "route", "add", "default", "via", GW6)
    return pod


def conf(
    mappings: list[dict],
    prev: dict | None,
    *,
    name: str = "pmnet",
    version: str = "1.0.0",
    **keys,
) -> dict:
    """A portmap config with runtimeConfig.portMappings and (unless None) a prevResult."""
    out: dict = {"cniVersion": version, "name": name, "type": "portmap"}
    out.update(keys)
    out["runtimeConfig"] = {"portMappings": mappings}
    if prev is not None:
        out["prevResult"] = prev
    return out


def run(
    exe: Path | str,
    node: Netns,
    command: str,
    config: dict,
    *,
    container_id: str = "ctr1",
    netns: str = "/var/run/netns/none",
    ifname: str = "eth0",
) -> PluginRun:
    """Run portmap once through the protocol inside the node namespace."""
    return harness.run_plugin(
        exe,
        command,
        config,
        containerid=container_id,
        netns=netns,
        ifname=ifname,
        in_netns=node,
        extra_env={"CNI_PY_DEBUG": "1"},
    )


def nat(node: Netns, ipv6: bool = False) -> list[str]:
    """`iptables-save -t nat` lines of the node, without comments and counters."""
    tool = "ip6tables-save" if ipv6 else "iptables-save"
    out = node.exec(tool, "-t", "nat").stdout
    return [
        harness._COUNTERS_RE.sub("[0:0]", ln) for ln in out.splitlines() if not ln.startswith("#")
    ]


def nft_table(node: Netns, family: str) -> list[str]:
    """`nft list table <family> cni_hostport` lines ([] when it does not exist)."""
    proc = node.exec("nft", "list", "table", family, "cni_hostport", check=False)
    return [ln.strip() for ln in proc.stdout.splitlines()] if proc.returncode == 0 else []


def sysctl(node: Netns, name: str) -> str:
    return node.exec("sysctl", "-n", name).stdout.strip()


# A single-process responder (no fork, no shell): TCP and UDP on dual-stack sockets, answering
# every connection or datagram with the reply text. socat's forking servers lost replies under load.
_SERVER = r"""
import select, socket, sys
tcp_port, udp_port, reply = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode() + b"\n"
def sock(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    return s
t, u = sock(socket.SOCK_STREAM, tcp_port), sock(socket.SOCK_DGRAM, udp_port)
t.listen(64)
while True:
    for r in select.select([t, u], [], [])[0]:
        if r is u:
            _, peer = u.recvfrom(2048)
            u.sendto(reply, peer)
        else:
            c, _ = t.accept()
            c.sendall(reply)
            c.shutdown(socket.SHUT_WR)
            c.settimeout(2)
            try:
                while c.recv(2048):
                    pass
            except OSError:
                pass
            c.close()
"""

_CLIENT = r"""
import socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(timeout)
try:
    if proto == "tcp":
        s.connect((host, port))
        data = b""
        while True:
            chunk = s.recv(2048)
            if not chunk:
                break
            data += chunk
    else:
        s.sendto(b"ping\n", (host, port))
        data = s.recvfrom(2048)[0]
    sys.stdout.write(data.decode())
except OSError as e:
    sys.stderr.write(f"{e}\n")
"""


@dataclass
class Servers:
    """Responders started in pod namespaces; stop() kills exactly the processes it started."""

    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, pod: Pod, tcp_port: int, udp_port: int, reply: str) -> None:
        """Answer `reply` on tcp_port and to any datagram on udp_port (IPv4 and IPv6)."""
        self.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", pod.ns.name, sys.executable, "-c", _SERVER,
                 str(tcp_port), str(udp_port), reply],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={"PATH": harness.SAFE_PATH},
            )
        )  # fmt: skip
        wait_listening(pod.ns, tcp_port, udp_port)

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        self.procs.clear()


def wait_listening(ns: Netns, tcp_port: int, udp_port: int, timeout: float = 10.0) -> None:
    """Wait until the pod has a TCP listener and a UDP socket on the ports (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns.exec("ss", "-Hlntu", check=False).stdout
        if f":{tcp_port} " in out and f":{udp_port} " in out:
            return
        time.sleep(0.05)
    raise AssertionError(f"servers on {tcp_port}/{udp_port} did not start in {ns.name}")


def fetch(ns: Netns | str, proto: str, host: str, port: int, timeout: float = 3.0) -> str:
    """What a server answers over TCP or UDP to a client in `ns` ("" when nothing came back)."""
    proc = harness.ns_exec(
        ns, sys.executable, "-c", _CLIENT, proto, host, str(port), str(timeout),
        check=False, timeout=timeout + 10,
    )  # fmt: skip
    return proc.stdout.strip()


def load(text: str) -> dict:
    return json.loads(text)
