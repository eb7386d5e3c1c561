#!/usr/bin/env python3
"""CNI benchmark (docs/performance.md): ours against the reference on identical configurations.

    bench_cni.py [--ours DIR] [--ref DIR] [--rounds N] [--quick] [--only B1,B2,B3,B4,B5]
                 [--no-worker] [--json FILE] [--tmp DIR]

Defaults: ours = dist/bin (whatever `make build` put there; the header says which kind), ref =
/usr/lib/cni. Every plugin runs inside a throwaway node namespace (conformance/harness.py) with its
state (host-local dataDir, flannel dataDir and subnet.env) in a temp dir; pods are throwaway
namespaces. Ours and the reference alternate round by round (the order flips every round), each in
its own node namespace, and after one untimed warm-up cycle each, so both are measured in the steady
state of a node that already has its bridge and firewall chains.

Variants: `ref` (the Go reference), `ours+w` (our executables as shipped: the warm worker,
plugins/worker/server.py, serves the calls; its workers are started by the warm-up calls, counted in
the CPU column, and ended at the end of each part) and `ours` (the same executables with
PYCNI_WORKER=0: one interpreter per call, in-process delegation; what a call costs when no worker is
up, e.g. the first call after a quiet spell). `--no-worker` leaves `ours+w` out.

B1  serial pod cycle: ADD then DEL of one pod, as a runtime does it (a network list run plugin
    by plugin, prevResult chained, DEL in reverse order). Rows: bridge + host-local with
    ipMasq false and true; the kube-flannel list (flannel -> bridge -> host-local, then portmap
    with one mapping). No Go flannel is packaged, so the reference side of that row runs the
    bridge configuration flannel generates (same bridge, ranges, routes, MTU, hairpin) followed
    by portmap; ours runs flannel, and also that same bridge list, so flannel's own overhead
    over our bridge is printed on its own line.
B2  bursts: 32 and 64 concurrent ADDs (bridge + host-local, ipMasq true), each in its own pod
    namespace, then their DELs, also concurrent. Wall time from the first start to the last exit.
B3  host-local at scale: ADD and DEL with 0, 10,000 and 60,000 existing leases (the lease fill,
    config and environment are bench_host_local.py's). "work" is the plugin's own work run in
    this interpreter (imports already loaded), what a 20 ms per-call budget is about.
B4  footprint: peak RSS (wait4's ru_maxrss) of every invocation timed in B1/B2, per plugin and
    command; and import time per entry point and command, measured with `-X importtime` by
    running the same calls through the venv interpreter on this source tree (the standalone
    build cannot report its imports), summing the top-level imports after start-up.

Medians in milliseconds; "ratio" is ours / reference of the medians; "target" is the goal set
for the row, printed as information. A benchmark, not a test: the only failure is a plugin call that
fails (the figures would mean nothing). `--quick` (CI smoke, < 60 s) runs every part with tiny
counts: its figures are not meant to be quoted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import harness
from conformance.bench import benchlib
from conformance.bench.benchlib import BenchError, NetList, chain
from conformance.workers import stop_workers, worker_pids

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


PORT_MAPPING = {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
FLANNEL_ENV = (
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
)

# B4's RSS table: (impl, plugin, command) -> [KiB]
RSS: dict[tuple[str, str, str], list[int]] = defaultdict(list)


def log(text: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(text, file=sys.stderr, flush=True)


def med(xs: list[float]) -> float:
    """Median, NaN for no data."""
    return statistics.median(xs) if xs else float("nan")


def _record_rss(impl: str, runs: list[benchlib.Run]) -> None:
    for r in runs:
        RSS[(impl, os.path.basename(r.argv0), r.command)].append(r.maxrss_kib)


# --------------------------------------------------------------------------- configurations


def bridge_list(state: harness.StateDirs, masq: bool) -> NetList:
    """bridge + host-local, one plugin, cniVersion 1.0.0."""
    return NetList(
        "benchnet",
        "1.0.0",
        [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": masq,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.22.0.0/16",
                    "dataDir": str(state.networks),
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    )


def _portmap_plugin() -> dict[str, Any]:
    return {"type": "portmap", "capabilities": {"portMappings": True}}


def flannel_list(state: harness.StateDirs) -> NetList:
    """kube-flannel's conflist (cniVersion 0.3.1) with state paths in `state`."""
    state.subnet_env.write_text(FLANNEL_ENV)
    return NetList(
        "cbr0",
        "0.3.1",
        [
            {
                "type": "flannel",
                "subnetFile": str(state.subnet_env),
                "dataDir": str(state.flannel),
                "ipam": {"dataDir": str(state.networks)},
                "delegate": {"hairpinMode": True, "isDefaultGateway": True},
            },
            _portmap_plugin(),
        ],
        {"portMappings": [PORT_MAPPING]},
    )


def flannel_equivalent_list(state: harness.StateDirs) -> NetList:
    """The bridge list flannel generates from FLANNEL_ENV (its delegate), then portmap."""
    return NetList(
        "cbr0",
        "0.3.1",
        [
            {
                "type": "bridge",
                "hairpinMode": True,
                "isDefaultGateway": True,
                "ipMasq": False,
                "isGateway": True,
                "mtu": 1450,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(state.networks),
                    "ranges": [[{"subnet": "10.244.1.0/24"}]],
                    "routes": [{"dst": "10.244.0.0/16"}],
                },
            },
            _portmap_plugin(),
        ],
        {"portMappings": [PORT_MAPPING]},
    )


# --------------------------------------------------------------------------- environments


@dataclass
class Variant:
    """What runs on one node: an implementation label, its bin dir, its list, worker or not."""

    impl: str
    bindir: str
    make: Callable[[harness.StateDirs], NetList]
    worker: bool = False


@dataclass
class Node:
    """One variant's node: namespace, state dirs, list, and (worker variants) its worker."""

    variant: Variant
    ns: harness.Netns
    state: harness.StateDirs
    netlist: NetList
    env: dict[str, str] = field(default_factory=dict)
    worker_dir: str | None = None

    @property
    def impl(self) -> str:
        """The variant's label."""
        return self.variant.impl

    @property
    def bindir(self) -> str:
        """Where its executables are (CNI_PATH)."""
        return self.variant.bindir

    def worker_pids(self) -> list[int]:
        """Pids of live workers serving this node."""
        return worker_pids(self.worker_dir)

    def worker_cpu_ms(self) -> float:
        """CPU used so far by this node's live workers (utime + stime, clock-tick resolution)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) * 1000 / tick
            except (OSError, IndexError, ValueError):
                pass
        return total

    def workers_listening(self) -> int:
        """How many worker sockets exist."""
        return len(list(Path(self.worker_dir).glob("*.sock"))) if self.worker_dir else 0

    def stop_workers(self) -> None:
        """End this node's workers."""
        stop_workers(self.worker_dir)


