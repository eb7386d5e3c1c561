"""Lease liveness records and reclaim (ipam/lease_record.py, ipam/liveness.py), unit level.

Namespace files are stood in for by plain temp files (a stat identity is all the code uses);
the integration tests with real namespaces are in test_host_local_liveness.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipam import liveness
from ipam.index import INDEX_DIR
from ipam.lease_record import Host, LeaseRecord, decode, encode, netns_identity
from ipam.liveness import DEAD, LIVE, UNKNOWN, lease_states, reclaim
from ipam.store import Store

NET = "livenet"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    boot = tmp_path / "boot_id"
    boot.write_text("11111111-1111-1111-1111-111111111111\n")
    monkeypatch.setenv("PYCNI_BOOT_ID_FILE", str(boot))
    return Host(str(boot))


def reboot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    """Another boot: a new boot ID file (the ID is read once per file and process)."""
    boot = tmp_path / "boot_id.2"
    boot.write_text("22222222-2222-2222-2222-222222222222\n")
    monkeypatch.setenv("PYCNI_BOOT_ID_FILE", str(boot))
    return Host(str(boot))


def add(data: Path, ip: str, cid: str, netns: Path | str | None) -> None:
    with Store.open(str(data), NET) as store:
        ident = netns_identity(str(netns)) if netns is not None else None
        assert store.reserve(ip, cid, "eth0", ident)


def renamed(path: Path) -> None:
    """Put another file at `path` (made first, so it cannot reuse the old file's inode)."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text("")
    os.replace(fresh, path)


def by_ip(states: list[liveness.LeaseState]) -> dict[str, tuple[str, str]]:
    return {s.ip: (s.state, s.reason) for s in states}


def test_record_round_trip_escapes_the_path():
    rec = LeaseRecord("b", "7.8", "/run/netns/a\tb\nc%d e", 3, 4)
    fields = encode(rec).split("\t")
    assert "\n" not in encode(rec)
    assert decode(fields) == rec
    assert decode(["L9", "b", "1", "2", "3", "/x"]) is None
    assert decode(["L1", "b", "1.2", "x", "3", "/x"]) is None


def test_states_live_gone_replaced_and_reference_lease(tmp_path, host):
    data = tmp_path / "data"
    ns = {n: tmp_path / f"ns{n}" for n in range(3)}
    for p in ns.values():
        p.write_text("")
    add(data, "10.0.0.2", "live", ns[0])
    add(data, "10.0.0.3", "gone", ns[1])
    add(data, "10.0.0.4", "other", ns[2])
    (data / NET / "10.0.0.5").write_bytes(b"goref\r\neth0")  # written by the Go plugin
    ns[1].unlink()
    renamed(ns[2])  # the path now names another file

    states = by_ip(lease_states(str(data), NET, host))
    assert states == {
        "10.0.0.2": (LIVE, liveness.NETNS_PRESENT),
        "10.0.0.3": (DEAD, liveness.NETNS_GONE),
        "10.0.0.4": (DEAD, liveness.NETNS_REPLACED),
        "10.0.0.5": (UNKNOWN, liveness.NO_RECORD),
    }
    # The lease files keep the reference's bytes.
    assert (data / NET / "10.0.0.2").read_bytes() == b"live\r\neth0"


def test_lease_states_changes_nothing(tmp_path, host):
    data = tmp_path / "data"
    add(data, "10.0.0.2", "a", tmp_path)
    (data / NET / "10.0.0.9").write_bytes(b"goref\r\neth0")  # index no longer current

    def snapshot() -> dict[str, tuple[int, bytes]]:
        out = {}
        for root, _, names in os.walk(data):
            for n in names:
                p = os.path.join(root, n)
                out[p] = (os.stat(p).st_mtime_ns, Path(p).read_bytes())
        out[str(data / NET)] = (os.stat(data / NET).st_mtime_ns, b"")
        return out

    before = snapshot()
    assert len(lease_states(str(data), NET, host)) == 2
    assert snapshot() == before


def test_earlier_boot_is_dead_even_with_the_namespace_present(tmp_path, host, monkeypatch):
    data = tmp_path / "data"
    nsfile = tmp_path / "ns"
    nsfile.write_text("")
    add(data, "10.0.0.2", "a", nsfile)
    add(data, "10.0.0.3", "b", None)  # a caller that gave no namespace: boot only
    later = reboot(tmp_path, monkeypatch)
    assert by_ip(lease_states(str(data), NET, later)) == {
        "10.0.0.2": (DEAD, liveness.EARLIER_BOOT),
        "10.0.0.3": (UNKNOWN, liveness.NO_RECORD),
    }


def test_no_namespace_recorded_is_unknown_in_this_boot_dead_after_reboot(
    tmp_path, host, monkeypatch
):
    data = tmp_path / "data"
    add(data, "10.0.0.2", "a", tmp_path / "never-existed")
    assert by_ip(lease_states(str(data), NET, host))["10.0.0.2"] == (UNKNOWN, liveness.NO_NETNS)
    later = reboot(tmp_path, monkeypatch)
    assert by_ip(lease_states(str(data), NET, later))["10.0.0.2"] == (DEAD, liveness.EARLIER_BOOT)


def test_records_survive_a_rebuild_but_not_a_replaced_lease_file(tmp_path, host):
    data = tmp_path / "data"
    nsdir = tmp_path / "ns"
    nsdir.mkdir()
    for i in (2, 3):
        (nsdir / str(i)).write_text("")
        add(data, f"10.0.0.{i}", f"c{i}", nsdir / str(i))
    # Someone else changes the directory: the next open rebuilds the index from the files.
    (data / NET / "10.0.0.9").write_bytes(b"goref\r\neth0")
    # ... and rewrites one of our leases with the same owner (a new file: not our lease any more).
    (data / NET / ".new").write_bytes(b"c3\r\neth0")
    os.replace(data / NET / ".new", data / NET / "10.0.0.3")
    with Store.open(str(data), NET) as store:
        assert not store.index.is_current()
        store.owned("c2", "eth0")  # any operation: rebuilds and, on leaving, writes the index
    assert store.index.is_current()
    for i in (2, 3):
        (nsdir / str(i)).unlink()
    assert by_ip(lease_states(str(data), NET, host)) == {
        "10.0.0.2": (DEAD, liveness.NETNS_GONE),
        "10.0.0.3": (UNKNOWN, liveness.NO_RECORD),
        "10.0.0.9": (UNKNOWN, liveness.NO_RECORD),
    }
    bucket_text = "".join(
        p.read_text() for p in (data / NET / INDEX_DIR).iterdir() if len(p.name) == 2
    )
    assert "L1\t" in bucket_text


def test_reclaim_frees_only_what_is_still_dead(tmp_path, host):
    data = tmp_path / "data"
    ns = {n: tmp_path / f"ns{n}" for n in range(4)}
    for p in ns.values():
        p.write_text("")
    for n in range(4):
        add(data, f"10.0.0.{n + 2}", f"c{n}", ns[n])
    (data / NET / "10.0.0.9").write_bytes(b"goref\r\neth0")
    ns[1].unlink()
    ns[2].rename(tmp_path / "ns2.old")  # kept: a file made at ns2 later gets another inode
    ns[3].unlink()
    states = lease_states(str(data), NET, host)
    assert [s.state for s in states] == [LIVE, DEAD, DEAD, DEAD, UNKNOWN]
    (tmp_path / "ns2").write_text("")  # c2's path names a namespace again (another one)
    # c3 left and its address went to a new pod (in a live namespace) since the states were taken.
    with Store.open(str(data), NET) as store:
        assert store.release_owner("c3", "eth0") == ["10.0.0.5"]
        assert store.reserve("10.0.0.5", "new", "eth0", netns_identity(str(ns[0])))
    # A caller that claims a live and an unknown lease are dead is not believed.
    forged = [
        liveness.LeaseState(s.ip, s.container_id, s.ifname, DEAD, "forged")
        if s.state != DEAD else s
        for s in states
    ]
    freed = reclaim(str(data), NET, forged, host)
    assert sorted((f.ip, f.container_id, f.reason) for f in freed) == [
        ("10.0.0.3", "c1", liveness.NETNS_GONE),
        ("10.0.0.4", "c2", liveness.NETNS_REPLACED),
    ]
    assert sorted(os.listdir(data / NET)) == sorted(
        [".pycni-index", "lock", "10.0.0.2", "10.0.0.5", "10.0.0.9"]
    )
    assert (data / NET / "10.0.0.5").read_bytes() == b"new\r\neth0"
    assert reclaim(str(data), NET, forged, host) == []  # idempotent
    assert reclaim(str(tmp_path / "none"), NET, forged, host) == []


def test_proc_paths_are_looked_up_under_the_proc_root(tmp_path, host, monkeypatch):
    """CNI_NETNS=/proc/<pid>/ns/net (docker's form) is examined under PYCNI_PROC_ROOT."""
    proc = tmp_path / "proc"
    (proc / "4242" / "ns").mkdir(parents=True)
    (proc / "4242" / "ns" / "net").write_text("")
    monkeypatch.setenv("PYCNI_PROC_ROOT", str(proc))
    fake = Host(host.boot_id_file, str(proc))
    assert fake.resolve("/proc/4242/ns/net") == f"{proc}/4242/ns/net"
    assert fake.resolve("/run/netns/x") == "/run/netns/x"
    data = tmp_path / "data"
    add(data, "10.0.0.2", "a", "/proc/4242/ns/net")
    assert by_ip(lease_states(str(data), NET, fake))["10.0.0.2"] == (LIVE, liveness.NETNS_PRESENT)
    (proc / "4242" / "ns" / "net").unlink()  # the process (and with it the namespace) is gone
    assert by_ip(lease_states(str(data), NET, fake))["10.0.0.2"] == (DEAD, liveness.NETNS_GONE)
