"""A flannel node in throwaway namespaces for the `cnitool doctor` tests.

Built like the demo: the kube-flannel conflist (every state path in a temp dir), an embedded
subnet.env, pods attached through dist/bin's cnitool in the node namespace. The doctor runs
either in-process inside the node namespace (`doctor()`, which can point kernel readings at a
prepared /proc tree) or as the built executable (`doctor_exe()`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from conformance import harness

DIST = harness.REPO_ROOT / "dist" / "bin"
# Every check's id in report order: a stable interface (the JSON report's keys).
ALL_IDS = [
    "conf.parse", "conf.winner", "conf.plugins",
    "flannel.subnet-env", "flannel.bridge-addr", "flannel.mtu", "flannel.saved",
    "ipam.leases", "ipam.exhaustion",
    "kernel.ip-forward", "kernel.br-netfilter",
    "netfilter.forward", "netfilter.backend",
    "portmap.stale", "overlay.vxlan",
]  # fmt: skip
NETWORK = "cbr0"
SUBNET_ENV = (
    "FLANNEL_NETWORK=10.244.0.0/16\n"
    "FLANNEL_SUBNET=10.244.1.1/24\n"
    "FLANNEL_MTU=1450\n"
    "FLANNEL_IPMASQ=true\n"
)


def flannel_conflist(state: harness.StateDirs, name: str = NETWORK) -> dict[str, Any]:
    """The kube-flannel conflist with every state path pointed into `state`."""
    return {
        "name": name,
        "cniVersion": "0.3.1",
        "plugins": [
            {
                "type": "flannel",
                "subnetFile": str(state.subnet_env),
                "dataDir": str(state.flannel),
                "ipam": {"dataDir": str(state.networks)},
                "delegate": {"hairpinMode": True, "isDefaultGateway": True},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


class DoctorNode:
    """A node namespace with the flannel conflist and subnet.env; pods added on demand."""

    def __init__(self, node: harness.Netns, make_pod, state: harness.StateDirs) -> None:
        self.node = node
        self.make_pod = make_pod
        self.state = state
        self.cni_path = str(DIST)
        state.subnet_env.write_text(SUBNET_ENV)
        self.write_conf("10-flannel.conflist", flannel_conflist(state))
        self.pods: dict[str, harness.Netns] = {}

    # ------------------------------------------------------------------ set-up

    def write_conf(self, name: str, conf: dict[str, Any] | str) -> Path:
        """Write a file into NETCONFPATH."""
        path = self.state.netconf / name
        path.write_text(conf if isinstance(conf, str) else json.dumps(conf, indent=2))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """cnitool's environment for this node."""
        env = {
            "PATH": harness.SAFE_PATH,
            **harness.IN_PROCESS_ENV,
            "NETCONFPATH": str(self.state.netconf),
            "CNI_PATH": self.cni_path,
            "CNI_CACHE_DIR": str(self.state.cache),
        }
        env.update(extra)
        return env

    def cnitool(self, *args: str, cap: dict | None = None) -> subprocess.CompletedProcess[str]:
        """dist/bin/cnitool with `args` in the node namespace."""
        env = self.env()
        if cap is not None:
            env["CAP_ARGS"] = json.dumps(cap)
        return harness.ns_exec(self.node, str(DIST / "cnitool"), *args, env=env, check=False)

    def add_pod(self, label: str, host_port: int | None = None) -> harness.Netns:
        """A new pod namespace attached with `cnitool add cbr0` (and a hostPort mapping)."""
        pod = self.make_pod(label.replace("-", "")[:10])
        cap = None
        if host_port is not None:
            cap = {
                "portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]
            }
        proc = self.cnitool("add", NETWORK, pod.path, cap=cap)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        self.pods[label] = pod
        return pod

    def kill_pod(self, label: str) -> None:
        """Delete a pod's namespace without any DEL (a crashed runtime, a reboot)."""
        harness.delete_netns(self.pods.pop(label))

    def sh(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """A command in the node namespace; must succeed."""
        return harness.ns_exec(self.node, *argv)

    # ------------------------------------------------------------------ the doctor

    def doctor(self, *args: str, proc_root: str = "/proc", env: dict[str, str] | None = None
               ) -> tuple[int, dict[str, dict[str, Any]], dict[str, Any]]:
        """`cnitool doctor --json args` in-process inside the node namespace:
        (exit status, checks by id, the whole JSON document)."""
        from cni.netns import in_netns
        from plugins.doctor import cli

        out, err = io.StringIO(), io.StringIO()
        with in_netns(self.node.path):
            rc = cli.run(["--json", *args], env or self.env(), out, err, proc_root=proc_root)
        assert rc in (0, 1), err.getvalue()
        doc = json.loads(out.getvalue())
        return rc, {c["id"]: c for c in doc["checks"]}, doc

    def doctor_exe(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The built `cnitool doctor args` in the node namespace."""
        return self.cnitool("doctor", *args)


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 (or `dir`) of everything under `root`, plus each entry's mode and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p)] = f"{kind} {st.st_mode:o} {st.st_mtime_ns}"
    return out


def fake_proc(root: Path, *, ip_forward: str = "1", br_netfilter: bool = True) -> str:
    """A /proc stand-in with the kernel settings the doctor reads (for the kernel-global ones,
    which a test must not change on the machine)."""
    (root / "sys/net/ipv4").mkdir(parents=True, exist_ok=True)
    (root / "sys/net/ipv4/ip_forward").write_text(ip_forward + "\n")
    (root / "sys/net/ipv6/conf/all").mkdir(parents=True, exist_ok=True)
    (root / "sys/net/ipv6/conf/all/forwarding").write_text("0\n")
    if br_netfilter:
        (root / "sys/net/bridge").mkdir(parents=True, exist_ok=True)
        for name in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
            (root / "sys/net/bridge" / name).write_text("1\n")
    (root / "thread-self/net").mkdir(parents=True, exist_ok=True)
    (root / "thread-self/net/ip_tables_names").write_text("")
    return str(root)
