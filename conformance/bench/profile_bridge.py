#!/usr/bin/env python3
"""CPU per pod ADD and DEL of bridge + host-local, in this interpreter (docs/performance.md, the
bridge and host-local hot path).

    profile_bridge.py [--cycles N] [--masq] [--profile add|del] [--profile-cpu] [--top N] [--trace]

What the warm worker pays per call, without the worker around it: the plugin's own work
(cni.skel.run of bridge, host-local delegated in-process) with every import already loaded.
Runs in a throwaway node namespace (conformance/harness.py), one throwaway pod namespace per cycle,
host-local's dataDir in a temp dir; nothing is created in the root namespace. Needs root.

Per cycle it records the process CPU time (user + system of this process; the kernel's side of the
netlink work is in the system part), the CPU of child processes (iptables-restore with --masq) and
the netlink requests sent (counted at pyroute2's socket send, split into dumps and the rest, by
message type), and the CPU spent inside pyroute2's
IPRoute calls or plugins/linux/rtnl.py's requests ("netlink"), in opening and closing those
sockets, and in the IPAM delegate. Prints medians. `--profile add` wraps
the timed ADDs in cProfile and prints the top functions by own time and by cumulative time
(a profile inflates the CPU figures; take them from a run without it). `--trace` prints the
request sequence of one ADD and one DEL.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from conformance import harness

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


# RTM_* message types, for the request tally
_RTM = {16: "NEWLINK", 17: "DELLINK", 18: "GETLINK", 19: "SETLINK", 20: "NEWADDR", 21: "DELADDR",
        22: "GETADDR", 24: "NEWROUTE", 25: "DELROUTE", 26: "GETROUTE"}
NLM_F_DUMP = 0x300


class Requests:
    """Netlink requests seen at pyroute2's socket send (one entry per message in a buffer)."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def install(self) -> None:
        import struct

        from plugins.linux import netlink

        netlink._bare_package("pyroute2")
        from pyroute2.netlink.core import AsyncCoreSocket

        original = AsyncCoreSocket.send
        log = self.log

        def send(sock, data, flags=0):
            off = 0
            while off + 16 <= len(data):
                length, mtype, mflags = struct.unpack_from("IHH", data, off)
                name = _RTM.get(mtype, str(mtype))
                log.append(name + (" dump" if mflags & NLM_F_DUMP == NLM_F_DUMP else ""))
                off += (length + 3) & ~3
                if length == 0:
                    break
            return original(sock, data, flags)

        AsyncCoreSocket.send = send

    def take(self) -> list[str]:
        out = list(self.log)
        self.log.clear()
        return out


class Split:
    """CPU spent inside pyroute2's IPRoute calls and inside the IPAM delegate (process_time)."""

    def __init__(self) -> None:
        self.ms: Counter = Counter()

    def install(self) -> None:
        from pyroute2.iproute.linux import IPRoute

        from cni import invoke

        def timed(key, fn):
            def wrapper(*a, **k):
                t0 = time.process_time()
                try:
                    return fn(*a, **k)
                finally:
                    self.ms[key] += (time.process_time() - t0) * 1000

            return wrapper

        IPRoute._run_generic_rtnl = timed("netlink", IPRoute._run_generic_rtnl)
        IPRoute._run_force_sync = timed("netlink", IPRoute._run_force_sync)
        IPRoute.__init__ = timed("netlink socket", IPRoute.__init__)
        IPRoute.close = timed("netlink socket", IPRoute.close)
        try:
            from plugins.linux.rtnl import RtnlSocket
        except ImportError:  # a tree from before plugins/linux/rtnl.py
            pass
        else:
            RtnlSocket._request = timed("netlink", RtnlSocket._request)
            if hasattr(RtnlSocket, "get_link_raw"):
                RtnlSocket.get_link_raw = timed("netlink", RtnlSocket.get_link_raw)
            RtnlSocket.__init__ = timed("netlink socket", RtnlSocket.__init__)
            RtnlSocket.close = timed("netlink socket", RtnlSocket.close)
        invoke.delegate_add = timed("ipam", invoke.delegate_add)
        invoke.delegate_del = timed("ipam", invoke.delegate_del)

    def take(self) -> Counter:
        out = Counter(self.ms)
        self.ms.clear()
        return out


