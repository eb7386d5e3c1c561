#!/usr/bin/env python3
"""`cnitool doctor` on a busy node: 110 pods and 60,000 leases (target: under 2 s).

    bench_doctor.py [--pods 110] [--leases 60000] [--dead 10] [--rounds 5] [--bin dist/bin]

As root. A node namespace gets the kube-flannel conflist with a /16 node subnet (every state
path in a temp dir); `leases - pods` reference-style lease files are written first (a node that
has been running a while, owners without a liveness record), then `pods` pods are attached with
the built cnitool (each with a hostPort), and `dead` of their namespaces are deleted without DEL
(a crashed runtime). Then `cnitool doctor --json` runs `rounds` times in the node namespace as
the built executable: wall time and CPU (user + system of the child) are printed, median and
max, with the time of each check measured once in this process. Everything is removed at the
end. A benchmark, not a test: it asserts nothing beyond the doctor answering.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK = "cbr0"
TARGET_S = 2.0


def ip(*args: str) -> None:
    """`ip args`, which must succeed."""
    subprocess.run(["ip", *args], check=True, capture_output=True)


def fill(netdir: Path, count: int) -> None:
    """`count` reference-style leases from 10.128.2.0 on, inside the node subnet 10.128.0.0/16
    (the pods, attached afterwards, take the free addresses from 10.128.0.2 on)."""
    netdir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        n = 512 + i  # 10.128.2.0 onwards: the pods take the first addresses
        (netdir / f"10.128.{n >> 8}.{n & 0xFF}").write_bytes(f"old-{i:06d}\r\neth0".encode())


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, child CPU s, process) of one run."""
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu, proc


def per_check(node_path: str, env: dict[str, str]) -> list[tuple[str, float]]:
    """Each check's time in this process, inside the node namespace (one run)."""
    from cni.netns import in_netns
    from plugins.doctor import cli
    from plugins.doctor.node import Node

    out = []
    with in_netns(node_path):
        node = Node(env)
        try:
            for check_id, check in cli.CHECKS:
                t0 = time.perf_counter()
                check(node)
                out.append((check_id, time.perf_counter() - t0))
        finally:
            node.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Build the node, time the doctor, print the figures, remove everything; exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=110)
    p.add_argument("--leases", type=int, default=60000)
    p.add_argument("--dead", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bin", default=str(REPO / "dist" / "bin"))
    args = p.parse_args(argv)
    bindir = Path(args.bin).resolve()
    tag = f"pycni-bdoc-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix=tag + "-"))
    made: list[str] = []
    try:
        subnet_env = tmp / "subnet.env"
        subnet_env.write_text("FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.128.0.1/16\n"
                              "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
        (tmp / "net.d").mkdir()
        conf = {"name": NETWORK, "cniVersion": "0.3.1", "plugins": [
            {"type": "flannel", "subnetFile": str(subnet_env), "dataDir": str(tmp / "flannel"),
             "ipam": {"dataDir": str(tmp / "networks")},
             "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        (tmp / "net.d" / "10-flannel.conflist").write_text(json.dumps(conf))
        env = {"PATH": SAFE_PATH, "PYCNI_WORKER": "0", "NETCONFPATH": str(tmp / "net.d"),
               "CNI_PATH": str(bindir), "CNI_CACHE_DIR": str(tmp / "cache")}
        node = f"{tag}-node"
        ip("netns", "add", node)
        made.append(node)
        ip("-n", node, "link", "set", "lo", "up")
        t0 = time.perf_counter()
        fill(tmp / "networks" / NETWORK, args.leases - args.pods)
        print(
            f"wrote {args.leases - args.pods} lease files in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        t0 = time.perf_counter()
        for i in range(args.pods):
            pod = f"{tag}-p{i}"
            ip("netns", "add", pod)
            made.append(pod)
            cap = {
                "portMappings": [{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}]
            }
            proc = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    node,
                    str(bindir / "cnitool"),
                    "add",
                    NETWORK,
                    f"/run/netns/{pod}",
                ],
                env={**env, "CAP_ARGS": json.dumps(cap)},
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(f"pod {i}: cnitool add failed: {proc.stderr.strip()}")
                return 1
        print(f"attached {args.pods} pods in {time.perf_counter() - t0:.1f} s", flush=True)
        for i in range(args.dead):
            name = f"{tag}-p{i}"
            ip("netns", "del", name)
            made.remove(name)
        argv_doc = ["ip", "netns", "exec", node, str(bindir / "cnitool"), "doctor", "--json"]
        walls, cpus = [], []
        doc = None
        for _ in range(args.rounds):
            wall, cpu, proc = timed(argv_doc, env)
            if proc.returncode not in (0, 1):
                print(f"doctor failed ({proc.returncode}): {proc.stderr.strip()}")
                return 1
            walls.append(wall)
            cpus.append(cpu)
            doc = json.loads(proc.stdout)
        print(f"\ncnitool doctor on {args.pods} pods ({args.dead} of them dead) and "
              f"{args.leases} leases, {args.rounds} rounds:")
        print(f"  wall median {statistics.median(walls):.3f} s, max {max(walls):.3f} s "
              f"(target < {TARGET_S:.0f} s: {'met' if max(walls) < TARGET_S else 'NOT met'})")
        print(f"  cpu  median {statistics.median(cpus):.3f} s, max {max(cpus):.3f} s")
        print(
            "  statuses: "
            + ", ".join(f"{c['id']}={c['status']}" for c in doc["checks"] if c["status"] != "ok")
            + f"; summary {doc['summary']}"
        )
        print("  per check (in-process, one run):")
        for check_id, secs in per_check(f"/run/netns/{node}", env):
            print(f"    {check_id:<20} {secs * 1000:7.1f} ms")
        return 0
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
