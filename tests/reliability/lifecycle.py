"""Attachments driven through the real executables, for the crash and concurrency tests.

A `Scenario` is one plugin with a working configuration whose state lives in a temp dir: the
configuration, where its leases / saved configurations are, and how to read the node back.
Snapshots are taken from the test process by entering the node namespace on the calling
thread for read-only netlink dumps and one `nft list ruleset` (cni.netns.in_netns), so they
cost milliseconds; nothing is ever changed that way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import harness
from conformance.harness import Netns
from tests.reliability import nsstate

BIN = harness.REPO_ROOT / "dist" / "bin"
SUBNET_ENV = (
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\n"
    "FLANNEL_IPV6_NETWORK=fd44::/56\nFLANNEL_IPV6_SUBNET=fd44:0:0:7::1/64\n"
    "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
)
_LEASE_CONTENT = re.compile(rb"^[^\r\n]+(\r\n[^\r\n]+)?$")


@dataclass
class Scenario:
    """One plugin, configured to work inside `node` with state under `state`."""

    plugin: str
    node: Netns
    state: Path
    conf: dict[str, Any]
    lease_root: Path | None = None  # host-local dataDir (holds <network>/ dirs)
    saved_dir: Path | None = None  # flannel dataDir
    bridges: set[str] = field(default_factory=set)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. a warm worker's switch

    @property
    def exe(self) -> Path:
        """The executable under test."""
        return BIN / self.plugin

    def conf_for(self, pod: Netns | None) -> dict[str, Any]:
        """The configuration for an attachment in `pod` (portmap's prevResult names it)."""
        conf = json.loads(json.dumps(self.conf))
        if self.plugin == "portmap" and pod is not None:
            conf["prevResult"]["interfaces"][0]["sandbox"] = pod.path
        return conf

    def env(self, command: str, cid: str, pod: Netns | None) -> dict[str, str]:
        """The protocol environment for one call."""
        return harness.plugin_env(
            command, containerid=cid, netns=pod.path if pod is not None else "", ifname="eth0",
            cni_path=str(BIN), extra_env={"CNI_PY_DEBUG": "1", **self.extra_env},
        )

    def run(
        self, command: str, cid: str, pod: Netns | None, timeout: float = 120
    ) -> harness.PluginRun:
        """One call of the executable through the protocol inside the node namespace."""
        return harness.run_plugin(
            self.exe, command, self.conf_for(pod), containerid=cid,
            netns=pod.path if pod is not None else "", cni_path=str(BIN), in_netns=self.node,
            extra_env={"CNI_PY_DEBUG": "1", **self.extra_env}, timeout=timeout,
        )

    # ---- state

    def snapshot(self) -> nsstate.Snapshot:
        """The node's links, addresses, routes, rules, firewall, and the state files."""
        from cni.netns import in_netns

        with in_netns(self.node.path):
            return nsstate.snapshot_here({"state": str(self.state)})

    def attachment(self, cids: set[str], results: list[Any] = ()) -> nsstate.Attachment:
        """What identifies these containers' leftovers."""
        att = nsstate.Attachment(ids=set(cids), bridges=set(self.bridges))
        for r in results:
            att.add_result_ips(r)
        if self.plugin == "portmap":
            att.add_result_ips(self.conf.get("prevResult"))
        return att

    def leases(self) -> dict[str, bytes]:
        """host-local lease files (network/ip -> content) under the lease root."""
        out: dict[str, bytes] = {}
        if self.lease_root is None or not self.lease_root.is_dir():
            return out
        for netdir in self.lease_root.iterdir():
            if not netdir.is_dir():
                continue
            for f in netdir.iterdir():
                if f.is_file() and _is_ip(f.name):
                    out[f"{netdir.name}/{f.name}"] = f.read_bytes()
        return out

    def torn_files(self) -> list[str]:
        """Lease, last_reserved_ip and saved-configuration files that are empty or torn."""
        problems = []
        for name, content in self.leases().items():
            if not _LEASE_CONTENT.match(content):
                problems.append(f"lease {name} has torn content {content[:80]!r}")
        if self.lease_root is not None and self.lease_root.is_dir():
            for f in self.lease_root.glob("*/last_reserved_ip.*"):
                if not _is_ip(f.read_text(errors="replace")):
                    problems.append(f"{f.name} holds {f.read_bytes()[:80]!r}")
        if self.saved_dir is not None and self.saved_dir.is_dir():
            for f in self.saved_dir.iterdir():
                if f.name.startswith("."):
                    continue  # temporary files of atomic writes, never read as configurations
                try:
                    obj = json.loads(f.read_bytes())
                    ok = isinstance(obj, dict) and bool(obj.get("type"))
                except ValueError:
                    ok = False
                if not ok:
                    problems.append(
                        f"saved configuration {f.name} is torn: {f.read_bytes()[:80]!r}"
                    )
        return problems

    def temp_files(self) -> list[str]:
        """Leftover temporary files of interrupted atomic writes, anywhere under the state dir."""
        return sorted(
            str(p.relative_to(self.state)) for p in self.state.rglob("*") if ".tmp-" in p.name
        )


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def make_scenario(plugin: str, node: Netns, state: Path, *, network: str = "relnet",
                  bridge: str = "relbr0", subnet: str = "10.80.0.0/24", subnet6: str = "fd80::/120",
                  backend: str | None = None) -> Scenario:
    """A working configuration of `plugin` whose state lives under `state`."""
    state.mkdir(parents=True, exist_ok=True)
    leases = state / "networks"
    ipam = {"type": "host-local", "ranges": [[{"subnet": subnet}], [{"subnet": subnet6}]],
            "dataDir": str(leases)}
    if plugin == "host-local":
        conf = {"cniVersion": "1.0.0", "name": network, "type": "bridge", "ipam": ipam}
        return Scenario(plugin, node, state, conf, lease_root=leases)
    if plugin == "bridge":
        conf = {"cniVersion": "1.0.0", "name": network, "type": "bridge", "bridge": bridge,
                "isGateway": True, "ipMasq": True, "ipam": ipam}
        if backend:
            conf["ipMasqBackend"] = backend
        return Scenario(plugin, node, state, conf, lease_root=leases, bridges={bridge})
    if plugin == "flannel":
        env = state / "subnet.env"
        env.write_text(SUBNET_ENV)
        conf = {"cniVersion": "1.0.0", "name": network, "type": "flannel", "subnetFile": str(env),
                "dataDir": str(state / "flannel"), "subnetFileWait": 0,
                "delegate": {"bridge": bridge, "ipMasq": True},
                "ipam": {"dataDir": str(leases)}}
        return Scenario(plugin, node, state, conf, lease_root=leases, saved_dir=state / "flannel",
                        bridges={bridge})
    if plugin == "portmap":
        conf = {
            "cniVersion": "1.0.0",
            "name": network,
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "snat": True,
            "runtimeConfig": {
                "portMappings": [
                    {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 18053, "containerPort": 53, "protocol": "udp"},
                    {
                        "hostPort": 18443,
                        "containerPort": 443,
                        "protocol": "tcp",
                        "hostIP": "127.0.0.1",
                    },
                ]
            },
            "prevResult": {
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": ""}],
                "ips": [
                    {"address": "10.80.0.5/24", "interface": 0},
                    {"address": "fd80::5/120", "interface": 0},
                ],
            },
        }
        if backend:
            conf["backend"] = backend
        return Scenario(plugin, node, state, conf)
    raise ValueError(plugin)


# --------------------------------------------------------------------------- killing


@dataclass
class KilledRun:
    """An ADD killed with SIGKILL after `delay` seconds (or finished before that)."""

    delay: float
    returncode: int  # -9 when the kill landed
    stdout: str
    stderr: str
    orphans_killed: bool  # children still running 10 s after the kill had to be killed
    duration: float  # seconds from start to exit, for a run that finished before the kill

    @property
    def killed(self) -> bool:
        """True when the plugin was still running when SIGKILL arrived."""
        return self.returncode == -signal.SIGKILL


def add_and_kill(sc: Scenario, cid: str, pod: Netns | None, delay: float) -> KilledRun:
    """Start ADD, SIGKILL the plugin process (only it, as a runtime's timeout does) after
    `delay` seconds, then wait for whatever it had started (iptables-restore, nft) to finish."""
    argv = ["ip", "netns", "exec", sc.node.name, str(sc.exe)]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=sc.env("ADD", cid, pod),
        start_new_session=True,
    )
    data = json.dumps(sc.conf_for(pod)).encode()
    deadline = time.monotonic() + delay
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    proc.stdin = None  # closed: communicate() must not flush it
    started = deadline - delay
    duration = 0.0
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        duration = time.monotonic() - started  # it finished before the kill was due
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=60)
    orphans = _wait_group(proc.pid, 10.0)
    return KilledRun(
        delay,
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        orphans,
        duration,
    )


def _wait_group(pgid: int, budget: float) -> bool:
    """Wait until no process of group `pgid` is left; SIGKILL them after `budget` s (True)."""
    end = time.monotonic() + budget
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def time_add(sc: Scenario, pod: Netns | None, rounds: int = 5) -> float:
    """Median wall time of a whole ADD (process start to exit), each undone by DEL; the first
    round (cold caches, creating the bridge and chains) is not counted."""
    spent: list[float] = []
    for i in range(rounds + 1):
        cid = f"timing-{i}"
        t0 = time.monotonic()
        r = sc.run("ADD", cid, pod)
        spent.append(time.monotonic() - t0)
        assert r.returncode == 0, f"{sc.plugin} ADD failed while timing: {r.stdout} {r.stderr}"
        d = sc.run("DEL", cid, pod)
        assert d.returncode == 0, f"{sc.plugin} DEL failed while timing: {d.stdout} {d.stderr}"
    return sorted(spent[1:])[rounds // 2]