WORKER_ENV = {"PYCNI_WORKER": "1", "PYCNI_WORKER_IDLE": "120"}


@contextmanager
def nodes(variants: list[Variant], tmp: str) -> Iterator[list[Node]]:
    """A fresh node namespace, state dir (and worker dir) per variant; all removed afterwards."""
    made: list[Node] = []
    try:
        for v in variants:
            root = tempfile.mkdtemp(
                prefix=f"bench-{v.impl.replace('/', '-').replace('+', '-')}-", dir=tmp
            )
            try:
                ns = harness.create_netns("bnode", lo_up=True)
            except BaseException:
                shutil.rmtree(root, ignore_errors=True)
                raise
            state = harness.make_state_dirs(root)
            node = Node(v, ns, state, v.make(state))
            made.append(node)
            if v.worker:
                # short: a unix socket path must stay under 108 bytes
                node.worker_dir = tempfile.mkdtemp(prefix="bw-", dir="/tmp")
                node.env = {**WORKER_ENV, "PYCNI_WORKER_DIR": node.worker_dir}
        yield made
    finally:
        for n in made:
            n.stop_workers()
            harness.delete_netns(n.ns)
            shutil.rmtree(n.state.root, ignore_errors=True)
            if n.worker_dir:
                shutil.rmtree(n.worker_dir, ignore_errors=True)


@contextmanager
def pods(count: int) -> Iterator[list[harness.Netns]]:
    """`count` pod namespaces (lo down, as a runtime makes them); all removed afterwards."""
    made: list[harness.Netns] = []
    try:
        for _ in range(count):
            made.append(harness.create_netns("bpod", lo_up=False))
        yield made
    finally:
        for ns in made:
            harness.delete_netns(ns)


def in_node(node: Node):
    """Context manager: this thread (and every process it starts) in the node namespace."""
    from cni.netns import in_netns

    return in_netns(node.ns.path)


def alternate(items: list, round_no: int) -> list:
    """`items` in a rotated order, so no implementation always runs first."""
    k = round_no % len(items)
    return items[k:] + items[:k]


def warm_up(node_list: list[Node], pod: harness.Netns) -> None:
    """One untimed cycle per node (bridge and chains created); worker nodes: until the resident
    worker listens, then two more cycles so it has run each command. (Serial calls never need
    more than the resident; the burst workers are started by `warm_up_burst`.)"""
    for node in node_list:
        _cycle(node, pod, "warmup")
        if not node.variant.worker:
            continue
        # a call that finds no worker starts one in the background and runs in-process
        deadline = time.monotonic() + 60
        n = 0
        while node.workers_listening() < 1 or n < 2:
            if time.monotonic() > deadline:
                raise BenchError(f"{node.impl}: no worker up after 60 s")
            _cycle(node, pod, f"warmup{n}")
            n += 1
            if node.workers_listening() < 1:
                time.sleep(0.2)


def variants_for(args, make_ref, make_ours, extra: tuple[Variant, ...] = ()) -> list[Variant]:
    """ref, ours, and (unless --no-worker) ours with the warm worker switched on."""
    out = [Variant("ref", args.ref, make_ref), Variant("ours", args.ours, make_ours)]
    if args.worker:
        out.append(Variant("ours+w", args.ours, make_ours, worker=True))
    return out + list(extra)


# --------------------------------------------------------------------------- B1


@dataclass
class CycleTimes:
    """ADD, DEL and whole-cycle times (ms) of one variant."""

    add: list[float] = field(default_factory=list)
    dele: list[float] = field(default_factory=list)
    cycle: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU of every process of the cycle
    worker_cpu: float = 0.0  # CPU of the worker over all timed cycles


def _cycle(
    node: Node, pod: harness.Netns, cid: str, rss: bool = False
) -> tuple[float, float, float]:
    with in_node(node):
        add = chain(node.netlist, "ADD", node.bindir, cid, pod.path, rss=rss, extra_env=node.env)
        dele = chain(node.netlist, "DEL", node.bindir, cid, pod.path, cached=add.result, rss=rss,
                     extra_env=node.env)
    if rss:
        _record_rss(node.impl, add.runs + dele.runs)
    return add.ms, dele.ms, add.cpu_ms + dele.cpu_ms


def b1_row(label: str, variants: list[Variant], rounds: int, tmp: str) -> dict[str, CycleTimes]:
    """Alternating ADD+DEL cycles of every variant."""
    times = {v.impl: CycleTimes() for v in variants}
    with nodes(variants, tmp) as node_list, pods(1) as (pod,):
        warm_up(node_list, pod)
        cpu0 = {n.impl: n.worker_cpu_ms() for n in node_list}
        for i in range(rounds):
            for node in alternate(node_list, i):
                a, d, c = _cycle(node, pod, f"c{i}")
                t = times[node.impl]
                t.cpu.append(c)
                t.add.append(a)
                t.dele.append(d)
                t.cycle.append(a + d)
        for n in node_list:
            times[n.impl].worker_cpu = n.worker_cpu_ms() - cpu0[n.impl]
    log(f"B1 {label}: done")
    return times


