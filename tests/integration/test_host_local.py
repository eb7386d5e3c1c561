"""host-local beyond single calls: interoperability with the reference on one directory,
concurrency, crash safety (SIGKILL at every state-changing system call), GC and STATUS.

All plugin runs go through the CNI protocol inside a throwaway node namespace; data
directories are temp dirs. The reference binary is /usr/lib/cni/host-local.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conformance import harness
from ipam.addr import parse
from tests.host_local_testlib import (
    DUMMY_NETNS,
    NET,
    OURS,
    REF,
    call,
    exhaustion_hint,
    leases,
    netconf,
    node_namespace,
    reference,
    write_leases,
)


def ok(run: harness.PluginRun) -> harness.PluginRun:
    assert run.returncode == 0, (
        f"rc={run.returncode} stdout={run.stdout!r} stderr={run.stderr[-300:]!r}"
    )
    return run


def addr_of(run: harness.PluginRun) -> str:
    return ok(run).result["ips"][0]["address"].split("/")[0]


@pytest.fixture(scope="module")
def node():
    """The node namespace every call of this module runs in."""
    yield from node_namespace()


def inproc(command: str, conf: dict, cid: str = "ctr1") -> tuple[int, dict | None]:
    """One call of our plugin in this interpreter, through the same skel entry the executable
    uses (cni.skel.run): for the many follow-up checks of the crash tests."""
    from cni.skel import run
    from ipam.host_local import PLUGIN

    env = harness.plugin_env(
        command, containerid=cid, netns=DUMMY_NETNS, ifname="eth0", cni_path="/nonexistent"
    )
    rc, out = run(PLUGIN, env, json.dumps(conf).encode())
    return rc, (json.loads(out) if out.strip() else None)


def iok(command: str, conf: dict, cid: str) -> dict | None:
    rc, out = inproc(command, conf, cid)
    assert rc == 0, (command, cid, out)
    return out


def owners(netdir: Path) -> dict[str, str]:
    """Lease name -> owner text, asserting every lease file is complete (`<id>\\r\\n<ifname>`)."""
    out = {}
    for name, content in leases(netdir).items():
        assert re.fullmatch(rb"[A-Za-z0-9][A-Za-z0-9_.\-]*\r\neth[0-9]", content), (name, content)
        out[name] = content.decode()
    return out


# ---------------------------------------------------------------------------- interoperability


@reference
def test_reference_and_ours_share_one_directory(tmp_path, node):
    conf = netconf(tmp_path, {"subnet": "10.251.0.0/24"})
    netdir = tmp_path / NET
    assert addr_of(call(REF, node, "ADD", conf, cid="r1")) == "10.251.0.2"
    assert addr_of(call(REF, node, "ADD", conf, cid="r2", args="IP=10.251.0.4")) == "10.251.0.4"
    # ours continues the reference's round robin and skips what it leased
    assert addr_of(call(OURS, node, "ADD", conf, cid="o1")) == "10.251.0.5"
    assert addr_of(call(OURS, node, "ADD", conf, cid="o2", args="IP=10.251.0.3")) == "10.251.0.3"
    assert addr_of(call(REF, node, "ADD", conf, cid="r3")) == "10.251.0.6"
    # each side sees the other's leases for duplicate detection and CHECK
    dup = call(REF, node, "ADD", conf, cid="o1")
    assert dup.returncode == 1 and "10.251.0.5 has been allocated to o1" in dup.result["msg"]
    dup = call(OURS, node, "ADD", conf, cid="r3")
    assert dup.returncode == 1 and "10.251.0.6 has been allocated to r3" in dup.result["msg"]
    ok(call(OURS, node, "CHECK", conf, cid="r1"))
    ok(call(REF, node, "CHECK", conf, cid="o1"))
    # DEL by either releases the other's lease
    ok(call(OURS, node, "DEL", conf, cid="r1"))
    ok(call(REF, node, "DEL", conf, cid="o1"))
    assert set(owners(netdir)) == {"10.251.0.3", "10.251.0.4", "10.251.0.6"}
    # our index noticed the reference's DEL: o1 is gone, and can be added again
    assert call(OURS, node, "CHECK", conf, cid="o1").returncode == 1
    assert addr_of(call(OURS, node, "ADD", conf, cid="o1")) == "10.251.0.7"
    ok(call(OURS, node, "CHECK", conf, cid="o1"))
    ok(call(REF, node, "DEL", conf, cid="r3"))
    assert call(OURS, node, "CHECK", conf, cid="r3").returncode == 1
    assert owners(netdir) == {
        "10.251.0.3": "o2\r\neth0",
        "10.251.0.4": "r2\r\neth0",
        "10.251.0.7": "o1\r\neth0",
    }


@reference
def test_ours_honours_every_reference_lease_in_a_full_range(tmp_path, node):
    conf = netconf(tmp_path, {"subnet": "10.251.1.0/28"})  # .2 .. .14: 13 addresses
    got = [addr_of(call(REF if i % 3 else OURS, node, "ADD", conf, cid=f"c{i}")) for i in range(13)]
    assert len(set(got)) == 13
    full = call(OURS, node, "ADD", conf, cid="extra")
    assert full.returncode == 1
    # 9 leases are the reference's (no record), 4 ours for a CNI_NETNS that does not exist.
    assert full.result["msg"] == (
        "failed to allocate for range 0: no IP addresses available in range set: "
        "10.251.1.1-10.251.1.14"
        + exhaustion_hint(13, 0, 13)
    )


# ---------------------------------------------------------------------------- concurrency


def spawn(exe: str, node, command: str, conf: dict, cid: str) -> subprocess.Popen:
    env = harness.plugin_env(command, containerid=cid, netns=DUMMY_NETNS, ifname="eth0",
                             cni_path=os.path.dirname(exe))
    return subprocess.Popen(
        ["ip", "netns", "exec", node.name, exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env,
    )


def finish(procs: dict[str, subprocess.Popen], conf: dict) -> dict[str, dict]:
    data = json.dumps(conf).encode()
    for p in procs.values():
        p.stdin.write(data)
        p.stdin.close()
    out = {}
    for cid, p in procs.items():
        stdout = p.stdout.read()
        p.wait(timeout=120)
        p.stdout.close()
        p.stderr.close()
        assert p.returncode == 0, (cid, stdout)
        out[cid] = json.loads(stdout) if stdout.strip() else {}
    return out


@reference
def test_64_concurrent_adds_half_ours_half_reference(tmp_path, node):
    conf = netconf(tmp_path, {"subnet": "10.252.0.0/24"})
    netdir = tmp_path / NET
    procs = {f"c{i}": spawn(OURS if i % 2 else REF, node, "ADD", conf, f"c{i}") for i in range(64)}
    results = finish(procs, conf)
    addrs = {cid: r["ips"][0]["address"].split("/")[0] for cid, r in results.items()}
    assert len(set(addrs.values())) == 64
    assert owners(netdir) == {a: f"{cid}\r\neth0" for cid, a in addrs.items()}

    # concurrent DEL of half and ADD of 32 new containers, both implementations mixed
    procs = {}
    for i in range(32):
        procs[f"c{i}"] = spawn(REF if i % 2 else OURS, node, "DEL", conf, f"c{i}")
        procs[f"d{i}"] = spawn(OURS if i % 2 else REF, node, "ADD", conf, f"d{i}")
    results = finish(procs, conf)
    expected = {a: f"{cid}\r\neth0" for cid, a in addrs.items() if int(cid[1:]) >= 32}
    for i in range(32):
        a = results[f"d{i}"]["ips"][0]["address"].split("/")[0]
        assert a not in expected, f"d{i} got {a}, still leased"
        expected[a] = f"d{i}\r\neth0"
    assert owners(netdir) == expected
    # our index agrees with the files after the storm
    for cid in ("c0", "c31"):
        assert call(OURS, node, "CHECK", conf, cid=cid).returncode == 1
    for cid in ("c32", "c63", "d0", "d31"):
        ok(call(OURS, node, "CHECK", conf, cid=cid))


# ---------------------------------------------------------------------------- crash safety

STRACE = shutil.which("strace")
_TRACED = ("openat,link,linkat,unlink,unlinkat,rename,renameat,renameat2,utimensat,fdatasync,"
           "fsync,mkdir,mkdirat,write")
_LINE = re.compile(r"^\d+\s+(\w+)\((.*)$")


def _state_changing(call_name: str, args: str, data_dir: str) -> bool:
    if call_name == "openat":
        return "O_CREAT" in args and data_dir in args
    if call_name == "write":
        return True
    return data_dir in args or call_name in ("fdatasync", "fsync")


def kill_points(argv_env, conf: dict, data_dir: str, node, tmp: Path) -> list[tuple[str, int]]:
    """(syscall, invocation number) of every state-changing system call of one run."""
    argv, env = argv_env
    log = tmp / "strace.log"
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            node.name,
            STRACE,
            "-f",
            "-qq",
            "-o",
            str(log),
            "-e",
            f"trace={_TRACED}",
            *argv,
        ],
        input=json.dumps(conf).encode(),
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    counts: dict[str, int] = {}
    points = []
    for line in log.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        name = m.group(1)
        counts[name] = counts.get(name, 0) + 1
        if _state_changing(name, m.group(2), data_dir):
            points.append((name, counts[name]))
    return points


def run_killed(argv_env, conf: dict, node, syscall: str, nth: int) -> int:
    argv, env = argv_env
    proc = subprocess.run(
        ["ip", "netns", "exec", node.name, STRACE, "-f", "-qq", "-o", "/dev/null",
         "-e", f"trace={syscall}", "-e", f"inject={syscall}:signal=KILL:when={nth}", *argv],
        input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60,
    )
    return proc.returncode


def seed(conf: dict, ids: list[str]) -> None:
    for cid in ids:
        iok("ADD", conf, cid)


def check_after_crash(conf: dict, node, netdir: Path, victim: str, survivors: list[str]) -> None:
    """No torn lease; the victim can be cleaned up by DEL; the others are intact and the
    index (ours) agrees with the files; a new ADD gets a free address."""
    before = owners(netdir)  # asserts every lease file is complete
    last = netdir / "last_reserved_ip.0"
    if last.exists():
        assert parse(last.read_text()) is not None, last.read_bytes()
    for cid in survivors:
        iok("CHECK", conf, cid)
    iok("DEL", conf, victim)
    after = owners(netdir)
    assert f"{victim}\r\neth0" not in after.values()
    assert {k: v for k, v in before.items() if not v.startswith(f"{victim}\r\n")} == after
    new = iok("ADD", conf, "fresh")["ips"][0]["address"].split("/")[0]
    assert new not in after
    assert inproc("CHECK", conf, victim)[0] == 1
    iok("CHECK", conf, "fresh")
    assert owners(netdir)[new] == "fresh\r\neth0"


CRASH_SCENARIOS = ["add", "add-after-foreign-change", "del", "gc"]


@pytest.mark.slow
@pytest.mark.skipif(STRACE is None, reason=harness.missing_reason("strace", "strace"))
@pytest.mark.parametrize("scenario", CRASH_SCENARIOS)
def test_sigkill_at_every_state_change(tmp_path, node, scenario):
    """Kill our plugin (SIGKILL, via strace syscall injection) on entry to each system call that
    changes the data directory, in turn, and check what it left behind every time."""
    survivors = ["s1", "s2", "s3"]
    victim = "victim"
    command = "GC" if scenario == "gc" else ("DEL" if scenario == "del" else "ADD")
    version = "1.1.0" if scenario == "gc" else "1.0.0"

    def fresh(round_dir: Path) -> tuple[dict, Path]:
        if round_dir.exists():
            shutil.rmtree(round_dir)
        conf = netconf(round_dir, {"subnet": "10.253.0.0/24"}, version=version)
        seed(conf, survivors + (["victim"] if scenario in ("del", "gc") else []))
        netdir = round_dir / NET
        if scenario == "add-after-foreign-change":
            (netdir / "10.253.0.200").write_bytes(b"foreign\r\neth0")
        if scenario == "gc":
            conf["cni.dev/valid-attachments"] = [
                {"containerID": c, "ifname": "eth0"} for c in survivors
            ]
        return conf, netdir

    env = harness.plugin_env(
        command,
        containerid=victim if command != "GC" else "",
        netns=DUMMY_NETNS if command != "GC" else "",
        ifname="eth0" if command != "GC" else "",
        cni_path=os.path.dirname(OURS),
    )
    argv_env = ([OURS], env)
    conf, _ = fresh(tmp_path / "probe")
    points = kill_points(argv_env, conf, str(tmp_path / "probe"), node, tmp_path)
    assert any(p[0] in ("link", "linkat", "unlink", "unlinkat") for p in points), points
    for i, (syscall, nth) in enumerate(points):
        round_dir = tmp_path / f"r{i}"
        conf, netdir = fresh(round_dir)
        rc = run_killed(argv_env, conf, node, syscall, nth)
        assert rc != 0 or syscall == "write", f"{syscall}#{nth} was not hit"
        extra = ["foreign"] if scenario == "add-after-foreign-change" else []
        check_after_crash(
            {k: v for k, v in conf.items() if not k.startswith("cni.dev")}
            | {"cniVersion": "1.0.0"},
            node,
            netdir,
            victim,
            survivors + extra,
        )
        shutil.rmtree(round_dir)


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path, node):
    """ADD and DEL killed after a random delay, many times over; the directory stays sound."""
    rounds = int(os.environ.get("HOSTLOCAL_CRASH_ROUNDS", "8"))
    conf = netconf(tmp_path, {"subnet": "10.253.1.0/24"})
    netdir = tmp_path / NET
    rng = random.Random(1234)
    live: set[str] = set()
    for i in range(rounds):
        cid = f"k{i}"
        for command in ("ADD", "DEL"):
            p = spawn(OURS, node, command, conf, cid)
            p.stdin.write(json.dumps(conf).encode())
            p.stdin.close()
            time.sleep(rng.uniform(0.0, 0.25))
            try:
                os.kill(p.pid, signal.SIGKILL)  # `ip netns exec` exec'd the plugin: same pid
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
            p.stdout.close()
            p.stderr.close()
            owners(netdir)  # no torn or empty lease, whatever moment it died
        iok("DEL", conf, cid)  # the runtime retries DEL
        assert f"{cid}\r\neth0" not in owners(netdir).values()
        survivor = f"live{i}"
        iok("ADD", conf, survivor)
        live.add(survivor)
    assert sorted(owners(netdir).values()) == sorted(f"{c}\r\neth0" for c in live)
    for c in live:
        ok(call(OURS, node, "CHECK", conf, cid=c))


# ---------------------------------------------------------------------------- GC


def gc_conf(tmp_path: Path, attachments, key: str = "cni.dev/valid-attachments") -> dict:
    conf = netconf(tmp_path, {"subnet": "10.254.0.0/24"}, version="1.1.0")
    if attachments is not ...:
        conf[key] = attachments
    return conf


def seed_for_gc(tmp_path: Path, node) -> Path:
    conf = netconf(tmp_path, {"subnet": "10.254.0.0/24"})
    for cid in ("keep", "stale"):
        ok(call(OURS, node, "ADD", conf, cid=cid))
    netdir = tmp_path / NET
    write_leases(netdir, {
        "10.254.0.50": "legacykeep",  # legacy, ID-only content
        "10.254.0.51": "legacystale",
        "10.254.0.52": "",  # a reference ADD killed between create and write
        "10.254.0.53": "keep\r\neth1",  # same container, other interface
    })
    (netdir / "notes.txt").write_text("operator's file")
    return netdir


def test_gc_frees_every_lease_not_in_the_valid_set(tmp_path, node):
    netdir = seed_for_gc(tmp_path, node)
    valid = [
        {"containerID": "keep", "ifname": "eth0"},
        {"containerID": "legacykeep", "ifname": "eth0"},
    ]
    ok(call(OURS, node, "GC", gc_conf(tmp_path, valid), cid="", ifname=""))
    assert set(leases(netdir)) == {"10.254.0.2", "10.254.0.50"}
    assert (netdir / "notes.txt").exists() and (netdir / "lock").exists()
    # the index follows: stale can be added again, keep is still a duplicate
    conf = netconf(tmp_path, {"subnet": "10.254.0.0/24"})
    ok(call(OURS, node, "ADD", conf, cid="stale"))
    dup = call(OURS, node, "ADD", conf, cid="keep")
    assert dup.returncode == 1 and "duplicate allocation" in dup.result["msg"]


@pytest.mark.parametrize(
    "key, attachments, kept",
    [
        ("cni.dev/attachments", [{"containerID": "keep", "ifname": "eth0"}], {"10.254.0.2"}),
        ("cni.dev/valid-attachments", None, set()),
        ("cni.dev/valid-attachments", [], set()),
        ("cni.dev/valid-attachments", ..., set()),
    ],
)
def test_gc_attachment_keys(tmp_path, node, key, attachments, kept):
    netdir = seed_for_gc(tmp_path, node)
    ok(call(OURS, node, "GC", gc_conf(tmp_path, attachments, key), cid="", ifname=""))
    assert set(leases(netdir)) == kept


def test_gc_needs_110_and_tolerates_a_missing_directory(tmp_path, node):
    run = call(OURS, node, "GC", netconf(tmp_path, {"subnet": "10.254.0.0/24"}), cid="", ifname="")
    assert run.returncode == 1 and run.result["msg"] == "config version does not allow GC"
    ok(call(OURS, node, "GC", gc_conf(tmp_path, []), cid="", ifname=""))
    assert not (tmp_path / NET).exists()


@reference
def test_gc_cleans_leases_the_reference_leaked(tmp_path, node):
    conf = netconf(tmp_path, {"subnet": "10.254.1.0/24"})
    for i in range(5):
        ok(call(REF, node, "ADD", conf, cid=f"pod{i}"))
    valid = [{"containerID": "pod4", "ifname": "eth0"}]
    gc = netconf(
        tmp_path,
        {"subnet": "10.254.1.0/24"},
        version="1.1.0",
        **{"cni.dev/valid-attachments": valid},
    )
    ok(call(OURS, node, "GC", gc, cid="", ifname=""))
    assert owners(tmp_path / NET) == {"10.254.1.6": "pod4\r\neth0"}
    ok(call(REF, node, "CHECK", conf, cid="pod4"))
    assert addr_of(call(REF, node, "ADD", conf, cid="pod5")) == "10.254.1.7"


# ---------------------------------------------------------------------------- STATUS


def status(tmp_path: Path, node, ipam: dict) -> harness.PluginRun:
    return call(OURS, node, "STATUS", netconf(tmp_path, ipam, version="1.1.0"), cid="", ifname="")


def test_status(tmp_path, node):
    ipam = {"subnet": "10.254.2.0/30"}
    ok(status(tmp_path, node, ipam))
    assert not (tmp_path / NET).exists()  # STATUS writes nothing
    ok(call(OURS, node, "ADD", netconf(tmp_path, ipam), cid="only"))
    run = status(tmp_path, node, ipam)
    assert run.returncode == 1 and run.result["code"] == 50
    assert run.result["msg"] == (
        "host-local cannot allocate: no IP addresses available in range set 0: "
        "10.254.2.1-10.254.2.2"
    )
    ok(call(OURS, node, "DEL", netconf(tmp_path, ipam), cid="only"))
    ok(status(tmp_path, node, ipam))


def test_status_unusable_data_dir(tmp_path, node):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = status(blocker / "sub", node, {"subnet": "10.254.3.0/24"})
    assert run.returncode == 1 and run.result["code"] == 50
    assert "not a directory" in run.result["msg"]
    run = call(
        OURS, node, "STATUS", netconf(tmp_path, {"subnet": "10.254.3.0/24"}), cid="", ifname=""
    )
    assert run.returncode == 1 and run.result["msg"] == "config version does not allow STATUS"


def test_status_large_ipv6_range_with_many_leases(tmp_path, node):
    netdir = tmp_path / NET
    write_leases(netdir, {f"fd00:254::{i:x}": f"c{i}\r\neth0" for i in range(2, 400)}, None)
    ok(status(tmp_path, node, {"ranges": [[{"subnet": "fd00:254::/64"}]]}))


# ---------------------------------------------------------------------------- scale (not timed)


def test_many_leases_written_behind_our_back(tmp_path, node):
    """5,000 leases appear at once (a node switching from the reference): the first call
    rebuilds the index, later ones use it, and answers stay exact."""
    conf = netconf(tmp_path, {"subnet": "10.200.0.0/16"})
    netdir = tmp_path / NET
    names = {f"10.200.{v >> 8}.{v & 255}": f"old{v}\r\neth0" for v in range(2, 5002)}
    write_leases(netdir, names, "10.200.19.137")
    ok(call(OURS, node, "CHECK", conf, cid="old4000"))
    assert addr_of(call(OURS, node, "ADD", conf, cid="new")) == "10.200.19.138"
    ok(call(OURS, node, "DEL", conf, cid="old2"))
    assert "10.200.0.2" not in leases(netdir)
    assert call(OURS, node, "CHECK", conf, cid="old2").returncode == 1
    dup = call(OURS, node, "ADD", conf, cid="old3000")
    assert dup.returncode == 1 and "has been allocated to old3000" in dup.result["msg"]


# ---------------------------------------------------------------------------- single calls

V4 = {"subnet": "10.250.3.0/24"}


def test_our_1x_output_is_upstream_shaped(tmp_path, node):
    """A 1.x result printed as upstream 3d27709f prints it: keys sorted, 4-space indent, no
    empty dns (v1.1.1 prints struct order and "dns": {}; the conformance cases compare parsed
    results only)."""
    run = call(OURS, node, "ADD", netconf(tmp_path, V4, "1.0.0"))
    assert run.stdout == (
        '{\n    "cniVersion": "1.0.0",\n    "ips": [\n        {\n            "address": '
        '"10.250.3.2/24",'
        '\n            "gateway": "10.250.3.1"\n        }\n    ]\n}'
    )


def test_error_output_is_one_cni_error(tmp_path, node):
    run = call(OURS, node, "ADD", netconf(tmp_path, {"subnet": "10.0.0.0/31"}))
    assert run.returncode == 1
    assert set(run.result) <= {"cniVersion", "code", "msg", "details"}
    assert run.stderr == ""


def test_version_and_bad_env(tmp_path, node):
    run = call(OURS, node, "VERSION", {"cniVersion": "1.1.0"})
    assert run.result["supportedVersions"][-1] == "1.1.0"
    run = call(OURS, node, "ADD", netconf(tmp_path, V4), cid="a/../b")
    assert run.returncode == 1 and run.result["code"] == 4
    assert not tmp_path.joinpath(NET).exists()


def test_unwritable_data_dir_is_a_clean_error(tmp_path, node):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = call(OURS, node, "ADD", netconf(blocker / "sub", V4))
    assert run.returncode == 1
    assert run.result["code"] == 5
    assert str(blocker) in run.result["msg"] and "not a directory" in run.result["msg"]
    # DEL with a data directory that does not exist (and cannot be made) is success
    run = call(OURS, node, "DEL", netconf(blocker / "sub", V4))
    assert run.returncode == 0, run.stdout


def test_check_verifies_prev_result_addresses(tmp_path, node):
    """Beyond the reference (which only looks for any lease of the owner): every prevResult
    address inside our ranges must be leased to this very attachment."""
    conf = netconf(tmp_path, V4)
    a = call(OURS, node, "ADD", conf, cid="a").result
    call(OURS, node, "ADD", conf, cid="b")
    check = dict(conf, cniVersion="1.0.0", prevResult=a)
    assert call(OURS, node, "CHECK", check, cid="a").returncode == 0
    # an address outside every range (e.g. another plugin's) is not ours to judge
    outside = dict(a, ips=a["ips"] + [{"address": "192.168.77.5/24"}])
    assert call(OURS, node, "CHECK", dict(check, prevResult=outside), cid="a").returncode == 0
    # the lease of a's address now belongs to b (an operator edited it): CHECK fails
    (tmp_path / NET / "10.250.3.2").write_bytes(b"b\r\neth0")
    run = call(OURS, node, "CHECK", check, cid="a")
    assert run.returncode == 1
    assert run.result["msg"] == (
        "host-local: Failed to find address added by container a"
    )
    call(OURS, node, "ADD", conf, cid="a", args="IP=10.250.3.9")
    run = call(OURS, node, "CHECK", check, cid="a")
    assert run.returncode == 1
    assert run.result["msg"] == (
        "host-local: address 10.250.3.2 of container a (eth0) is not leased to it (lease holder: b "
        "eth0)"
    )


def test_names_that_would_escape_the_data_dir(tmp_path, node):
    for name in ("../escape", "a/b", ".."):
        run = call(OURS, node, "ADD", dict(netconf(tmp_path, V4), name=name))
        assert run.returncode == 1 and run.result["code"] == 7, run.stdout
    assert list(tmp_path.iterdir()) == []
