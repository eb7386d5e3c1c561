"""Crash consistency (docs/reliability.md): kill -9 a plugin at a random point of its ADD.

For each of flannel, bridge, host-local and portmap (PYCNI_CRASH_TRIALS trials spread over the
four; CI: a reduced count, full: 200 with PYCNI_FULL=1):

1. start ADD through the real executable in a node namespace and SIGKILL it (only it, as a
   runtime's timeout does) after a delay drawn uniformly from [0, the median measured ADD time]
   (lowered to any faster ADD seen finishing before its kill);
2. no lease, last_reserved_ip or saved configuration file is empty or torn;
3. DEL succeeds and leaves nothing of the attachment: no veth, no pod interface, no lease, no
   saved configuration, no per-attachment chain or rule, no temporary file;
4. a new ADD succeeds with exactly one lease per range, and its DEL leaves nothing either.

Each plugin runs twice: as a process per call (PYCNI_WORKER=0) and through a warm worker (the
default). Through the worker, SIGKILL stops the client, not the call: the worker finishes the ADD,
and the DEL that follows must wait for it (plugins/worker/server.py's per-attachment lock) and still
leave nothing; a traceback in the worker's log is a problem.

Figures: with PYCNI_FIGURES_DIR set, <plugin>-crash.json (<plugin>-worker-crash.json) records
trials, kills that landed mid-ADD, and problems.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from conformance.harness import Netns
from conformance.workers import stop_workers, wait_accepting
from tests.reliability import budget, nsstate
from tests.reliability.known_bugs import split_crash_problems
from tests.reliability.lifecycle import Scenario, add_and_kill, make_scenario, time_add

pytestmark = [pytest.mark.slow, pytest.mark.netns]

PLUGINS = ("host-local", "bridge", "flannel", "portmap")


def _trials(plugin: str) -> int:
    total = budget.count("PYCNI_CRASH_TRIALS")
    share, extra = divmod(total, len(PLUGINS))
    return share + (1 if PLUGINS.index(plugin) < extra else 0)


def _clean(sc: Scenario, baseline: nsstate.Snapshot, pod: Netns | None, cids: set[str],
           results: list) -> list[str]:
    """Per-attachment leftovers in the node, the pod and the state dir (empty: clean)."""
    problems = nsstate.leaks(nsstate.added(baseline, sc.snapshot()), sc.attachment(cids, results))
    if pod is not None:
        ipr = nsstate.open_netns(pod.path)
        try:
            links = nsstate.snapshot_netns(ipr)["links"]
        finally:
            ipr.close()
        problems += [f"pod link {it[1]} left" for it in links]
    return problems


@pytest.fixture(params=["process", "worker"])
def mode(request) -> str:
    """How the plugin calls run: a process each (PYCNI_WORKER=0) or through a warm worker."""
    return request.param


@pytest.mark.parametrize("plugin", PLUGINS)
def test_kill_during_add(
    plugin: str, mode: str, node_ns: Netns, make_pod, tmp_path: Path, record_property
) -> None:
    """Random SIGKILLs during ADD: never a torn file; DEL then cleans up; ADD works again."""
    trials = _trials(plugin)
    if trials == 0:
        pytest.skip("no trials assigned at this count")
    rng = random.Random(budget.seed() if budget.seed() is not None else os.getpid())
    pod = make_pod()
    sc = make_scenario(plugin, node_ns, tmp_path / "state", backend=None)
    wdir = None
    if mode == "worker":
        wdir = tempfile.mkdtemp(prefix="crw-", dir="/tmp")  # short: a socket path's limit
        sc.extra_env = {"PYCNI_WORKER": "1", "PYCNI_WORKER_DIR": wdir, "PYCNI_WORKER_PROCS": "1",
                        "PYCNI_WORKER_LOG": f"{wdir}/log"}
    try:
        if wdir is not None:
            sc.run("VERSION", "crash-boot", None)  # starts the worker
            wait_accepting(wdir, 30.0)
        _kill_during_add(plugin, mode, sc, pod, trials, rng, record_property)
        log = Path(wdir, "log") if wdir else None
        assert log is None or not log.exists() or not log.read_text().strip(), log.read_text()
    finally:
        if wdir is not None:
            stop_workers(wdir)
            shutil.rmtree(wdir, ignore_errors=True)


def _kill_during_add(
    plugin: str,
    mode: str,
    sc: Scenario,
    pod: Netns,
    trials: int,
    rng: random.Random,
    record_property,
) -> None:
    typical = time_add(sc, pod)  # also leaves the shared infrastructure (bridge, chains) in place
    baseline = sc.snapshot()
    killed = finished = interrupted_writes = 0
    temps_seen: set[str] = set()
    problems: list[str] = []
    for i in range(trials):
        if plugin in ("portmap", "bridge"):
            key = "backend" if plugin == "portmap" else "ipMasqBackend"
            sc.conf[key] = "nftables" if i % 2 else "iptables"
        cid = f"crash-{plugin}-{i}"
        run = add_and_kill(sc, cid, pod, rng.uniform(0.0, typical))
        killed += run.killed
        finished += not run.killed
        if not run.killed and run.duration:
            # ADDs run faster than measured (warm caches, a quieter machine): follow them, so
            # the delays keep covering the whole ADD instead of landing after it.
            typical = min(typical, run.duration)
        how = "killed" if run.killed else f"exit {run.returncode}"
        where = f"trial {i} (kill after {run.delay * 1000:.0f} ms, {how})"
        problems += [f"{where}: {p}" for p in sc.torn_files()]
        fresh = set(sc.temp_files()) - temps_seen  # temp files this kill left
        interrupted_writes += bool(fresh)
        temps_seen |= fresh
        if run.orphans_killed:
            problems.append(f"{where}: children of the killed plugin still ran 10 s later")
        d = sc.run("DEL", cid, pod)
        if d.returncode != 0:
            problems.append(
                f"{where}: DEL after the kill failed: {d.stdout.strip()} {d.stderr[-500:]}"
            )
        problems += [f"{where}: after DEL: {p}" for p in _clean(sc, baseline, pod, {cid}, [])]
        again = sc.run("ADD", cid, pod)
        if again.returncode != 0:
            problems.append(
                f"{where}: ADD after DEL failed: {again.stdout.strip()} {again.stderr[-500:]}"
            )
        elif sc.lease_root is not None:
            mine = [k for k, v in sc.leases().items() if v.split(b"\r\n")[0] == cid.encode()]
            if len(mine) != 2:  # one IPv4 and one IPv6 range
                problems.append(f"{where}: re-ADD holds leases {mine}, want one per range")
        d2 = sc.run("DEL", cid, pod)
        if d2.returncode != 0:
            problems.append(f"{where}: final DEL failed: {d2.stdout.strip()}")
        problems += [f"{where}: after the final DEL: {p}" for p in
                     _clean(sc, baseline, pod, {cid}, [again.result] if again.result else [])]
        if len(split_crash_problems(plugin, problems)[0]) > 20:
            break
    unknown, known = split_crash_problems(plugin, problems)
    figures = {"plugin": plugin, "mode": mode, "trials": trials, "killed_mid_add": killed,
               "finished_before_kill": finished, "typical_add_ms": round(typical * 1000),
               "interrupted_atomic_writes": interrupted_writes, "known_bug_lines": known,
               "problems": problems}
    record_property("crash", json.dumps(figures))
    if os.environ.get("PYCNI_FIGURES_DIR"):
        out = Path(os.environ["PYCNI_FIGURES_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        name = f"{plugin}-crash.json" if mode == "process" else f"{plugin}-worker-crash.json"
        (out / name).write_text(json.dumps(figures, indent=1))
    sys.stderr.write(
        f"\ncrash {plugin} ({mode}): {trials} trials, {killed} killed mid-ADD, {finished} finished "
        f"first (typical ADD {typical * 1000:.0f} ms), {interrupted_writes} left a temp "
        f"file, known bugs: {known or 'none'}, {len(unknown)} other problems\n"
    )
    assert not unknown, "\n".join(unknown[:20])
    assert killed >= max(1, trials // 3), (
        f"only {killed} of {trials} kills landed mid-ADD: the test would be vacuous"
    )


def test_stale_lease_temp_of_a_killed_process_is_removed(
    node_ns: Netns, make_pod, tmp_path: Path
) -> None:
    """The state a host-local killed between writing and linking its lease temp file leaves:
    the next DEL (which holds the same lock) must not leave that temp file behind."""
    import subprocess

    pod = make_pod()
    sc = make_scenario("host-local", node_ns, tmp_path / "state")
    assert sc.run("ADD", "a", pod).returncode == 0
    gone = subprocess.Popen(["true"])  # its pid is free once it has been waited for
    gone.wait()
    stale = sc.lease_root / "relnet" / ".pycni-index" / f".lease.tmp-{gone.pid}"
    stale.write_bytes(b"crashed\r\neth0")
    assert sc.run("DEL", "a", pod).returncode == 0
    assert sc.run("DEL", "crashed", pod).returncode == 0
    assert sc.temp_files() == []



def test_stale_flannel_temp_of_a_killed_process_is_removed(
    node_ns: Netns, make_pod, tmp_path: Path
) -> None:
    """The state a flannel killed while saving its configuration leaves (the temporary file of
    the atomic write): the runtime's DEL of that container must not leave it behind."""
    import subprocess

    pod = make_pod()
    sc = make_scenario("flannel", node_ns, tmp_path / "state")
    gone = subprocess.Popen(["true"])  # its pid is free once it has been waited for
    gone.wait()
    sc.saved_dir.mkdir(parents=True, exist_ok=True)
    stale = sc.saved_dir / f".crashed.tmp-{gone.pid}-0123abcd"
    stale.write_bytes(json.dumps(sc.conf).encode()[:100])  # a write cut short
    d = sc.run("DEL", "crashed", pod)
    assert d.returncode == 0, d
    assert sc.temp_files() == []