def b1(args, out: dict) -> None:
    """B1 table: one line per variant of each row."""
    rows = [
        ("bridge+host-local ipMasq=false", 36.0,
         variants_for(args, lambda s: bridge_list(s, False), lambda s: bridge_list(s, False))),
        ("bridge+host-local ipMasq=true", 96.0,
         variants_for(args, lambda s: bridge_list(s, True), lambda s: bridge_list(s, True))),
        ("kube-flannel list (+portmap)", None,
         variants_for(args, flannel_equivalent_list, flannel_list,
                      (Variant("ours/bridge-equiv", args.ours, flannel_equivalent_list),))),
    ]
    print(
        f"\nB1 serial pod cycle: ADD then DEL of one pod; medians of {args.rounds} alternating "
        f"rounds, ms."
        "\n   cpu: user+sys of the cycle's processes (+ the worker's, averaged per cycle, for "
        "ours+w);"
        " ratio: cycle / ref cycle"
    )
    head = (f"{'row':32} {'variant':17} | {'ADD':>7} {'DEL':>7} {'cycle':>7} {'cpu':>7} "
            f"| {'ratio':>5} | target")
    print(head)
    print("-" * len(head))
    out["B1"] = []
    for label, issue_ref, variants in rows:
        t = b1_row(label, variants, args.rounds, args.tmp)
        ref_cycle = med(t["ref"].cycle)
        row: dict[str, Any] = {"row": label, "issue_ref_cycle_ms": issue_ref}
        first = True
        for v in variants:
            x = t[v.impl]
            worker = x.worker_cpu / max(1, len(x.cycle))
            cpu = med(x.cpu) + worker
            ratio = med(x.cycle) / ref_cycle
            target = ""
            if v.impl in ("ours", "ours+w"):
                target = f"<= 2.0x ({'met' if ratio <= 2.0 else 'MISSED'})"
            if v.worker:  # where the CPU goes: the processes the runtime starts, the worker
                target += f"; cpu: processes {med(x.cpu):.1f} + worker {worker:.1f}"
            print(f"{label if first else '':32} {v.impl:17} | {med(x.add):7.1f} {med(x.dele):7.1f}"
                  f" {med(x.cycle):7.1f} {cpu:7.1f} | {ratio:5.2f} | {target}", flush=True)
            first = False
            key = v.impl.replace("/", "_").replace("+", "_")
            row.update(
                {
                    f"{key}_add_ms": med(x.add),
                    f"{key}_del_ms": med(x.dele),
                    f"{key}_cycle_ms": med(x.cycle),
                    f"{key}_cpu_ms": cpu,
                    f"{key}_ratio": ratio,
                    f"{key}_worker_cpu_ms": worker,
                }
            )
        if "ours/bridge-equiv" in t:
            o, b = t["ours"], t["ours/bridge-equiv"]
            over = med(o.cycle) - med(b.cycle)
            print(f"{'':32} {'flannel overhead':17} | {med(o.add) - med(b.add):7.1f}"
                  f" {med(o.dele) - med(b.dele):7.1f} {over:7.1f} {med(o.cpu) - med(b.cpu):7.1f} |"
                  "       | ours minus ours/bridge-equiv")
            row["flannel_overhead_cycle_ms"] = over
        out["B1"].append(row)


# --------------------------------------------------------------------------- B2


def _burst(
    node: Node, pod_list: list[harness.Netns], command: str, tag: str
) -> tuple[float, float]:
    """(wall ms, CPU ms of the clients and of the worker) for one burst."""
    (plugin,) = node.netlist.plugins
    exe = os.path.join(node.bindir, plugin["type"])
    stdin = node.netlist.plugin_conf(plugin, None)
    jobs = [
        (
            [exe],
            {**benchlib.cni_env(command, f"{tag}-{i}", pod.path, node.bindir), **node.env},
            stdin,
        )
        for i, pod in enumerate(pod_list)
    ]
    cpu0 = node.worker_cpu_ms()
    with in_node(node):
        ms, runs = benchlib.run_burst(jobs)
    bad = [r for r in runs if r.rc != 0]
    if bad:
        raise BenchError(f"{len(bad)} of {len(runs)} {command}s failed; first: {bad[0].describe()}")
    return ms, sum(r.cpu_ms for r in runs) + node.worker_cpu_ms() - cpu0