def conf(data_dir: str, masq: bool) -> bytes:
    """The B1/B2 bridge + host-local configuration (bench_cni.bridge_list), cniVersion 1.0.0."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "benchnet",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": True,
        "ipMasq": masq,
        "ipam": {"type": "host-local", "subnet": "10.22.0.0/16", "dataDir": data_dir,
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }).encode()


def _cpu() -> tuple[float, float, float]:
    """(this process's user CPU s, its system CPU s, its reaped children's CPU s)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime, me.ru_stime, ch.ru_utime + ch.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--masq", action="store_true", help="ipMasq true (iptables-restore per call)")
    ap.add_argument("--profile", choices=("add", "del"), default=None)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument(
        "--profile-cpu", action="store_true", help="profile CPU time instead of wall time"
    )
    ap.add_argument("--trace", action="store_true", help="print one ADD's and one DEL's requests")
    ap.add_argument("--bindir", default=str(REPO / "dist" / "bin"),
                    help="CNI_PATH holding host-local (same inode as bridge: delegated in-process)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2

    from cni.netns import in_netns
    from cni.skel import run
    from plugins import multicall
    from plugins.bridge import PLUGIN

    multicall.set_self(os.path.join(args.bindir, "bridge"))
    reqs = Requests()
    reqs.install()
    split = Split()
    split.install()
    profiler = None
    if args.profile:
        import cProfile

        # --profile-cpu: charge CPU time (this process, user + system) instead of wall time, so
        # that waits (fdatasync, the kernel deleting a veth) do not hide where the CPU goes
        profiler = cProfile.Profile(time.process_time) if args.profile_cpu else cProfile.Profile()

    node = harness.create_netns("node")
    tmp = tempfile.mkdtemp(prefix="profbridge-")
    stdin = conf(tmp, args.masq)
    cpu = {"ADD": [], "DEL": []}
    wall = {"ADD": [], "DEL": []}
    sys_cpu = {"ADD": [], "DEL": []}
    child = {"ADD": [], "DEL": []}
    counts: dict[str, list[int]] = {"ADD": [], "DEL": []}
    dumps: dict[str, list[int]] = {"ADD": [], "DEL": []}
    kinds: dict[str, Counter] = {"ADD": Counter(), "DEL": Counter()}
    where: dict[str, dict[str, list[float]]] = {"ADD": {}, "DEL": {}}
    try:
        with in_netns(node.path):
            for i in range(args.cycles + 1):  # cycle 0: warm-up, not counted
                pod = harness.create_netns("pod", lo_up=False)
                try:
                    for command in ("ADD", "DEL"):
                        env = harness.plugin_env(command, containerid=f"prof{i}", netns=pod.path,
                                                 cni_path=args.bindir)
                        reqs.take()
                        split.take()
                        on = profiler is not None and i > 0 and args.profile == command.lower()
                        u0, s0, k0 = _cpu()
                        w0 = time.perf_counter()
                        if on:
                            profiler.enable()
                        rc, out = run(PLUGIN, env, stdin)
                        if on:
                            profiler.disable()
                        w1 = time.perf_counter()
                        u1, s1, k1 = _cpu()
                        sent = reqs.take()
                        parts = split.take()
                        if rc != 0:
                            raise SystemExit(f"{command} failed: {out}")
                        if i == 0:
                            if args.trace:
                                print(f"{command} requests ({len(sent)}): {', '.join(sent)}")
                            continue
                        cpu[command].append((u1 - u0 + s1 - s0) * 1000)
                        wall[command].append((w1 - w0) * 1000)
                        sys_cpu[command].append((s1 - s0) * 1000)
                        child[command].append((k1 - k0) * 1000)
                        counts[command].append(len(sent))
                        dumps[command].append(sum(1 for s in sent if s.endswith(" dump")))
                        kinds[command].update(sent)
                        for key, value in parts.items():
                            where[command].setdefault(key, []).append(value)
                finally:
                    harness.delete_netns(pod)
    finally:
        harness.delete_netns(node)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    n = args.cycles
    print(f"bridge + host-local, ipMasq {str(args.masq).lower()}, {n} cycles, in-process"
          f" (imports loaded); medians")
    for command in ("ADD", "DEL"):
        print(f"{command}: wall {statistics.median(wall[command]):6.2f} ms,"
              f" cpu {statistics.median(cpu[command]):6.2f} ms"
              f" (min {min(cpu[command]):.2f}, system {statistics.median(sys_cpu[command]):.2f}),"
              f" children {statistics.median(child[command]):6.2f} ms,"
              f" netlink requests {statistics.median(counts[command]):.0f}"
              f" (dumps {statistics.median(dumps[command]):.0f})")
        tally = ", ".join(f"{k} {v / n:g}" for k, v in sorted(kinds[command].items()))
        print(f"   per call: {tally}")
        parts = ", ".join(
            f"{k} {statistics.median(v):.2f}" for k, v in sorted(where[command].items())
        )
        print(f"   cpu inside (ms, medians): {parts}")
    if profiler is not None:
        import pstats

        st = pstats.Stats(profiler)
        st.sort_stats("tottime").print_stats(args.top)
        st.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
