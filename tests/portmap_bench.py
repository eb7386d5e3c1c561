"""Wall time of one portmap ADD and one DEL, ours against the reference (not a test; run by hand).

    .venv/bin/python tests/portmap_bench.py [iterations] [extra nat rules]

Inside a throwaway node namespace (pod network as in the tests), each iteration runs ADD and then
DEL for a fresh container id with a tcp and a udp mapping and an IPv4 prevResult, through the
CNI protocol (`ip netns exec <node> <exe>`), for ours (iptables and nftables backends) and for
/usr/lib/cni/portmap. With `extra nat rules` > 0 the nat table first gets that many unrelated
rules, standing in for kube-proxy's, to show how each scales with the table size.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import harness  # noqa: E402
import portmap_testlib as t  # noqa: E402

MAPPINGS = [
    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 8081, "containerPort": 81, "protocol": "udp"},
]


def fill_nat(node: harness.Netns, n: int) -> None:
    lines = ["*nat", ":BENCH-FILL - [0:0]", "-A PREROUTING -j BENCH-FILL"]
    lines += [f"-A BENCH-FILL -d 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32 -p tcp -m tcp --dport 80 -j RETURN"
              for i in range(n)]  # fmt: skip
    node.exec("iptables-restore", "--noflush", input="\n".join(lines + ["COMMIT"]) + "\n")


def measure(exe: Path, node: harness.Netns, iterations: int, **keys) -> tuple[list[float], list[float]]:
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 5, "pmv5")
    adds, dels = [], []
    for i in range(iterations):
        cid = f"bench{i}"
        start = time.perf_counter()
        res = t.run(exe, node, "ADD", t.conf(MAPPINGS, pod.prev_result(v6=False), **keys), container_id=cid)
        adds.append(time.perf_counter() - start)
        assert res.returncode == 0, res.stdout
        start = time.perf_counter()
        res = t.run(exe, node, "DEL", t.conf(MAPPINGS, None, **keys), container_id=cid)
        dels.append(time.perf_counter() - start)
        assert res.returncode == 0, res.stdout
    return adds, dels


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    fill = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    runs = [("reference", t.REFERENCE, {}), ("ours/iptables", t.OURS, {}),
            ("ours/nftables", t.OURS, {"backend": "nftables"})]  # fmt: skip
    print(f"{iterations} ADD+DEL each, IPv4, tcp+udp mapping, {fill} extra nat rules; ms median (p90)")
    for label, exe, keys in runs:
        node = harness.create_netns("node")
        try:
            t.setup_node(node)
            if fill:
                fill_nat(node, fill)
            measure(exe, node, 2, **keys)  # warm caches (page cache, pyc)
            adds, dels = measure(exe, node, iterations, **keys)
        finally:
            harness.delete_netns(node)

        def fmt(xs: list[float]) -> str:
            xs = sorted(xs)
            return f"{statistics.median(xs) * 1000:6.1f} ({xs[int(len(xs) * 0.9) - 1] * 1000:6.1f})"

        print(f"  {label:14s} ADD {fmt(adds)}   DEL {fmt(dels)}")


if __name__ == "__main__":
    main()