def b2(args, out: dict) -> None:
    """B2 table: one line per variant and burst size."""
    sizes = [4] if args.quick else [32, 64]
    rounds = 1 if args.quick else max(1, args.rounds // 4)
    issue = {32: (470.0, 1300.0), 64: (1400.0, 2700.0)}
    print(
        f"\nB2 bursts: N concurrent ADDs (bridge + host-local, ipMasq true, one pod namespace "
        f"each),"
        f" then N concurrent DELs; medians of {rounds} alternating rounds; wall ms (cpu: all "
        f"processes)"
    )
    head = (f"{'pods':>4} {'variant':8} | {'ADD':>7} {'DEL':>7} | {'ADD cpu':>7} {'DEL cpu':>7} |"
            f" {'ADD ratio':>9} {'DEL ratio':>9} | target")
    print(head)
    print("-" * len(head))
    out["B2"] = []
    variants = variants_for(args, lambda s: bridge_list(s, True), lambda s: bridge_list(s, True))
    with nodes(variants, args.tmp) as node_list, pods(max(sizes)) as pod_all:
        warm_up(node_list, pod_all[0])
        # One untimed burst of the largest size per node: a worker node starts its burst workers
        # (they take calls while the resident is busy, and stay for PYCNI_WORKER_IDLE, 120 s here)
        for node in node_list:
            for command in ("ADD", "DEL"):
                _burst(node, pod_all, command, "warm")
        log(
            "B2: warm-up burst done; workers listening: "
            + ", ".join(f"{n.impl} {n.workers_listening()}" for n in node_list
                        if n.variant.worker)
        )
        for size in sizes:
            t: dict[str, list[list[float]]] = {n.impl: [[], [], [], []] for n in node_list}
            for i in range(rounds):
                for node in alternate(node_list, i):
                    for k, command in enumerate(("ADD", "DEL")):
                        ms, cpu = _burst(node, pod_all[:size], command, f"b{size}r{i}")
                        t[node.impl][k].append(ms)
                        t[node.impl][k + 2].append(cpu)
            ra, rd = med(t["ref"][0]), med(t["ref"][1])
            row: dict[str, Any] = {"pods": size, "issue_ref_ms": issue.get(size)}
            for v in variants:
                a, d, ac, dc = (med(x) for x in t[v.impl])
                target = ""
                if v.impl != "ref":
                    target = f"< 1.0x ({'met' if a < ra and d < rd else 'MISSED'})"
                print(
                    f"{size:>4} {v.impl:8} | {a:7.0f} {d:7.0f} | {ac:7.0f} {dc:7.0f} | "
                    f"{a / ra:9.2f}"
                    f" {d / rd:9.2f} | {target}",
                    flush=True,
                )
                key = v.impl.replace("+", "_")
                row.update({f"{key}_add_ms": a, f"{key}_del_ms": d, f"{key}_add_cpu_ms": ac,
                            f"{key}_del_cpu_ms": dc})
            out["B2"].append(row)
    log("B2: done")


# --------------------------------------------------------------------------- B3


def _hl_exec(exe: str, env: dict[str, str], stdin: bytes) -> float:
    """One host-local call as a process; wall ms. BenchError when it fails."""
    r = benchlib.run([exe], env, stdin)
    if r.rc != 0:
        raise BenchError(r.describe())
    return r.ms


def _hl_work(env: dict[str, str], stdin: bytes) -> float:
    """One host-local call in this interpreter (imports already loaded); wall ms."""
    from cni.skel import run
    from ipam.host_local import PLUGIN

    t0 = time.perf_counter()
    rc, out = run(PLUGIN, env, stdin)
    ms = (time.perf_counter() - t0) * 1000
    if rc != 0:
        raise BenchError(f"in-process host-local {env['CNI_COMMAND']} failed: {out}")
    return ms


def b3(args, out: dict) -> None:
    """B3 table: the lease fill, config and environment of bench_host_local.py; calls alternate."""
    from conformance.bench import bench_host_local as bhl

    sizes = [0, 1000] if args.quick else [0, 10000, 60000]
    rounds = 2 if args.quick else max(5, args.rounds)
    ours = os.path.join(args.ours, "host-local")
    ref = os.path.join(args.ref, "host-local")
    impls = ["ref", "ours"] + (["ours+w"] if args.worker else [])
    print(
        f"\nB3 host-local at scale: ADD / DEL with N existing leases in a /16; medians of {rounds}"
        " alternating rounds, ms (work: the plugin's own work, in this interpreter)"
    )
    head = (
        f"{'leases':>6} | {'ref ADD':>7} {'ref DEL':>7} | {'our ADD':>7} {'our DEL':>7} |"
        f" {'+w ADD':>7} {'+w DEL':>7} | {'work ADD':>8} {'work DEL':>8} | {'1st call':>8} | target"
    )
    print(head)
    print("-" * len(head))
    out["B3"] = []
    ns = harness.create_netns("bnode", lo_up=True)
    wdir = tempfile.mkdtemp(prefix="bw-", dir="/tmp")
    wenv = {**WORKER_ENV, "PYCNI_WORKER_DIR": wdir, "PYCNI_WORKER_LOG": f"{wdir}/log"}
    try:
        from cni.netns import in_netns

        with in_netns(ns.path):
            warm = _tmpdir(args.tmp, "warm")
            try:  # imports and model building, outside the timings
                for command in ("ADD", "DEL"):
                    _hl_work(bhl.env_for(command, "warm"), bhl.conf(warm))
            finally:
                shutil.rmtree(warm, ignore_errors=True)
            for size in sizes:
                dirs = {
                    impl: _tmpdir(args.tmp, impl.replace("+", "-")) for impl in impls + ["work"]
                }
                try:
                    confs = {}
                    for impl, d in dirs.items():
                        bhl.fill(d, size)
                        confs[impl] = bhl.conf(d)
                    first = _hl_exec(ours, bhl.env_for("DEL", "nobody"), confs["ours"])
                    if "ours+w" in dirs:
                        _b3_warm_workers(bhl, ours, wenv, confs["ours+w"], wdir)
                    t: dict[str, tuple[list[float], list[float]]] = {
                        i: ([], []) for i in impls + ["work"]
                    }
                    for i in range(rounds):
                        for impl in alternate(impls, i):
                            exe = ref if impl == "ref" else ours
                            extra = wenv if impl == "ours+w" else {}
                            for k, command in enumerate(("ADD", "DEL")):
                                env = {
                                    **bhl.env_for(command, f"{impl.replace('+', '-')}{i}"),
                                    **extra,
                                }
                                t[impl][k].append(_hl_exec(exe, env, confs[impl]))
                        for k, command in enumerate(("ADD", "DEL")):
                            t["work"][k].append(
                                _hl_work(bhl.env_for(command, f"work{i}"), confs["work"])
                            )
                finally:
                    for d in dirs.values():
                        shutil.rmtree(d, ignore_errors=True)
                row: dict[str, Any] = {"leases": size, "first_call_ms": first}
                for impl in impls + ["work"]:
                    key = impl.replace("+", "_")
                    row[f"{key}_add_ms"], row[f"{key}_del_ms"] = med(t[impl][0]), med(t[impl][1])
                ok = max(row["work_add_ms"], row["work_del_ms"]) <= 20.0
                wa_, wd_ = (
                    row.get("ours_w_add_ms", float("nan")),
                    row.get("ours_w_del_ms", float("nan")),
                )
                print(
                    f"{size:>6} | {row['ref_add_ms']:7.1f} {row['ref_del_ms']:7.1f} | "
                    f"{row['ours_add_ms']:7.1f}"
                    f" {row['ours_del_ms']:7.1f} | {wa_:7.1f} {wd_:7.1f} | "
                    f"{row['work_add_ms']:8.1f}"
                    f" {row['work_del_ms']:8.1f} | {first:8.1f} | work <= 20 ms "
                    f"({'met' if ok else 'MISSED'})",
                    flush=True,
                )
                out["B3"].append(row)
    finally:
        stop_workers(wdir)
        shutil.rmtree(wdir, ignore_errors=True)
        harness.delete_netns(ns)
    log("B3: done")


def _b3_warm_workers(bhl, exe: str, wenv: dict[str, str], stdin: bytes, wdir: str) -> None:
    """VERSION calls until the resident worker listens, then a few DELs so it has served."""
    want = 1
    deadline = time.monotonic() + 60
    while len(list(Path(wdir).glob("*.sock"))) < want:
        if time.monotonic() > deadline:
            log_file = Path(wenv.get("PYCNI_WORKER_LOG", "/nonexistent"))
            detail = log_file.read_text()[-2000:] if log_file.exists() else "(no worker log)"
            up = sorted(p.name for p in Path(wdir).iterdir())
            raise BenchError(
                f"host-local workers: not {want} up after 60 s; {wdir}: {up}; log: {detail}"
            )
        _hl_exec(exe, {**bhl.env_for("VERSION", "warm"), **wenv}, stdin)
        time.sleep(0.1)
    for i in range(4 * want):
        _hl_exec(exe, {**bhl.env_for("DEL", f"warm{i}"), **wenv}, stdin)


def _tmpdir(base: str, tag: str) -> str:
    return tempfile.mkdtemp(prefix=f"bench-hl-{tag}-", dir=base)


# --------------------------------------------------------------------------- B4


LAUNCHER = """#!{python} -ISXimporttime
import sys
sys.path[:0] = [{repo!r}, {site!r}]
sys.stderr.write("@@bench-start@@\\n")
sys.stderr.flush()
from plugins.multicall import main
main()
"""


def import_launchers(directory: str) -> str:
    """Hard links of one `-X importtime` launcher running this source tree, one per name."""
    import sysconfig

    python = str(REPO / ".venv" / "bin" / "python")
    if not os.access(python, os.X_OK):
        python = sys.executable
    site = sysconfig.get_paths()["purelib"]
    main = os.path.join(directory, ".pycni-importtime")
    Path(main).write_text(LAUNCHER.format(python=python, repo=str(REPO), site=site))
    os.chmod(main, 0o755)
    from plugins.multicall import ENTRY_POINTS

    for name in ENTRY_POINTS:
        os.link(main, os.path.join(directory, name))
    return directory


@dataclass
class Imports:
    """What `-X importtime` reported after start-up: total ms, module count, heaviest tops."""

    total_ms: float
    modules: int
    top: list[tuple[str, float]]


def parse_importtime(stderr: bytes) -> Imports:
    """Sum the top-level imports that follow the launcher's start marker."""
    text = stderr.decode(errors="replace")
    _, _, text = text.partition("@@bench-start@@\n")
    tops: list[tuple[str, float]] = []
    count = 0
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        count += 1
        name = parts[2]
        if name.startswith(" ") and not name.startswith("  "):
            tops.append((name.strip(), int(parts[1]) / 1000))
    tops.sort(key=lambda x: -x[1])
    return Imports(sum(ms for _, ms in tops), count, tops[:4])


def b4(args, out: dict) -> None:
    """B4 tables: peak RSS per invocation, import time per entry point and command."""
    out["B4"] = {"rss": [], "imports": []}
    b4_rss(args)
    print(f"\nB4 footprint: peak RSS per invocation (every call of one cycle of each B1 list, and"
          f" VERSION, through {benchlib.TIME} after a warm-up cycle), MiB")
    head = (
        f"{'impl':5} {'plugin':10} {'command':7} | {'median':>6} {'max':>6} | {'calls':>5} | target"
    )
    print(head)
    print("-" * len(head))
    for (impl, plugin, command), kib in sorted(RSS.items()):
        mx = max(kib) / 1024
        mark = "" if impl == "ref" else f"<= 60 MiB ({'met' if mx <= 60 else 'MISSED'})"
        print(
            f"{impl:5} {plugin:10} {command:7} | {med(kib) / 1024:6.1f} {mx:6.1f} | {len(kib):5} | "
            f"{mark}"
        )
        out["B4"]["rss"].append({"impl": impl, "plugin": plugin, "command": command,
                                 "median_mib": med(kib) / 1024, "max_mib": mx})
    print("\nB4 footprint: import time per entry point and command (venv interpreter on this tree,"
          " -X importtime, top-level imports after start-up), ms")
    head = (f"{'entry point':10} {'command':7} | {'imports':>7} {'modules':>7} {'wall':>6} "
            "| heaviest top-level imports")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory(prefix="bench-imp-", dir=args.tmp) as d:
        os.mkdir(os.path.join(d, "bin"))
        bindir = import_launchers(os.path.join(d, "bin"))
        state = harness.make_state_dirs(os.path.join(d, "state"))
        ns = harness.create_netns("bnode", lo_up=True)
        try:
            with pods(1) as (pod,):
                for entry, command, argv_extra, stdin, env in _import_cases(bindir, state, pod):
                    exe = os.path.join(bindir, entry)
                    from cni.netns import in_netns

                    with in_netns(ns.path):
                        r = benchlib.run([exe, *argv_extra], env, stdin)
                    if r.rc != 0 and command != "help":
                        raise BenchError(r.describe()[:2000])
                    imp = parse_importtime(r.stderr)
                    heavy = ", ".join(f"{n} {ms:.0f}" for n, ms in imp.top)
                    print(
                        f"{entry:10} {command:7} | {imp.total_ms:7.1f} {imp.modules:7} {r.ms:6.0f} "
                        f"| {heavy}",
                        flush=True,
                    )
                    out["B4"]["imports"].append(
                        {
                            "entry": entry,
                            "command": command,
                            "import_ms": imp.total_ms,
                            "modules": imp.modules,
                            "wall_ms": r.ms,
                            "top": imp.top,
                        }
                    )
        finally:
            harness.delete_netns(ns)
    log("B4: done")


def b4_rss(args) -> None:
    """Fill RSS: VERSION of every entry point, then one measured cycle of each B1 list."""
    ver = json.dumps({"cniVersion": "1.0.0", "name": "v", "type": "x"}).encode()
    env = {"PATH": benchlib.SAFE_PATH, **benchlib.IN_PROCESS, "CNI_COMMAND": "VERSION"}
    for impl, bindir, names in (
        ("ref", args.ref, ("bridge", "host-local", "portmap")),
        ("ours", args.ours, ("bridge", "host-local", "portmap", "flannel", "loopback")),
    ):
        _record_rss(
            impl, [benchlib.run([os.path.join(bindir, n)], env, ver, rss=True) for n in names]
        )
    for make_ref, make_ours in ((lambda s: bridge_list(s, True), lambda s: bridge_list(s, True)),
                                (flannel_equivalent_list, flannel_list)):
        variants = variants_for(args, make_ref, make_ours)
        with nodes(variants, args.tmp) as node_list, pods(1) as (pod,):
            warm_up(node_list, pod)
            for node in node_list:
                _cycle(node, pod, "rss", rss=True)
                for pid in node.worker_pids():
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                        hwm = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
                        RSS[(node.impl, "(worker)", "all")].append(int(hwm.split()[1]))
                    except (OSError, StopIteration, ValueError, IndexError):
                        pass


def _import_cases(bindir: str, state: harness.StateDirs, pod: harness.Netns) -> Iterator[tuple]:
    """(entry, command, extra argv, stdin, env) per measured call; ADDs before their DELs."""
    env = benchlib.cni_env
    ver = json.dumps({"cniVersion": "1.0.0", "name": "v", "type": "x"}).encode()
    for entry in ("loopback", "bridge", "host-local", "flannel", "portmap"):
        yield (
            entry,
            "VERSION",
            [],
            ver,
            {"PATH": benchlib.SAFE_PATH, **benchlib.IN_PROCESS, "CNI_COMMAND": "VERSION"},
        )
    yield "cnitool", "help", ["--help"], b"", {"PATH": benchlib.SAFE_PATH}
    lo = json.dumps({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}).encode()
    for cmd in ("ADD", "DEL"):
        yield "loopback", cmd, [], lo, env(cmd, "imp-lo", pod.path, bindir)
    hl = bridge_list(state, True)
    ipam = json.dumps({"cniVersion": "1.0.0", "name": "hl", "ipam": hl.plugins[0]["ipam"]}).encode()
    for cmd in ("ADD", "DEL"):
        yield "host-local", cmd, [], ipam, env(cmd, "imp-hl", pod.path, bindir)
    br = hl.plugin_conf(hl.plugins[0], None)
    for cmd in ("ADD", "DEL"):
        yield "bridge", cmd, [], br, env(cmd, "imp-br", pod.path, bindir)
    fl = flannel_list(state)
    fl.plugins[0]["delegate"]["bridge"] = "cni1"  # cni0 already holds bridge's 10.22.0.1/16
    fconf = fl.plugin_conf(fl.plugins[0], None)
    yield "flannel", "ADD", [], fconf, env("ADD", "imp-fl", pod.path, bindir)
    # portmap after flannel's ADD, with a prevResult of the shape flannel returns
    prev = {
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "eth0", "sandbox": pod.path}],
        "ips": [
            {"version": "4", "interface": 0, "address": "10.244.1.2/24", "gateway": "10.244.1.1"}
        ],
    }
    pm = fl.plugin_conf(fl.plugins[1], prev)
    for cmd in ("ADD", "DEL"):
        yield "portmap", cmd, [], pm, env(cmd, "imp-fl", pod.path, bindir)
    yield "flannel", "DEL", [], fconf, env("DEL", "imp-fl", pod.path, bindir)


