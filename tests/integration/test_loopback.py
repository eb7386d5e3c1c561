"""loopback against the reference (/usr/lib/cni/loopback), docs/reference-behaviour.md §4 and
P101-P107.

Each case runs ours and, where installed, the reference on identical input in pod namespaces of
their own, and compares the parsed results field by field.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.harness import run_plugin

REPO = str(Path(__file__).resolve().parents[2])
OURS = os.path.join(REPO, "dist", "bin", "loopback")
REF = "/usr/lib/cni/loopback"
# v1.1.1 lists up to 1.0.0; 1.1.0 is ours (upstream 3d27709f) only.
REF_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")
ALL_VERSIONS = REF_VERSIONS + ("1.1.0",)

pytestmark = pytest.mark.skipif(not os.path.exists(OURS), reason="dist/bin not built (make build)")


def conf(version, **extra):
    return {"cniVersion": version, "name": "lonet", **extra}


def drop_empty_dns(result):
    # Deviation v1.1.1 vs upstream 3d27709f (docs/reference-behaviour.md §0.9 #1): v1.1.1 prints an
    # empty "dns": {} in 1.x-shaped results; upstream 3d27709f (which we follow) omits it.
    if isinstance(result, dict) and result.get("dns") == {}:
        result = {k: v for k, v in result.items() if k != "dns"}
    return result


def lo_state(pod):
    out = pod.ip("-o", "addr", "show", "dev", "lo").stdout
    up = "UP" in pod.ip("link", "show", "lo").stdout.split(">")[0]
    addrs = sorted(line.split()[3] for line in out.splitlines())
    return up, addrs


def add(exe, pod, version, ifname="eth0", **extra):
    return run_plugin(exe, "ADD", conf(version, **extra), netns=pod.path, ifname=ifname, in_netns=None)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_101_102_add_every_version(make_pod, version):
    pod = make_pod()
    ours = add(OURS, pod, version, ifname="whatever0")  # CNI_IFNAME is ignored
    assert ours.returncode == 0, ours.stdout
    assert lo_state(pod) == (True, ["127.0.0.1/8", "::1/128"])
    assert ours.result == {
        "cniVersion": version,
        "interfaces": [{"mac": "00:00:00:00:00:00", "name": "lo", "sandbox": pod.path}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}, {"address": "::1/128", "interface": 0}],
    }
    # Quirk kept from the reference (docs/reference-behaviour.md §4.2): still 1.x-shaped under 0.x
    # labels, no "version" keys.
    if version in REF_VERSIONS and os.path.exists(REF):
        ref_pod = make_pod()
        ref = add(REF, ref_pod, version)
        assert ref.returncode == 0
        ref.result["interfaces"][0]["sandbox"] = pod.path
        assert drop_empty_dns(ref.result) == ours.result


def test_empty_version_is_really_converted_to_010(make_pod):
    pod = make_pod()
    ours = add(OURS, pod, "")
    assert ours.returncode == 0
    assert ours.result["ip4"] == {"ip": "127.0.0.1/8"} and ours.result["ip6"] == {"ip": "::1/128"}
    if os.path.exists(REF):
        assert add(REF, make_pod(), "").result == ours.result


def test_103_prev_result_echoed(make_pod):
    prev = {
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"version": "4", "address": "10.1.0.5/24", "interface": 0}],
        "dns": {"nameservers": ["10.1.0.1"]},
    }
    pod = make_pod()
    ours = add(OURS, pod, "0.4.0", prevResult=prev)
    assert ours.returncode == 0 and ours.result == prev
    if os.path.exists(REF):
        assert add(REF, make_pod(), "0.4.0", prevResult=prev).result == prev


def test_104_non_loopback_address_refused(make_pod):
    for exe in (OURS, REF) if os.path.exists(REF) else (OURS,):
        pod = make_pod()
        pod.ip("addr", "add", "10.250.9.9/24", "dev", "lo")
        r = add(exe, pod, "1.0.0")
        assert r.returncode == 1, exe
        assert r.result["msg"] == 'loopback interface found with non-loopback address "10.250.9.9"'


def test_105_check_before_and_after_add(make_pod):
    for exe in (OURS, REF) if os.path.exists(REF) else (OURS,):
        pod = make_pod()
        r = run_plugin(exe, "CHECK", conf("1.0.0"), netns=pod.path)
        assert r.returncode == 1 and r.result["msg"] == "loopback interface is down", exe
        assert add(exe, pod, "1.0.0").returncode == 0
        assert run_plugin(exe, "CHECK", conf("1.0.0"), netns=pod.path).returncode == 0


def test_106_del(make_pod, tmp_path):
    pod = make_pod()
    assert add(OURS, pod, "1.0.0").returncode == 0
    for _ in range(2):  # repeatable
        r = run_plugin(OURS, "DEL", conf("1.0.0"), netns=pod.path)
        assert r.returncode == 0 and r.stdout == ""
        assert lo_state(pod) == (False, ["127.0.0.1/8"])
    assert run_plugin(OURS, "DEL", conf("1.0.0"), netns="").returncode == 0
    assert run_plugin(OURS, "DEL", conf("1.0.0"), netns="/run/netns/cnitest-gone-xyz").returncode == 0
    regular = tmp_path / "not-a-netns"
    regular.write_text("")
    for exe in (OURS, REF) if os.path.exists(REF) else (OURS,):
        r = run_plugin(exe, "DEL", conf("1.0.0"), netns=str(regular))
        assert r.returncode == 1 and r.result["msg"].startswith(f'unknown FS magic on "{regular}": '), exe


def test_107_add_missing_netns(make_pod):
    for exe in (OURS, REF) if os.path.exists(REF) else (OURS,):
        r = run_plugin(exe, "ADD", conf("1.0.0"), netns="/run/netns/cnitest-missing-xyz")
        assert r.returncode == 1
        assert r.result["msg"] == 'failed to Statfs "/run/netns/cnitest-missing-xyz": no such file or directory'
        assert r.result["code"] == 999


@pytest.mark.parametrize("cmd", ["GC", "STATUS"])
def test_gc_status_unimplemented_succeed(cmd):
    r = run_plugin(OURS, cmd, conf("1.1.0"), containerid=None, ifname=None)
    assert r.returncode == 0 and r.stdout == ""
    r = run_plugin(OURS, cmd, conf("1.0.0"), containerid=None, ifname=None)
    assert r.result["code"] == 1 and r.result["msg"] == f"config version does not allow {cmd}"


def test_version_matches_reference_shape():
    r = run_plugin(OURS, "VERSION", {"cniVersion": "1.1.0"})
    assert r.result == {"cniVersion": "1.1.0", "supportedVersions": list(ALL_VERSIONS)}
    assert r.stdout.endswith("\n") and ": " not in r.stdout  # compact, newline-terminated
