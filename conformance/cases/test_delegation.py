"""Delegation (docs/spec-rules.md C48-C54): bridge -> IPAM as the upper plugin / delegate pair,
observed with a recording IPAM stand-in on CNI_PATH; GC semantics of host-local.

(flannel -> delegate is covered in test_flannel.py: docs/flannel-behaviour.md F27, F41-F48.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance import deviations as dev
from conformance import observe
from conformance.bindir import CniDir
from conformance.checks import expect_error, require
from conformance.sandbox import Sandbox

RECORDER = r'''#!/usr/bin/python3 -I
import json, os, sys
base = os.path.dirname(os.path.abspath(__file__))
data = sys.stdin.buffer.read()
env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
with open(os.path.join(base, "calls.log"), "a") as f:
    f.write(json.dumps({"env": env, "stdin": data.decode()}) + "\n")
sys.stderr.write("recipam says hello on stderr\n")
if env.get("CNI_COMMAND") == "ADD":
    ver = json.loads(data).get("cniVersion", "")
    sys.stdout.write(json.dumps({"cniVersion": ver, "ips": [
        {"address": "10.250.49.2/24", "gateway": "10.250.49.1"}]}))
'''


@pytest.fixture
def _bridge(cni: CniDir) -> None:
    require(cni, "bridge")


class Rec:
    """bridge with the recording IPAM `recipam` first on CNI_PATH."""

    def __init__(self, cni: CniDir, sb: Sandbox) -> None:
        self.cni = cni
        self.node = sb.netns("node")
        self.pod = sb.netns("pod")
        self.bin = sb.dir("recbin")
        exe = self.bin / "recipam"
        exe.write_text(RECORDER)
        exe.chmod(0o755)
        self.path = f"{self.bin}:{cni.path}"

    def conf(self, version: str = "1.0.0") -> dict[str, Any]:
        return {"cniVersion": version, "name": "recnet", "type": "bridge", "bridge": "recbr0",
                "isGateway": True, "someUnknownKey": {"kept": [1, 2]},
                "ipam": {"type": "recipam", "custom": "value"}}

    def run(self, command: str, conf: dict[str, Any] | bytes, **kw: Any):
        kw.setdefault("netns", self.pod.path)
        kw.setdefault("containerid", "ctr49")
        return self.cni.run("bridge", command, conf, in_netns=self.node, cni_path=self.path,
                            args="IgnoreUnknown=1;K8S_POD_NAME=x", **kw)

    def calls(self) -> list[dict[str, Any]]:
        log = self.bin / "calls.log"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.usefixtures("_bridge")
def test_spec49_52_delegate_sees_stdin_and_env(cni: CniDir, sb: Sandbox) -> None:
    """C49, C51, C52: the IPAM delegate gets the upper plugin's stdin byte for byte and the same
    CNI_* variables with only CNI_COMMAND changed, on ADD, CHECK and DEL; its stderr shows up
    on the upper plugin's stderr."""
    r = Rec(cni, sb)
    stdin = json.dumps(r.conf(), indent=1).encode()
    add = r.run("ADD", stdin)
    assert add.returncode == 0, add
    assert "recipam says hello on stderr" in add.stderr, add.stderr
    check = dict(r.conf(), prevResult=add.result)
    chk = r.run("CHECK", check)
    assert chk.returncode == 0, chk
    dele = r.run("DEL", r.conf())
    assert dele.returncode == 0, dele
    calls = r.calls()
    assert [c["env"]["CNI_COMMAND"] for c in calls] == ["ADD", "CHECK", "DEL"]
    assert calls[0]["stdin"] == stdin.decode()
    assert json.loads(calls[1]["stdin"]) == check
    base = {"CNI_CONTAINERID": "ctr49", "CNI_NETNS": r.pod.path, "CNI_IFNAME": "eth0",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=x", "CNI_PATH": r.path}
    for c in calls:
        env = dict(c["env"])
        env.pop("CNI_COMMAND")
        assert env == base, c["env"]


@pytest.mark.usefixtures("_bridge")
def test_spec48_missing_delegate(cni: CniDir, sb: Sandbox) -> None:
    """C48: an IPAM type not on CNI_PATH -> `failed to find plugin "x" in path [...]`."""
    r = Rec(cni, sb)
    conf = r.conf()
    conf["ipam"]["type"] = "nosuchipam"
    run = r.run("ADD", conf)
    expect_error(run, 999, f'failed to find plugin "nosuchipam" in path [{r.bin} {cni.path}]')


@pytest.mark.usefixtures("_bridge")
def test_spec51_status_forwarded(cni: CniDir, sb: Sandbox) -> None:
    """C51 (upstream 3d27709f, R3): STATUS is forwarded to the IPAM delegate."""
    if dev.old_side(cni, "R3-gc-status-verbs"):
        pytest.skip("v1.1.1 has no STATUS (R3)")
    r = Rec(cni, sb)
    run = r.run("STATUS", r.conf("1.1.0"), netns=None, containerid=None, ifname=None)
    assert run.returncode == 0, run
    assert [c["env"]["CNI_COMMAND"] for c in r.calls()] == ["STATUS"]


def _hl_conf(sb: Sandbox, version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "gcnet", "type": "host-local",
            "ipam": {"type": "host-local", "subnet": "10.250.53.0/24",
                     "dataDir": str(sb.dir("ipam"))}, **extra}


@pytest.mark.parametrize(
    "valid, kept",
    [
        ({"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}, ["c1"]),
        ({"cni.dev/attachments": [{"containerID": "c2", "ifname": "eth0"}]}, ["c2"]),
        ({"cni.dev/valid-attachments": None}, []),
        ({}, []),
    ],
    ids=["valid-attachments", "legacy-key", "null", "missing"],
)
def test_spec53_54_host_local_gc(cni: CniDir, sb: Sandbox, valid: dict[str, Any],
                                 kept: list[str]) -> None:
    """C53, C54 (I6): host-local GC frees only the leases of attachments not listed; the legacy
    `cni.dev/attachments` key, a null list and a missing key (= nothing valid) are accepted;
    lock and last_reserved_ip stay. The Go host-local has no GC (upstream 3d27709f: silent no-op;
    v1.1.1: unknown command, R3)."""
    require(cni, "host-local")
    node = sb.netns("node")
    for cid in ("c1", "c2"):
        run = cni.run("host-local", "ADD", _hl_conf(sb, "1.0.0"), in_netns=node, containerid=cid,
                      netns="/var/run/netns/unused")
        assert run.returncode == 0, run
    gc = cni.run("host-local", "GC", _hl_conf(sb, **valid), in_netns=node, containerid=None,
                 netns=None, ifname=None)
    leases = {v["data"].split("\r\n")[0] for k, v in
              observe.files(sb.dir("ipam") / "gcnet").items()
              if k.startswith("10.") and "data" in v}
    if dev.old_side(cni, "R3-gc-status-verbs"):
        expect_error(gc, 3, "missing containerID")
        assert leases == {"c1", "c2"}
        return
    assert gc.returncode == 0 and gc.stdout == "", gc
    want = dev.pick(cni, "I6-host-local-gc", new=set(kept), old={"c1", "c2"})
    assert leases == want
    files = observe.files(sb.dir("ipam") / "gcnet")
    assert "lock" in files and "last_reserved_ip.0" in files