# --------------------------------------------------------------------------- B5

# Part (b)'s idle time: PYCNI_WORKER_IDLE for our worker variant, and the pause before each
# timed cycle is longer than it, so a worker that leaves when idle has left.
B5_IDLE_S = 2.0
B5_PAUSE_S = B5_IDLE_S + 1.5
B5_WINDOW_S = 20.0  # part (c): how long the resident worker's idle CPU is watched
B5_RSS_MIB = 45.0


@dataclass
class B5Times:
    """One variant's B5 figures: wall and CPU lists per command, workers seen per call."""

    add: list[float] = field(default_factory=list)
    dele: list[float] = field(default_factory=list)
    add_cpu: list[float] = field(default_factory=list)  # the calling processes only (wait4)
    del_cpu: list[float] = field(default_factory=list)
    add_all: list[float] = field(default_factory=list)  # the cgroup: spawned workers included
    del_all: list[float] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)  # workers each call started
    served: list[int] = field(default_factory=list)  # calls a worker answered (debug line)
    calls: int = 0

    def cycle_ms(self) -> float:
        """Median of ADD + DEL wall time, cycle by cycle."""
        return med([a + d for a, d in zip(self.add, self.dele, strict=True)])

    def cycle_cpu_ms(self) -> float:
        """Median of ADD + DEL CPU of every process (the cgroup), cycle by cycle."""
        return med([a + d for a, d in zip(self.add_all, self.del_all, strict=True)])


