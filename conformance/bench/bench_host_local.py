#!/usr/bin/env python3
"""host-local at scale: ADD and DEL cost with 0, 10,000 and 60,000 leases, ours vs the reference.

    bench_host_local.py [--quick] [--rounds N] [--sizes 0,10000,60000]
                        [--ours dist/bin/host-local] [--reference /usr/lib/cni/host-local]

For every size a fresh data directory (a temp dir) gets that many leases in a /16, written
directly as files (`10.128.x.y` holding `<id>\\r\\neth0`, plus `last_reserved_ip.0`), as a
node that has been running a while looks. Then each implementation does `rounds` pairs of
ADD (a new container, which takes the next address) and DEL (of that container), so the
lease count stays at the size. Printed per size, medians in milliseconds:

* reference ADD / DEL: the Go binary, whole process (its start-up is ~1-2 ms).
* ours ADD / DEL (exec): our executable, whole process, interpreter and imports included.
* ours ADD / DEL (work): the same calls run in this process through cni.skel.run, i.e. the
  plugin's own work with the interpreter and imports already loaded.
* ours first call: the first DEL after the leases were written behind our back; it
  rebuilds the owner index from the lease files (once; later calls use the index).

Exec'd calls are shown twice: wall time, and the child's CPU time (user + system, from
wait4), which stays meaningful when the machine is busy.

A benchmark, not a test: nothing is asserted beyond every call succeeding.
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

REPO = Path(__file__).resolve().parents[2]

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK = "bench"
SUBNET_PREFIX = (10, 128)


def conf(data_dir: str) -> bytes:
    """The network config used for every call."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.128.0.0/16", "dataDir": data_dir},
        }
    ).encode()


def env_for(command: str, container: str) -> dict[str, str]:
    """The protocol environment (no real namespace is needed: host-local never enters it)."""
    return {
        "PATH": SAFE_PATH,
        "PYCNI_WORKER": "0",  # a process per call (the worker variant overrides it)
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": "/var/run/netns/bench-host-local-none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/nonexistent",
    }


def fill(data_dir: str, count: int) -> None:
    """Write `count` leases (from 10.128.0.2 upwards) and last_reserved_ip.0 directly."""
    netdir = os.path.join(data_dir, NETWORK)
    os.makedirs(netdir, exist_ok=True)
    last = None
    for i in range(count):
        v = i + 2
        name = f"{SUBNET_PREFIX[0]}.{SUBNET_PREFIX[1]}.{v >> 8}.{v & 255}"
        fd = os.open(os.path.join(netdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, f"filler-{i}\r\neth0".encode())
        os.close(fd)
        last = name
    if last is not None:
        with open(os.path.join(netdir, "last_reserved_ip.0"), "w") as f:
            f.write(last)
    # Flush the fill now, so its writeback is not charged to the first fsync of a timed call.
    os.sync()


def spawn(exe: str, env: dict[str, str], stdin_path: str) -> tuple[float, float]:
    """Run `exe` once with stdin from a file; (wall seconds, CPU seconds of the child).

    CPU time (user + system, from wait4) is what the call costs the node; unlike wall time it
    hardly moves when other work competes for the CPUs. Exits the benchmark on failure."""
    fd_in = os.open(stdin_path, os.O_RDONLY)
    fd_null = os.open(os.devnull, os.O_WRONLY)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd_in, 0), (os.POSIX_SPAWN_DUP2, fd_null, 1)]
        t0 = time.perf_counter()
        pid = os.posix_spawn(exe, [exe], env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd_in)
        os.close(fd_null)
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(f"{exe} {env['CNI_COMMAND']} {env['CNI_CONTAINERID']} exited {rc}")
    return elapsed, usage.ru_utime + usage.ru_stime


def in_process(env: dict[str, str], stdin: bytes) -> tuple[float, float]:
    """Run our plugin in this interpreter through the skel; (wall, CPU) seconds taken."""
    from cni.skel import run
    from ipam.host_local import PLUGIN

    c0 = time.process_time()
    t0 = time.perf_counter()
    rc, out = run(PLUGIN, env, stdin)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if rc != 0:
        raise SystemExit(f"in-process {env['CNI_COMMAND']} failed: {out}")
    return elapsed, cpu


Times = dict[str, list[float]]


