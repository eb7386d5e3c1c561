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
sys.path.insert(0, str(REPO))

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


def spawn(exe: str, env: dict[str, str], stdin_path: str) -> float:
    """Run `exe` once with stdin from a file; seconds taken. Exits the benchmark on failure."""
    fd_in = os.open(stdin_path, os.O_RDONLY)
    fd_null = os.open(os.devnull, os.O_WRONLY)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd_in, 0), (os.POSIX_SPAWN_DUP2, fd_null, 1)]
        t0 = time.perf_counter()
        pid = os.posix_spawn(exe, [exe], env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd_in)
        os.close(fd_null)
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(f"{exe} {env['CNI_COMMAND']} {env['CNI_CONTAINERID']} exited {rc}")
    return elapsed


def in_process(env: dict[str, str], stdin: bytes) -> float:
    """Run our plugin in this interpreter through the skel; seconds taken."""
    from cni.skel import run
    from ipam.host_local import PLUGIN

    t0 = time.perf_counter()
    rc, out = run(PLUGIN, env, stdin)
    elapsed = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"in-process {env['CNI_COMMAND']} failed: {out}")
    return elapsed


def rounds_exec(exe: str, data_dir: str, rounds: int, tag: str) -> tuple[list[float], list[float]]:
    """`rounds` ADD+DEL pairs by executing `exe`; (ADD times, DEL times) in ms."""
    stdin_path = os.path.join(data_dir, "conf.json")
    with open(stdin_path, "wb") as f:
        f.write(conf(data_dir))
    adds, dels = [], []
    for i in range(rounds):
        cid = f"{tag}-{i}"
        adds.append(spawn(exe, env_for("ADD", cid), stdin_path) * 1000)
        dels.append(spawn(exe, env_for("DEL", cid), stdin_path) * 1000)
    return adds, dels


def rounds_in_process(data_dir: str, rounds: int, tag: str) -> tuple[list[float], list[float]]:
    """`rounds` ADD+DEL pairs run in this process; (ADD times, DEL times) in ms."""
    stdin = conf(data_dir)
    adds, dels = [], []
    for i in range(rounds):
        cid = f"{tag}-{i}"
        adds.append(in_process(env_for("ADD", cid), stdin) * 1000)
        dels.append(in_process(env_for("DEL", cid), stdin) * 1000)
    return adds, dels


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

    print(f"host-local ADD/DEL medians in ms over {rounds} rounds; /16 subnet; {'' if have_ref else 'NO reference binary; '}"
          f"ours={a.ours}")
    header = (
        f"{'leases':>7} | {'ref ADD':>8} {'ref DEL':>8} | {'our ADD':>8} {'our DEL':>8} (exec)"
        f" | {'our ADD':>8} {'our DEL':>8} (work) | {'1st call':>8} (index rebuild)"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        ref_add: list[float] = []
        ref_del: list[float] = []
        if have_ref:
            d = tempfile.mkdtemp(prefix="bench-hl-ref-", dir=a.tmp)
            try:
                fill(d, size)
                ref_add, ref_del = rounds_exec(a.reference, d, rounds, "ref")
            finally:
                shutil.rmtree(d, ignore_errors=True)
        d = tempfile.mkdtemp(prefix="bench-hl-ours-", dir=a.tmp)
        try:
            fill(d, size)
            stdin_path = os.path.join(d, "conf.json")
            with open(stdin_path, "wb") as f:
                f.write(conf(d))
            first = spawn(a.ours, env_for("DEL", "nobody"), stdin_path) * 1000
            our_add, our_del = rounds_exec(a.ours, d, rounds, "ours")
            work_add, work_del = rounds_in_process(d, rounds, "work")
        finally:
            shutil.rmtree(d, ignore_errors=True)
        print(
            f"{size:>7} | {median(ref_add)} {median(ref_del)} | {median(our_add)} {median(our_del)}       "
            f" | {median(work_add)} {median(work_del)}       | {first:8.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