def _served(runs: list[benchlib.Run]) -> int:
    """How many of `runs` a worker answered, from the client's PYCNI_WORKER_DEBUG=1 line."""
    return sum(1 for r in runs if b"pycni worker: served" in r.stderr)


def _b5_call(node: Node, pod: harness.Netns, command: str, cid: str, env: dict[str, str],
             group: benchlib.CpuGroup, cached: Any = None) -> tuple[benchlib.ChainRun, float, int]:
    """One ADD or DEL in `group`; (the chain, CPU of the group until it settles, new pids)."""
    before = set(group.pids())
    group.seen = set(before)
    u0 = group.usage_ms()
    with in_node(node):
        r = chain(node.netlist, command, node.bindir, cid, pod.path, cached=cached, extra_env=env,
                  group=group)
    used = group.settle() - u0
    # the calls themselves were reaped before the first poll: what appeared is what they started
    return r, used, len(group.seen - before)


def b5_cold(args, rounds: int, out: dict) -> None:
    """(a): ADD and DEL each in an empty worker directory, against PYCNI_WORKER=0 and ref."""
    variants = [Variant("ref", args.ref, lambda s: bridge_list(s, False)),
                Variant("ours", args.ours, lambda s: bridge_list(s, False)),
                Variant("ours cold", args.ours, lambda s: bridge_list(s, False))]
    times = {v.impl: B5Times() for v in variants}
    groups: dict[str, benchlib.CpuGroup] = {}
    with nodes(variants, args.tmp) as node_list, pods(1) as (pod,):
        try:
            for n in node_list:
                groups[n.impl] = benchlib.CpuGroup(f"b5a{len(groups)}")
            warm_up(node_list, pod)  # in-process: the bridge exists, no worker anywhere
            for i in range(rounds):
                for node in alternate(node_list, i):
                    t, group = times[node.impl], groups[node.impl]
                    result = None
                    for command in ("ADD", "DEL"):
                        env: dict[str, str] = {}
                        wdir = None
                        if node.impl == "ours cold":
                            wdir = tempfile.mkdtemp(prefix="bw-", dir="/tmp")
                            env = {
                                "PYCNI_WORKER": "1",
                                "PYCNI_WORKER_DIR": wdir,
                                "PYCNI_WORKER_DEBUG": "1",
                            }
                        try:
                            r, used, started = _b5_call(
                                node, pod, command, f"cold{i}", env, group, result
                            )
                        finally:
                            group.end_all()
                            if wdir:
                                shutil.rmtree(wdir, ignore_errors=True)
                        result = r.result if command == "ADD" else None
                        walls, cpus, alls = ((t.add, t.add_cpu, t.add_all) if command == "ADD"
                                             else (t.dele, t.del_cpu, t.del_all))
                        walls.append(r.ms)
                        cpus.append(r.cpu_ms)
                        alls.append(used)
                        t.workers.append(started)
                        t.served.append(_served(r.runs))
                        t.calls += len(r.runs)
        finally:
            for g in groups.values():
                g.close()
    print(
        f"\n(a) a call that finds no worker up (an empty worker directory, no systemd), medians of"
        f" {rounds}; cpu: the calling process / every process it started (workers included)"
    )
    head = (
        f"{'variant':22} | {'ADD':>6} {'DEL':>6} | {'ADD cpu':>7} {'DEL cpu':>7} | {'ADD all':>7}"
        f" {'DEL all':>7} | {'workers':>7} | {'wall x':>6} {'cpu x':>6} {'all x':>6} | target"
    )
    print(head)
    print("-" * len(head))
    base = times["ours"]
    base_wall = med(base.add) + med(base.dele)
    base_cpu = med(base.add_cpu) + med(base.del_cpu)
    base_all = med(base.add_all) + med(base.del_all)
    rows = []
    for v in variants:
        t = times[v.impl]
        wall = med(t.add) + med(t.dele)
        cpu = med(t.add_cpu) + med(t.del_cpu)
        all_ = med(t.add_all) + med(t.del_all)
        most = max(t.workers) if t.workers else 0
        target = ""
        label = {
            "ref": "ref",
            "ours": "ours (PYCNI_WORKER=0)",
            "ours cold": "ours, default (cold)",
        }[v.impl]
        if v.impl == "ours cold":
            ok_wall, ok_all, ok_n = wall <= 1.15 * base_wall, all_ <= 1.15 * base_all, most <= 1
            target = (
                f"<= 1.15x wall ({'met' if ok_wall else 'MISSED'}), <= 1.15x all cpu"
                f" ({'met' if ok_all else 'MISSED'}), <= 1 worker ({'met' if ok_n else 'MISSED'})"
            )
        ratios = (
            ""
            if v.impl == "ref"
            else f"{wall / base_wall:6.2f} {cpu / base_cpu:6.2f} {all_ / base_all:6.2f}"
        )
        print(
            f"{label:22} | {med(t.add):6.1f} {med(t.dele):6.1f} | {med(t.add_cpu):7.1f} "
            f"{med(t.del_cpu):7.1f}"
            f" | {med(t.add_all):7.1f} {med(t.del_all):7.1f} | {most:7} | {ratios:>20} | {target}",
            flush=True,
        )
        rows.append({"variant": v.impl, "add_ms": med(t.add), "del_ms": med(t.dele),
                     "add_cpu_ms": med(t.add_cpu), "del_cpu_ms": med(t.del_cpu),
                     "add_all_cpu_ms": med(t.add_all), "del_all_cpu_ms": med(t.del_all),
                     "workers_started_max": most, "wall_ratio": wall / base_wall,
                     "cpu_ratio": cpu / base_cpu, "all_cpu_ratio": all_ / base_all})
    print("   (ratios: against ours with PYCNI_WORKER=0, ADD+DEL; a worker's start-up is in the all"
          " columns, not in the wall time of the call that started it)")
    out["B5"]["cold"] = rows