def rounds_exec(exe: str, data_dir: str, rounds: int, tag: str) -> Times:
    """`rounds` ADD+DEL pairs by executing `exe`: wall and CPU ms of each ADD and DEL."""
    stdin_path = os.path.join(data_dir, "conf.json")
    with open(stdin_path, "wb") as f:
        f.write(conf(data_dir))
    out: Times = {"add": [], "del": [], "add_cpu": [], "del_cpu": []}
    for i in range(rounds):
        cid = f"{tag}-{i}"
        for cmd, key in (("ADD", "add"), ("DEL", "del")):
            wall, cpu = spawn(exe, env_for(cmd, cid), stdin_path)
            out[key].append(wall * 1000)
            out[key + "_cpu"].append(cpu * 1000)
    return out


def rounds_in_process(data_dir: str, rounds: int, tag: str) -> Times:
    """`rounds` ADD+DEL pairs run in this process: wall and CPU ms of each ADD and DEL."""
    stdin = conf(data_dir)
    out: Times = {"add": [], "del": [], "add_cpu": [], "del_cpu": []}
    for i in range(rounds):
        cid = f"{tag}-{i}"
        for cmd, key in (("ADD", "add"), ("DEL", "del")):
            wall, cpu = in_process(env_for(cmd, cid), stdin)
            out[key].append(wall * 1000)
            out[key + "_cpu"].append(cpu * 1000)
    return out


def median(xs: list[float]) -> str:
    """Median in ms, formatted; "-" for no data."""
    return f"{statistics.median(xs):8.1f}" if xs else "       -"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (5 instead of 15)")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--sizes", default="0,10000,60000")
    p.add_argument("--ours", default=str(REPO / "dist" / "bin" / "host-local"))
    p.add_argument("--reference", default="/usr/lib/cni/host-local")
    p.add_argument("--tmp", default=None, help="directory for the data dirs (default: $TMPDIR)")
    a = p.parse_args(argv)
    rounds = a.rounds or (5 if a.quick else 15)
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    have_ref = os.access(a.reference, os.X_OK)
    if not os.access(a.ours, os.X_OK):
        raise SystemExit(f"{a.ours} is missing: run `make build` first")

    # Warm the in-process path once (imports, pydantic schema building) outside the timings.
    warm = tempfile.mkdtemp(prefix="bench-hl-warm-", dir=a.tmp)
    try:
        rounds_in_process(warm, 1, "warm")
    finally:
        shutil.rmtree(warm, ignore_errors=True)

    print(f"host-local ADD and DEL, median ms over {rounds} rounds, /16 subnet"
          f"{'' if have_ref else ' (NO reference binary)'}; ours = {a.ours}")
    print("  wall: whole process (interpreter start-up and imports included for ours)")
    print("  cpu:  user+system CPU of the process (robust against a busy machine)")
    print("  work: ours in this process via cni.skel.run, i.e. the plugin's own work")
    print("  1st:  ours' first call after the leases were written behind its back (index rebuild)")
    header = (
        f"{'leases':>7} {'':5} | {'ref ADD':>8} {'ref DEL':>8} | {'our ADD':>8} {'our DEL':>8}"
        f" | {'work ADD':>8} {'work DEL':>8} | {'1st':>8}"
    )
    print(header)
    print("-" * len(header))
    empty: Times = {"add": [], "del": [], "add_cpu": [], "del_cpu": []}
    for size in sizes:
        ref = empty
        if have_ref:
            d = tempfile.mkdtemp(prefix="bench-hl-ref-", dir=a.tmp)
            try:
                fill(d, size)
                ref = rounds_exec(a.reference, d, rounds, "ref")
            finally:
                shutil.rmtree(d, ignore_errors=True)
        d = tempfile.mkdtemp(prefix="bench-hl-ours-", dir=a.tmp)
        try:
            fill(d, size)
            stdin_path = os.path.join(d, "conf.json")
            with open(stdin_path, "wb") as f:
                f.write(conf(d))
            first, first_cpu = spawn(a.ours, env_for("DEL", "nobody"), stdin_path)
            ours = rounds_exec(a.ours, d, rounds, "ours")
            work = rounds_in_process(d, rounds, "work")
        finally:
            shutil.rmtree(d, ignore_errors=True)
        print(
            f"{size:>7} {'wall':5} | {median(ref['add'])} {median(ref['del'])} | "
            f"{median(ours['add'])} {median(ours['del'])} | {median(work['add'])} "
            f"{median(work['del'])} | "
            f"{first * 1000:8.1f}"
        )
        print(
            f"{'':>7} {'cpu':5} | {median(ref['add_cpu'])} {median(ref['del_cpu'])} | "
            f"{median(ours['add_cpu'])} {median(ours['del_cpu'])} | "
            f"{median(work['add_cpu'])} {median(work['del_cpu'])} | {first_cpu * 1000:8.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
