"""Concurrency (docs/reliability.md): many simultaneous ADDs and DELs on one node, two networks.

Two bridge networks (own bridge, own host-local dataDir, masquerading on) in one node
namespace; every pod has its own namespace. With N = PYCNI_CONCURRENCY (CI: reduced, full: 128):

1. N ADDs at once, alternating between the networks;
2. N calls at once: DEL of half of them and ADD of N/2 new pods;
3. DEL of every remaining pod at once.

After each phase: every call finished within its bound (no deadlock) and succeeded; no two live
pods share an address; the lease files are exactly the live pods' (none lost, none extra); each
live pod has its interface with its address; the node has exactly one veth per live pod on the
right bridge and one masquerade chain per live pod. At the end nothing of any pod remains.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conformance.harness import Netns
from tests.reliability import budget, nsstate
from tests.reliability.lifecycle import make_scenario

pytestmark = [pytest.mark.slow, pytest.mark.netns]

CALL_BOUND = 240.0  # seconds one call may take under full load before it counts as a deadlock


def _networks(node: Netns, tmp: Path):
    a = make_scenario("bridge", node, tmp / "a", network="ccnet-a", bridge="ccbr0",
                      subnet="10.81.0.0/24", subnet6="fd81::/120")
    b = make_scenario("bridge", node, tmp / "b", network="ccnet-b", bridge="ccbr1",
                      subnet="10.81.1.0/24", subnet6="fd81:1::/120")
    return a, b


def _run_all(calls: list[tuple]) -> tuple[list, float]:
    """Run (scenario, command, cid, pod) calls all at once; (runs, wall seconds)."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(sc.run, cmd, cid, pod, CALL_BOUND) for sc, cmd, cid, pod in calls]
        runs = [f.result() for f in futures]  # TimeoutExpired (a hang) propagates and fails
    return runs, time.monotonic() - t0


def _pod_addresses(pod: Netns) -> set[str]:
    ipr = nsstate.open_netns(pod.path)
    try:
        snap = nsstate.snapshot_netns(ipr)
    finally:
        ipr.close()
    return {it[2].split("/")[0] for it in snap["addresses"] if it[1] == "eth0"}


def _check_live(scs, live: dict[str, tuple], results: dict[str, dict]) -> list[str]:
    """Invariants for the set of live pods {cid: (scenario, pod)} and their ADD results."""
    problems: list[str] = []
    for sc in scs:
        mine = {cid for cid, (s, _) in live.items() if s is sc}
        addrs: dict[str, str] = {}
        for cid in sorted(mine):
            for ip in results[cid]["ips"]:
                a = str(ipaddress.ip_interface(ip["address"]).ip)
                if a in addrs:
                    problems.append(f"{sc.conf['name']}: {a} given to both {addrs[a]} and {cid}")
                addrs[a] = cid
        leases = sc.leases()
        owners: dict[str, list[str]] = {}
        for name, content in leases.items():
            owners.setdefault(content.split(b"\r\n")[0].decode(), []).append(name.split("/")[1])
        for cid in sorted(mine):
            want = sorted(
                str(ipaddress.ip_interface(ip["address"]).ip) for ip in results[cid]["ips"]
            )
            if sorted(owners.get(cid, [])) != want:
                problems.append(f"{cid}: leases {sorted(owners.get(cid, []))}, result says {want}")
        extra = sorted(set(owners) - mine)
        if extra:
            problems.append(
                f"{sc.conf['name']}: leases held by pods that are not live: {extra[:10]}"
            )
    # every live pod has its addresses
    for cid, (_, pod) in sorted(live.items()):
        want = {str(ipaddress.ip_interface(ip["address"]).ip) for ip in results[cid]["ips"]}
        have = _pod_addresses(pod)
        if not want <= have:
            problems.append(f"{cid}: pod has {sorted(have)}, result says {sorted(want)}")
    # the node: one veth per live pod on its bridge, one masquerade chain per live pod
    snap = scs[0].snapshot()
    for sc in scs:
        bridge = sc.conf["bridge"]
        ports = [it for it in snap["links"] if it[2] == "veth" and it[3] == bridge]
        n = sum(1 for s, _ in live.values() if s is sc)
        if len(ports) != n:
            problems.append(f"{bridge}: {len(ports)} veths attached, {n} live pods")
    chains = {(it[1], it[2]) for it in snap["firewall"] if it[2].startswith("chain CNI-")}
    if len(chains) != len(live) * 2:  # one per pod, in ip and ip6 tables
        problems.append(
            f"{len(chains)} masquerade chains for {len(live)} live pods (want one per family)"
        )
    return problems