def _wait_for_worker(
    node: Node, pod: harness.Netns, env: dict[str, str], group: benchlib.CpuGroup
) -> None:
    """Cycles until a worker process lives in `group` and has served a cycle."""
    deadline = time.monotonic() + 60
    n = 0
    while True:
        if time.monotonic() > deadline:
            raise BenchError(f"{node.impl}: no worker up after 60 s")
        r, _, _ = _b5_call(node, pod, "ADD", f"w{n}", env, group)
        d, _, _ = _b5_call(node, pod, "DEL", f"w{n}", env, group, r.result)
        n += 1
        if group.pids() and _served(r.runs + d.runs) == len(r.runs) + len(d.runs):
            return
        if n > 20 and group.pids():
            return  # up, but not serving these calls (today's refusals): measure as it is


def b5_idle(args, rounds: int, window: float, out: dict) -> None:
    """(b) and (c): pod cycles after the idle time, then the resident worker's idle cost."""
    variants = [Variant("ref", args.ref, lambda s: bridge_list(s, False)),
                Variant("ours+w", args.ours, lambda s: bridge_list(s, False), worker=True)]
    times = {v.impl: B5Times() for v in variants}
    up_after_pause: list[int] = []
    groups: dict[str, benchlib.CpuGroup] = {}
    resident: dict[str, Any] = {}
    with nodes(variants, args.tmp) as node_list, pods(1) as (pod,):
        try:
            envs = {}
            for n in node_list:
                groups[n.impl] = benchlib.CpuGroup(f"b5b{len(groups)}")
                envs[n.impl] = ({"PYCNI_WORKER": "1", "PYCNI_WORKER_DIR": n.worker_dir or "",
                                 "PYCNI_WORKER_IDLE": f"{B5_IDLE_S:g}", "PYCNI_WORKER_DEBUG": "1"}
                                if n.variant.worker else {})
            ours = next(n for n in node_list if n.variant.worker)
            for n in node_list:
                if n.variant.worker:
                    _wait_for_worker(n, pod, envs[n.impl], groups[n.impl])
                else:
                    _cycle(n, pod, "warmup")
            for i in range(rounds):
                time.sleep(B5_PAUSE_S)
                up_after_pause.append(len(groups[ours.impl].pids()))
                for node in alternate(node_list, i):
                    t, group = times[node.impl], groups[node.impl]
                    a, a_all, _ = _b5_call(node, pod, "ADD", f"idle{i}", envs[node.impl], group)
                    d, d_all, _ = _b5_call(
                        node, pod, "DEL", f"idle{i}", envs[node.impl], group, a.result
                    )
                    t.add.append(a.ms)
                    t.dele.append(d.ms)
                    t.add_all.append(a_all)
                    t.del_all.append(d_all)
                    t.served.append(_served(a.runs + d.runs))
                    t.calls += len(a.runs) + len(d.runs)
            # (c): the pause again (workers that leave when idle leave), then nothing calls for
            # `window` seconds
            group = groups[ours.impl]
            time.sleep(B5_PAUSE_S)
            pids = group.pids()
            u0 = group.usage_ms()
            time.sleep(window)
            idle_cpu = group.usage_ms() - u0
            still = group.pids()
            rss = [_rss_mib(p) for p in still]
            resident = {
                "workers_before": len(pids),
                "workers_after": len(still),
                "window_s": window,
                "idle_cpu_ms": idle_cpu,
                "rss_mib": rss,
            }
        finally:
            for g in groups.values():
                g.close()
    print(
        f"\n(b) a pod ADD+DEL after a pause of {B5_PAUSE_S:g} s, longer than the workers' idle time"
        f" (PYCNI_WORKER_IDLE={B5_IDLE_S:g}); medians of {rounds}; cpu: every process, the "
        f"worker's share"
        " included"
    )
    head = (
        f"{'variant':8} | {'ADD':>6} {'DEL':>6} {'cycle':>6} | {'cpu':>6} | {'served':>7} | "
        f"{'wall x':>6}"
        f" {'cpu x':>6} | target"
    )
    print(head)
    print("-" * len(head))
    ref = times["ref"]
    ref_wall, ref_cpu = ref.cycle_ms(), ref.cycle_cpu_ms()
    rows = []
    for v in variants:
        t = times[v.impl]
        wall, cpu = t.cycle_ms(), t.cycle_cpu_ms()
        target, served = "", ""
        if v.worker:
            ok_w, ok_c = wall <= 2.0 * ref_wall, cpu <= 3.0 * ref_cpu
            target = (f"<= 2x wall ({'met' if ok_w else 'MISSED'}), "
                      f"<= 3x cpu ({'met' if ok_c else 'MISSED'})")
            served = f"{sum(t.served)}/{t.calls}"
        print(
            f"{v.impl:8} | {med(t.add):6.1f} {med(t.dele):6.1f} {wall:6.1f} | {cpu:6.1f} | "
            f"{served:>7} |"
            f" {wall / ref_wall:6.2f} {cpu / ref_cpu:6.2f} | {target}",
            flush=True,
        )
        rows.append(
            {
                "variant": v.impl,
                "add_ms": med(t.add),
                "del_ms": med(t.dele),
                "cycle_ms": wall,
                "cpu_ms": cpu,
                "wall_ratio": wall / ref_wall,
                "cpu_ratio": cpu / ref_cpu,
                "served": sum(t.served),
                "calls": t.calls,
            }
        )
    print(f"   workers alive after each pause: {up_after_pause}")
    out["B5"]["idle"] = rows
    out["B5"]["workers_after_pause"] = up_after_pause
    print(f"\n(c) the workers still up {B5_PAUSE_S:g} s after (b), then watched for {window:g} s"
          " without a call")
    if resident["workers_before"]:
        top = max(resident["rss_mib"]) if resident["rss_mib"] else float("nan")
        ok_cpu = resident["idle_cpu_ms"] < 1.0
        ok_rss = bool(resident["rss_mib"]) and top <= B5_RSS_MIB
        print(
            f"workers {resident['workers_before']} -> {resident['workers_after']}, CPU over the "
            f"window"
            f" {resident['idle_cpu_ms']:.2f} ms, RSS "
            f"{', '.join(f'{x:.1f}' for x in resident['rss_mib']) or '-'}"
            f" MiB | target: 0 CPU idle, i.e. < 1 ms ({'met' if ok_cpu else 'MISSED'}), <= "
            f"{B5_RSS_MIB:g} MiB"
            f" ({'met' if ok_rss else 'MISSED'})"
        )
    else:
        print(
            "no worker resident (every worker left after its idle time) | target: a resident worker"
            " (MISSED)"
        )
    out["B5"]["resident"] = resident


