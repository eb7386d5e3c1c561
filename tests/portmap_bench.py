"""Wall time of one portmap ADD and one DEL, ours against the reference (not a test; run by hand).

    .venv/bin/python -m tests.portmap_bench [iterations] [extra nat rules]   # from the repository

Inside a throwaway node namespace (pod network as in the tests), each iteration runs ADD and then
DEL for a fresh container id with a tcp and a udp mapping and an IPv4 prevResult, through the
CNI protocol (`ip netns exec <node> <exe>`), for ours (iptables and nftables backends) and for
/usr/lib/cni/portmap. With `extra nat rules` > 0 the nat table first gets that many unrelated
rules, standing in for kube-proxy's, to show how each scales with the table size.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

from conformance import harness
from tests import portmap_testlib as t

MAPPINGS = [
    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 8081, "containerPort": 81, "protocol": "udp"},
]


def fill_nat(node: harness.Netns, n: int) -> None:
    lines = ["*nat", ":BENCH-FILL - [0:0]", "-A PREROUTING -j BENCH-FILL"]
    lines += [f"-A BENCH-FILL -d 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32"
              " -p tcp -m tcp --dport 80 -j RETURN" for i in range(n)]
    node.exec("iptables-restore", "--noflush", input="\n".join(lines + ["COMMIT"]) + "\n")


def _timed(
    exe: Path, node: harness.Netns, command: str, config: dict, cid: str
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child processes) of one call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = t.run(exe, node, command, config, container_id=cid)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert res.returncode == 0, res.stdout
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    fill = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    runs = [("reference", t.REFERENCE, {}), ("ours/iptables", t.OURS, {}),
            ("ours/nftables", t.OURS, {"backend": "nftables"})]  # fmt: skip
    pod = t.Pod(harness.Netns("cnitest-pod-none"), 5, "pmv5")
    nodes = []
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for _ in runs:
            node = harness.create_netns("node")
            nodes.append(node)
            t.setup_node(node)
            if fill:
                fill_nat(node, fill)
        # interleaved, so that load from elsewhere hits every implementation alike
        for i in range(-2, iterations):  # two warm-up rounds
            for (label, exe, keys), node in zip(runs, nodes, strict=True):
                cid = f"bench{i + 2}"
                add = _timed(
                    exe, node, "ADD", t.conf(MAPPINGS, pod.prev_result(v6=False), **keys), cid
                )
                dele = _timed(exe, node, "DEL", t.conf(MAPPINGS, None, **keys), cid)
                if i >= 0:
                    samples.setdefault((label, "ADD"), []).append(add)
                    samples.setdefault((label, "DEL"), []).append(dele)
    finally:
        for node in nodes:
            harness.delete_netns(node)

    def fmt(xs: list[tuple[float, float]]) -> str:
        wall = sorted(x[0] for x in xs)
        cpu = statistics.median(x[1] for x in xs)
        p90 = wall[int(len(wall) * 0.9) - 1]
        return (f"wall {statistics.median(wall) * 1000:6.1f} (p90 {p90 * 1000:6.1f}) "
                f"cpu {cpu * 1000:6.1f}")

    print(f"{iterations} ADD+DEL each, IPv4, tcp+udp mapping, {fill} extra nat rules; ms, median")
    for label, _exe, _keys in runs:
        print(
            f"  {label:14s} ADD {fmt(samples[(label, 'ADD')])}   DEL {fmt(samples[(label, 'DEL')])}"
        )


if __name__ == "__main__":
    main()