def test_concurrent_adds_and_dels_two_networks(
    node_ns: Netns, make_pod, tmp_path: Path, record_property
) -> None:
    """N concurrent ADDs, then N concurrent mixed DELs/ADDs, then N concurrent DELs."""
    n = budget.count("PYCNI_CONCURRENCY")
    half = n // 2
    a, b = _networks(node_ns, tmp_path)
    scs = (a, b)
    baseline = a.snapshot()
    pods = [make_pod() for _ in range(n + half)]
    cids = [f"cc-{i}" for i in range(n + half)]
    net = {cids[i]: scs[i % 2] for i in range(n + half)}
    results: dict[str, dict] = {}
    live: dict[str, tuple] = {}
    timings = {}

    # 1. N ADDs at once
    calls = [(net[cids[i]], "ADD", cids[i], pods[i]) for i in range(n)]
    runs, timings["adds"] = _run_all(calls)
    failed = [
        (c[2], r.stdout.strip()[:300])
        for c, r in zip(calls, runs, strict=True)
        if r.returncode != 0
    ]
    assert not failed, f"{len(failed)} of {n} concurrent ADDs failed: {failed[:5]}"
    for c, r in zip(calls, runs, strict=True):
        results[c[2]] = r.result
        live[c[2]] = (c[0], c[3])
    problems = _check_live(scs, live, results)
    assert not problems, "after concurrent ADDs:\n" + "\n".join(problems[:20])

    # 2. half of them DEL while N/2 new pods ADD, all at once
    calls = [(net[cids[i]], "DEL", cids[i], pods[i]) for i in range(half)]
    calls += [(net[cids[i]], "ADD", cids[i], pods[i]) for i in range(n, n + half)]
    runs, timings["mixed"] = _run_all(calls)
    failed = [
        (c[1], c[2], r.stdout.strip()[:300])
        for c, r in zip(calls, runs, strict=True)
        if r.returncode != 0
    ]
    assert not failed, f"{len(failed)} of {len(calls)} concurrent DELs/ADDs failed: {failed[:5]}"
    for c, r in zip(calls, runs, strict=True):
        if c[1] == "DEL":
            live.pop(c[2])
        else:
            results[c[2]] = r.result
            live[c[2]] = (c[0], c[3])
    problems = _check_live(scs, live, results)
    for i in range(half):
        if _pod_addresses(pods[i]):
            problems.append(f"{cids[i]}: deleted, but its pod still has an interface")
    assert not problems, "after concurrent DELs and ADDs:\n" + "\n".join(problems[:20])

    # 3. every remaining pod DELs at once
    calls = [(s, "DEL", cid, pod) for cid, (s, pod) in sorted(live.items())]
    runs, timings["dels"] = _run_all(calls)
    failed = [
        (c[2], r.stdout.strip()[:300])
        for c, r in zip(calls, runs, strict=True)
        if r.returncode != 0
    ]
    assert not failed, f"{len(failed)} of {len(calls)} concurrent DELs failed: {failed[:5]}"
    att = nsstate.Attachment(ids=set(cids), bridges={"ccbr0", "ccbr1"})
    for r in results.values():
        att.add_result_ips(r)
    left = nsstate.leaks(nsstate.added(baseline, a.snapshot()), att)
    left += [f"lease {k}" for sc in scs for k in sc.leases()]
    left += [
        f"pod {cids[i]} still has {sorted(_pod_addresses(p))}"
        for i, p in enumerate(pods)
        if _pod_addresses(p)
    ]
    figures = {"concurrency": n, "pods": n + half, "calls": n * 3,
               "wall_s": {k: round(v, 1) for k, v in timings.items()}, "leaks": left}
    record_property("concurrency", json.dumps(figures))
    if os.environ.get("PYCNI_FIGURES_DIR"):
        out = Path(os.environ["PYCNI_FIGURES_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "concurrency.json").write_text(json.dumps(figures, indent=1))
    sys.stderr.write(
        f"\nconcurrency {n}: {n * 3} calls on {n + half} pods, wall {figures['wall_s']}, "
        f"{len(left)} leaks\n"
    )
    assert not left, "after concurrent DELs:\n" + "\n".join(left[:20])
