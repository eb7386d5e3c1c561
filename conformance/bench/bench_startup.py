#!/usr/bin/env python3
"""Start-up cost of the suite's executables: the VERSION floor and a real loopback ADD.

    bench_startup.py [--runs N] [--warmup N] [--baseline] [--json FILE] LABEL=DIR [LABEL=DIR ...]

Each DIR must hold a `loopback` executable (a built dist/bin, an extracted release tarball,
a measurement variant from scripts/measure_layouts.py, the dev launchers). Figures per DIR:

* floor: the executable started under a name that is no entry point (a symlink): bootloader,
  interpreter and plugins.multicall only; it exits 2 ("unknown entry point").
* VERSION: `CNI_COMMAND=VERSION loopback` (PYCNI_WORKER=0) with a one-line config on stdin, the
  least any call costs: bootloader, interpreter, our imports, the reply.
* VERSION via worker: the same call with a warm worker up (one, in a private worker directory,
  ended afterwards): what the process the runtime starts costs when a worker serves the call.
* ADD: `CNI_COMMAND=ADD loopback` run in a throwaway node namespace against a throwaway pod
  namespace (conformance/harness.py makes and removes both): the same plus pyroute2 and the netlink
  work. Nothing is made in the root namespace.

Timing is a plain loop: posix_spawn, wait4, perf_counter around the pair, stdin from a file;
the loop's own cost (well under a millisecond) is the same for every candidate. Two figures per
call: wall time (what a runtime waits) and the child's CPU time, user + system from wait4's
rusage (much less disturbed by other load on the machine than wall time).
`--baseline` adds the bare system interpreter (`python3 -I -S -c pass`, `python3 -I -c pass`)
for scale. Needs root for ADD (namespaces); without root only VERSION is measured.
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
from pathlib import Path

from conformance import harness

REPO = Path(__file__).resolve().parents[2]


SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CONF = {"cniVersion": "1.1.0", "name": "bench", "type": "loopback"}


def spawn_wait(argv: list[str], env: dict[str, str], stdin_path: str) -> tuple[float, float, int]:
    """Run argv once with stdin from `stdin_path`, output discarded.

    Returns (wall seconds, CPU seconds of the child, exit status).
    """
    fd_in = os.open(stdin_path, os.O_RDONLY)
    fd_null = os.open(os.devnull, os.O_WRONLY)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, fd_in, 0),
            (os.POSIX_SPAWN_DUP2, fd_null, 1),
            (os.POSIX_SPAWN_DUP2, fd_null, 2),
        ]
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd_in)
        os.close(fd_null)
    return elapsed, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def measure(
    argv: list[str], env: dict[str, str], stdin_path: str, runs: int, warmup: int, expect: int = 0
) -> dict:
    """Time `runs` calls after `warmup` untimed ones; every call must exit with `expect`."""
    for _ in range(warmup):
        _, _, rc = spawn_wait(argv, env, stdin_path)
        if rc != expect:
            raise SystemExit(f"{argv} exited {rc} (env {env})")
    times, cpu = [], []
    for _ in range(runs):
        t, c, rc = spawn_wait(argv, env, stdin_path)
        if rc != expect:
            raise SystemExit(f"{argv} exited {rc} (env {env})")
        times.append(t * 1000)
        cpu.append(c * 1000)
    return {
        "runs": runs,
        "mean_ms": statistics.fmean(times),
        "median_ms": statistics.median(times),
        "stdev_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min_ms": min(times),
        "cpu_median_ms": statistics.median(cpu),
        "load": os.getloadavg()[0],
    }


def measure_client(exe: str, stdin_path: str, args) -> dict | None:
    """VERSION through a warm worker (one, in a private directory, ended afterwards): what the
    process the runtime starts costs when a worker serves the call. None when no worker came up
    (a build without one)."""
    from conformance.workers import accepting, stop_workers, worker_pids

    wdir = tempfile.mkdtemp(prefix="bsw-", dir="/tmp")  # short: a socket path's limit
    env = {"PATH": SAFE_PATH, "CNI_COMMAND": "VERSION", "PYCNI_WORKER": "1",
           "PYCNI_WORKER_DIR": wdir, "PYCNI_WORKER_PROCS": "1", "PYCNI_WORKER_IDLE": "60"}
    try:
        deadline = time.monotonic() + 30
        while not (worker_pids(wdir) and accepting(wdir)):  # it listens once it has imported all
            if time.monotonic() > deadline:
                return None
            spawn_wait([exe], env, stdin_path)
            time.sleep(0.1)
        return measure([exe], env, stdin_path, args.runs, args.warmup)
    finally:
        stop_workers(wdir)
        shutil.rmtree(wdir, ignore_errors=True)


def bench_dir(label: str, bindir: Path, stdin_path: str, args, node, pod) -> dict:
    """VERSION and (with namespaces) ADD figures for bindir/loopback."""
    exe = str(bindir / "loopback")
    if not os.access(exe, os.X_OK):
        raise SystemExit(f"{label}: no executable {exe}")
    row = {"label": label, "dir": str(bindir)}
    # The floor: started under a name that is no entry point, the program only loads
    # plugins.multicall and exits 2. A symlink, so the candidate directory is left untouched.
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "no-such-plugin")
        os.symlink(exe, probe)
        row["floor"] = measure([probe], {"PATH": SAFE_PATH}, stdin_path, args.runs, args.warmup, 2)
    env = {"PATH": SAFE_PATH, **harness.IN_PROCESS_ENV, "CNI_COMMAND": "VERSION"}
    row["version"] = measure([exe], env, stdin_path, args.runs, args.warmup)
    row["client"] = measure_client(exe, stdin_path, args)
    if node is not None:
        from cni.netns import in_netns

        env = {
            "PATH": SAFE_PATH,
            **harness.IN_PROCESS_ENV,
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "bench",
            "CNI_NETNS": pod.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(bindir),
        }
        with in_netns(node.path):  # children spawned from this thread start in the node ns
            row["add"] = measure([exe], env, stdin_path, args.runs, args.warmup)
    return row


def baseline_rows(stdin_path: str, args) -> list[dict]:
    """The bare system interpreter, for scale."""
    rows = []
    for label, argv in (
        ("python3 -I -S -c pass", ["/usr/bin/python3", "-I", "-S", "-c", "pass"]),
        ("python3 -I -c pass", ["/usr/bin/python3", "-I", "-c", "pass"]),
    ):
        if os.access(argv[0], os.X_OK):
            rows.append(
                {
                    "label": label,
                    "version": measure(
                        argv, {"PATH": SAFE_PATH}, stdin_path, args.runs, args.warmup
                    ),
                }
            )
    return rows


def fmt(m: dict | None) -> str:
    """wall median (min) / CPU median, in ms, or a dash."""
    if not m:
        return "–"
    return f"{m['median_ms']:.1f} ({m['min_ms']:.1f}) / {m['cpu_median_ms']:.1f}"


def table(rows: list[dict]) -> str:
    """A markdown table of the rows."""
    out = [
        "| candidate | floor | VERSION | VERSION via worker | loopback ADD |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r['label']} | {fmt(r.get('floor'))} | {fmt(r.get('version'))} | "
            f"{fmt(r.get('client'))}"
            f" | {fmt(r.get('add'))} |"
        )
    out.append("")
    out.append("ms per call: wall median (wall min) / CPU median (user + system)")
    loads = [m["load"] for r in rows for m in (r.get("version"), r.get("add")) if m]
    out.append("")
    out.append(f"load average during the runs: {min(loads):.1f}–{max(loads):.1f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure every candidate, print a markdown table (and JSON if asked)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("candidates", nargs="+", metavar="LABEL=DIR")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "40")))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--baseline", action="store_true", help="also time the bare interpreter")
    ap.add_argument("--json", help="write the figures as JSON to this file")
    args = ap.parse_args(argv)

    candidates = []
    for c in args.candidates:
        label, sep, d = c.partition("=")
        if not sep:
            ap.error(f"{c!r}: expected LABEL=DIR")
        candidates.append((label, Path(d).resolve()))

    import signal

    def _terminate(signum, frame):  # so the namespaces below are removed on `kill`
        raise SystemExit(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(CONF, f)
        stdin_path = f.name
    node = pod = None
    try:
        if harness.netns_unavailable_reason() is None:
            node = harness.create_netns("bnode", lo_up=True)
            pod = harness.create_netns("bpod", lo_up=False)
        rows = baseline_rows(stdin_path, args) if args.baseline else []
        for label, d in candidates:
            rows.append(bench_dir(label, d, stdin_path, args, node, pod))
            print(f"measured {label}", file=sys.stderr)
    finally:
        for ns in (pod, node):
            if ns is not None:
                harness.delete_netns(ns)
        os.unlink(stdin_path)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