def _rss_mib(pid: int) -> float:
    """VmRSS of `pid` in MiB (NaN when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def b5(args, out: dict) -> None:
    """B5 "idle node": the cold call, the pod cycle after the idle time, the resident worker."""
    reason = benchlib.CpuGroup.unavailable()
    print(
        "\nB5 idle node: bridge + host-local, ipMasq false, each variant on its own node, rounds"
        " alternating; ms. CPU of spawned processes is counted through a cgroup of the benchmark's "
        "own"
    )
    if reason:
        print(f"   skipped: {reason}")
        return
    rounds = 1 if args.quick else 5
    out["B5"] = {}
    b5_cold(args, rounds, out)
    b5_idle(args, rounds, 2.0 if args.quick else B5_WINDOW_S, out)
    log("B5: done")


# --------------------------------------------------------------------------- main


def header(args) -> dict:
    """Print and return what is being compared, on what."""
    info = benchlib.machine()
    info["ours"] = f"{args.ours}: {benchlib.describe_bindir(args.ours)}"
    info["ref"] = f"{args.ref}: {_ref_version(args.ref)}"
    info["load at start"] = benchlib.loadavg()
    info["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    for k, v in info.items():
        print(f"# {k}: {v}")
    return info


def _ref_version(ref: str) -> str:
    r = benchlib.run([os.path.join(ref, "bridge")], {"PATH": benchlib.SAFE_PATH})
    text = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()
    return text[0] if text else "?"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the chosen parts, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", default=str(REPO / "dist" / "bin"))
    ap.add_argument("--ref", default="/usr/lib/cni")
    ap.add_argument(
        "--rounds", type=int, default=None, help="B1 rounds (B2 uses a quarter, B3 at least 5)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="tiny counts: a smoke test (< 60 s), not figures"
    )
    ap.add_argument("--only", default="B1,B2,B3,B4,B5", help="comma-separated parts to run")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--no-worker", dest="worker", action="store_false",
                    help="leave out the ours+w variant (the shipped default: the warm worker)")
    ap.add_argument("--tmp", default=None, help="where state dirs go (default $TMPDIR)")
    args = ap.parse_args(argv)
    args.ours = os.path.abspath(args.ours)
    args.rounds = args.rounds or (1 if args.quick else 15)
    parts = {p.strip().upper() for p in args.only.split(",") if p.strip()}
    reason = harness.netns_unavailable_reason()
    if reason:
        raise SystemExit(f"bench_cni: {reason}")
    for d, names in (
        (args.ours, ("bridge", "host-local", "flannel", "portmap")),
        (args.ref, ("bridge", "host-local", "portmap")),
    ):
        for n in names:
            if not os.access(os.path.join(d, n), os.X_OK):
                raise SystemExit(f"bench_cni: {os.path.join(d, n)} missing (run `make build`?)")
    out: dict[str, Any] = {"machine": header(args), "quick": args.quick, "rounds": args.rounds}
    t0 = time.monotonic()
    try:
        for part, fn in (("B1", b1), ("B2", b2), ("B3", b3), ("B4", b4), ("B5", b5)):
            if part in parts:
                fn(args, out)
    except BenchError as e:
        print(f"\nbench_cni: a plugin call failed, figures abandoned: {e}", file=sys.stderr)
        return 1
    out["machine"]["load at end"] = benchlib.loadavg()
    print(f"\n# load at end: {out['machine']['load at end']}; took {time.monotonic() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
