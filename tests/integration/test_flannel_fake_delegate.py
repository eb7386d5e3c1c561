"""The flannel executable through the CNI protocol with a recording fake delegate
(docs/flannel-behaviour.md §4, F4-F9, F41-F52).

The fake `bridge` is a shell script on a private CNI_PATH: it records its stdin and environment
and answers with a canned reply and exit status per command. It is not one of our executables,
so flannel executes it as it would any foreign plugin.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from conformance.harness import REPO_ROOT, run_plugin

FLANNEL = REPO_ROOT / "dist" / "bin" / "flannel"
NETNS = "/run/netns/cnitest-flannel-not-a-real-netns"
V4_ENV = (
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\n"
    "FLANNEL_IPMASQ=true\n"
)
ADD_REPLY = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "0a:58:0a:01:11:01"},
        {"name": "eth0", "mac": "0a:58:0a:01:11:02", "sandbox": NETNS},
    ],
    "ips": [{"address": "10.1.17.2/24", "gateway": "10.1.17.1", "interface": 1}],
    "routes": [{"dst": "10.1.0.0/16", "gw": "10.1.17.1"}],
    "dns": {},
}
FAKE = """#!/bin/sh
rec="$FAKE_REC"
n=$(cat "$rec/count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$rec/count"
cat > "$rec/$n.stdin"
env > "$rec/$n.env"
[ -f "$rec/reply.$CNI_COMMAND" ] && cat "$rec/reply.$CNI_COMMAND"
[ -f "$rec/rc.$CNI_COMMAND" ] && exit "$(cat "$rec/rc.$CNI_COMMAND")"
exit 0
"""


@pytest.fixture(scope="module", autouse=True)
def _built():
    if not os.access(FLANNEL, os.X_OK):
        pytest.skip("dist/bin/flannel not built (run `make build`)")


class Fake:
    """A recording delegate called `name` in its own CNI_PATH directory."""

    def __init__(self, root: Path, name: str = "bridge") -> None:
        self.bin = root / "bin"
        self.rec = root / "rec"
        self.bin.mkdir(parents=True)
        self.rec.mkdir()
        exe = self.bin / name
        exe.write_text(FAKE)
        exe.chmod(0o755)
        self.reply("ADD", ADD_REPLY)

    def reply(self, command: str, obj=None, rc: int = 0) -> None:
        """Answer `command` with `obj` (JSON) on stdout and exit status `rc`."""
        (self.rec / f"reply.{command}").write_text("" if obj is None else json.dumps(obj))
        (self.rec / f"rc.{command}").write_text(str(rc))

    def calls(self) -> list[tuple[dict[str, str], bytes]]:
        """(environment, stdin) of every invocation, in order."""
        count = int((self.rec / "count").read_text()) if (self.rec / "count").exists() else 0
        out = []
        for i in range(count):
            env = dict(
                line.split("=", 1)
                for line in (self.rec / f"{i}.env").read_text().splitlines()
                if "=" in line
            )
            out.append((env, (self.rec / f"{i}.stdin").read_bytes()))
        return out

    def commands(self) -> list[str]:
        return [env["CNI_COMMAND"] for env, _ in self.calls()]


@pytest.fixture
def fake(tmp_path):
    return Fake(tmp_path / "fake")


@pytest.fixture
def paths(tmp_path):
    subnet = tmp_path / "run" / "subnet.env"
    subnet.parent.mkdir()
    subnet.write_text(V4_ENV)
    return {"subnet": subnet, "data": tmp_path / "data" / "flannel"}


def conf_for(paths, version="1.0.0", **extra):
    c = {
        "cniVersion": version,
        "name": "cni-flannel",
        "type": "flannel",
        "subnetFile": str(paths["subnet"]),
        "dataDir": str(paths["data"]),
        "subnetFileWait": 0,
    }
    c.update(extra)
    return c


def flannel(command, conf, fake=None, *, cid="ctr1", cni_path=None, **kw):
    extra = dict(kw.pop("extra_env", {}) or {})
    if fake is not None:
        extra.setdefault("FAKE_REC", str(fake.rec))
    if cni_path is None:
        cni_path = str(fake.bin) if fake is not None else "/nonexistent"
    kw.setdefault("netns", NETNS)
    return run_plugin(
        FLANNEL, command, conf, containerid=cid, cni_path=cni_path, extra_env=extra, **kw
    )


def expected_delegate(version="1.0.0") -> bytes:
    return (
        f'{{"cniVersion":"{version}","ipMasq":false,"ipam":{{"ranges":[[{{"subnet":"10.1.17.0/24"}}]],'
        '"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1472,'
        '"name":"cni-flannel","type":"bridge"}'
    ).encode()


# --------------------------------------------------------------------------- skel checks (5-9, 51)


def test_missing_and_bad_network_name(paths, fake):  # F6
    r = flannel("ADD", {k: v for k, v in conf_for(paths).items() if k != "name"}, fake)
    assert (r.returncode, r.result["code"], r.result["msg"]) == (1, 7, "missing network name")
    r = flannel("ADD", conf_for(paths, name="-bad"), fake)
    assert (r.result["code"], r.result["msg"]) == (7, "invalid characters found in network name")
    assert fake.calls() == []


@pytest.mark.parametrize("cid", ["a/b", ".x", "../../etc"])
def test_bad_container_id_writes_nothing(paths, fake, cid):  # F7
    r = flannel("ADD", conf_for(paths), fake, cid=cid)
    assert (r.returncode, r.result["code"], r.result["msg"]) == (
        1,
        4,
        "invalid characters in containerID",
    )
    assert not paths["data"].exists()
    assert fake.calls() == []


def test_ifname_too_long(paths, fake):  # F8
    r = flannel("ADD", conf_for(paths), fake, ifname="a" * 16)
    assert (r.result["code"], r.result["msg"]) == (4, "interface name is too long")


def test_env_requirements(paths, fake):  # F9
    r = flannel("ADD", conf_for(paths), fake, cni_path="")
    assert (r.result["code"], r.result["msg"]) == (4, "required env variables [CNI_PATH] missing")
    r = flannel("DEL", conf_for(paths), fake, netns=None)
    assert r.returncode == 0, r.stdout


def test_wrong_type_add_vs_del(paths, fake):  # F4, F5
    # Code 6 (a wrong JSON type) where the reference says 999: README "Where we differ".
    r = flannel("ADD", conf_for(paths, delegate="x"), fake)
    assert r.result["code"] == 6
    assert r.result["msg"].startswith(
        "failed to load flannel netconf file: failed to load netconf: "
    )
    r = flannel("DEL", conf_for(paths, delegate="x"), fake)
    assert r.result["code"] == 6
    assert r.result["msg"].startswith("failed to load netconf: ")
    assert fake.calls() == []


def test_version_about_unknown(paths, fake):  # F51
    r = flannel("VERSION", conf_for(paths), fake)
    assert r.returncode == 0
    assert r.result["supportedVersions"] == [
        "0.1.0",
        "0.2.0",
        "0.3.0",
        "0.3.1",
        "0.4.0",
        "1.0.0",
        "1.1.0",
    ]
    r = flannel(None, conf_for(paths), fake)
    assert r.returncode == 0 and "CNI Plugin flannel version" in r.stderr
    r = flannel("FOO", conf_for(paths), fake)
    assert (r.result["code"], r.result["msg"]) == (4, "unknown CNI_COMMAND: FOO")


# --------------------------------------------------------------------------- ADD (41-44)


def test_add_saves_then_delegates(paths, fake):  # F41
    r = flannel("ADD", conf_for(paths), fake, args="K8S_POD_NAME=p;IgnoreUnknown=1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {k: v for k, v in r.result.items() if k != "dns"} == {
        k: v for k, v in ADD_REPLY.items() if k != "dns"
    }
    saved = paths["data"] / "ctr1"
    assert stat.S_IMODE(paths["data"].stat().st_mode) == 0o700
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert saved.read_bytes() == expected_delegate()
    [(env, stdin)] = fake.calls()
    assert stdin == saved.read_bytes()
    assert env["CNI_COMMAND"] == "ADD"
    assert (env["CNI_CONTAINERID"], env["CNI_NETNS"], env["CNI_IFNAME"]) == ("ctr1", NETNS, "eth0")
    assert env["CNI_ARGS"] == "K8S_POD_NAME=p;IgnoreUnknown=1"
    assert env["CNI_PATH"] == str(fake.bin)


def test_add_result_converted_to_config_version(paths, fake):
    fake.reply(
        "ADD",
        {
            **ADD_REPLY,
            "cniVersion": "0.3.1",
            "ips": [{"version": "4", "address": "10.1.17.2/24", "interface": 1}],
        },
    )
    r = flannel("ADD", conf_for(paths, "0.3.1"), fake)
    assert r.returncode == 0, r.stdout
    assert r.result["cniVersion"] == "0.3.1"
    assert r.result["ips"][0]["address"] == "10.1.17.2/24"
    assert (paths["data"] / "ctr1").read_bytes() == expected_delegate("0.3.1")


def test_add_delegate_error_passes_through(paths, fake):  # F42
    fake.reply("ADD", {"cniVersion": "1.0.0", "code": 11, "msg": "x", "details": "d"}, rc=1)
    r = flannel("ADD", conf_for(paths), fake)
    assert r.returncode == 1
    assert (r.result["code"], r.result["msg"], r.result.get("details")) == (11, "x", "d")
    assert (paths["data"] / "ctr1").exists()
    assert fake.commands() == ["ADD", "DEL"]  # invoke undoes a failed delegate ADD


def test_add_delegate_missing(paths, fake, tmp_path):  # F43
    empty = tmp_path / "empty"
    empty.mkdir()
    r = flannel("ADD", conf_for(paths), fake, cni_path=f"{empty}:{tmp_path}/none")
    assert r.returncode == 1
    assert r.result["code"] == 999
    assert (
        r.result["msg"]
        == f'failed to delegate add: failed to find plugin "bridge" in path [{empty} '
           f'{tmp_path}/none]'
    )
    assert (paths["data"] / "ctr1").exists()


def test_add_without_subnet_env_writes_nothing(paths, fake):  # F44, F26 end to end
    paths["subnet"].unlink()
    r = flannel("ADD", conf_for(paths), fake)
    assert (r.returncode, r.result["code"]) == (1, 999)
    assert r.result["msg"] == (
        f"failed to load flannel 'subnet.env' file: open {paths['subnet']}: no such file or "
        f"directory. "
        "Check the flannel pod log for this node."
    )
    assert not paths["data"].exists()
    assert fake.calls() == []


def test_add_waits_then_code_11(paths, fake):
    paths["subnet"].unlink()
    start = time.monotonic()
    r = flannel("ADD", conf_for(paths, subnetFileWait=0.5), fake)
    assert time.monotonic() - start >= 0.5
    assert r.result["code"] == 11
    assert str(paths["subnet"]) in r.result["msg"]
    assert not paths["data"].exists()


def test_add_default_wait_is_bounded(paths, fake):
    paths["subnet"].unlink()
    conf = conf_for(paths)
    del conf["subnetFileWait"]
    start = time.monotonic()
    r = flannel("ADD", conf, fake)
    elapsed = time.monotonic() - start
    assert r.result["code"] == 11
    assert 3.0 <= elapsed < 10


def test_add_bad_delegate_map_after_subnet_env(paths, fake):  # flannel-behaviour §3.1 order
    r = flannel("ADD", conf_for(paths, delegate={"name": "x"}), fake)
    assert (
        r.result["msg"]
        == "'delegate' dictionary must not have 'name' field, it'll be set by flannel"
    )
    paths["subnet"].unlink()
    r = flannel("ADD", conf_for(paths, delegate={"name": "x"}), fake)
    assert "subnet.env" in r.result["msg"]
    assert not paths["data"].exists()


# --------------------------------------------------------------------------- DEL (45-49)


def test_del_after_add(paths, fake):  # F45
    assert flannel("ADD", conf_for(paths), fake).returncode == 0
    r = flannel("DEL", conf_for(paths), fake)
    assert r.returncode == 0, r.stdout
    env, stdin = fake.calls()[-1]
    assert env["CNI_COMMAND"] == "DEL" and stdin == expected_delegate()
    assert not (paths["data"] / "ctr1").exists()
    # Second DEL: no saved file, subnet.env readable -> regenerated config, delegate DEL again.
    r = flannel("DEL", conf_for(paths), fake)
    assert r.returncode == 0
    assert fake.commands() == ["ADD", "DEL", "DEL"]
    assert fake.calls()[-1][1] == expected_delegate()
    # Without subnet.env there is nothing to regenerate from: success without a delegate call.
    paths["subnet"].unlink()
    assert flannel("DEL", conf_for(paths), fake).returncode == 0
    assert fake.commands() == ["ADD", "DEL", "DEL"]


def test_del_nothing_known(paths, fake):  # F46
    paths["subnet"].unlink()
    r = flannel("DEL", conf_for(paths), fake)
    assert (r.returncode, r.stdout) == (0, "")
    assert fake.calls() == []


@pytest.mark.parametrize("garbage", [b"", b'{"cniVersion":"1.0.0","na', b"[]", b'{"name":"x"}'])
def test_del_torn_saved_file(paths, fake, garbage):  # F47
    paths["data"].mkdir(parents=True)
    (paths["data"] / "ctr1").write_bytes(garbage)
    r = flannel("DEL", conf_for(paths), fake)
    assert r.returncode == 0, r.stdout
    assert fake.commands() == ["DEL"]
    assert fake.calls()[0][1] == expected_delegate()  # regenerated: lease and veth still released
    assert not (paths["data"] / "ctr1").exists()


def test_del_torn_saved_file_without_subnet_env(paths, fake):  # F47, no fallback possible
    paths["data"].mkdir(parents=True)
    (paths["data"] / "ctr1").write_bytes(b"")
    paths["subnet"].unlink()
    r = flannel("DEL", conf_for(paths), fake)
    assert r.returncode == 0
    assert fake.calls() == []
    assert not (paths["data"] / "ctr1").exists()
    assert "not usable" in r.stderr


def test_del_delegate_failure_keeps_file_and_retry_succeeds(paths, fake):  # F48
    assert flannel("ADD", conf_for(paths), fake).returncode == 0
    fake.reply("DEL", {"cniVersion": "1.0.0", "code": 999, "msg": "boom"}, rc=1)
    r = flannel("DEL", conf_for(paths), fake)
    assert (r.returncode, r.result["code"], r.result["msg"]) == (1, 999, "boom")
    assert (paths["data"] / "ctr1").read_bytes() == expected_delegate()
    fake.reply("DEL", None, rc=0)
    r = flannel("DEL", conf_for(paths), fake)
    assert r.returncode == 0
    assert not (paths["data"] / "ctr1").exists()
    assert fake.commands() == ["ADD", "DEL", "DEL"]


def test_del_delegate_missing_keeps_file(paths, fake, tmp_path):  # pain point 9
    assert flannel("ADD", conf_for(paths), fake).returncode == 0
    r = flannel("DEL", conf_for(paths), fake, cni_path=str(tmp_path / "none"))
    assert r.returncode == 1
    assert r.result["msg"] == f'failed to find plugin "bridge" in path [{tmp_path}/none]'
    assert (paths["data"] / "ctr1").exists()


def test_del_uses_add_time_config(paths, fake):  # F49
    assert flannel("ADD", conf_for(paths), fake).returncode == 0
    changed = conf_for(paths, runtimeConfig={"portMappings": []}, delegate={"bridge": "other0"})
    paths["subnet"].write_text(V4_ENV.replace("10.1.17.1/24", "10.1.99.1/24"))
    assert flannel("DEL", changed, fake).returncode == 0
    assert fake.calls()[-1][1] == expected_delegate()


def test_del_reads_reference_written_file(paths, fake):  # Appendix A: upgrade in place
    go_written = expected_delegate().replace(
        b'"name":"cni-flannel"', b'"name":"cni-flannel","x":"\\u003c"'
    )
    paths["data"].mkdir(parents=True)
    (paths["data"] / "ctr1").write_bytes(go_written)
    assert flannel("DEL", conf_for(paths), fake).returncode == 0
    assert fake.calls()[-1][1] == go_written  # handed over byte for byte
    assert not (paths["data"] / "ctr1").exists()


def test_del_unreadable_saved_path(paths, fake):
    (paths["data"] / "ctr1").mkdir(parents=True)  # EISDIR
    r = flannel("DEL", conf_for(paths), fake)
    assert r.returncode == 0
    assert fake.commands() == ["DEL"]
    paths["subnet"].unlink()
    r = flannel("DEL", conf_for(paths), fake)
    assert r.returncode == 1 and str(paths["data"] / "ctr1") in r.result["msg"]


# --------------------------------------------------------------------------- CHECK (50)


def test_check_gated_below_040(paths, fake):  # F50
    r = flannel("CHECK", conf_for(paths, "0.3.1"), fake)
    assert (r.result["code"], r.result["msg"]) == (1, "config version does not allow CHECK")


def test_check_delegates_with_saved_config_and_prev_result(paths, fake):  # F50 (improved)
    assert flannel("ADD", conf_for(paths), fake).returncode == 0
    r = flannel("CHECK", conf_for(paths, prevResult=ADD_REPLY), fake)
    assert r.returncode == 0, r.stdout
    env, stdin = fake.calls()[-1]
    assert env["CNI_COMMAND"] == "CHECK"
    sent = json.loads(stdin)
    assert sent.pop("prevResult") == ADD_REPLY
    assert sent == json.loads(expected_delegate())


def test_check_errors(paths, fake):
    r = flannel("CHECK", conf_for(paths, prevResult=ADD_REPLY), fake)
    assert r.returncode == 1 and "no saved delegate configuration" in r.result["msg"]
    assert flannel("ADD", conf_for(paths), fake).returncode == 0
    fake.reply("CHECK", {"cniVersion": "1.0.0", "code": 999, "msg": "veth gone"}, rc=1)
    r = flannel("CHECK", conf_for(paths, prevResult=ADD_REPLY), fake)
    assert (r.returncode, r.result["msg"]) == (1, "veth gone")


def test_check_warns_when_lease_changed(paths, fake):
    assert flannel("ADD", conf_for(paths), fake).returncode == 0
    paths["subnet"].write_text(V4_ENV.replace("10.1.17.1/24", "10.1.99.1/24"))
    r = flannel("CHECK", conf_for(paths, prevResult=ADD_REPLY), fake)
    assert r.returncode == 0
    assert "subnet changed" in r.stderr


# --------------------------------------------------------------------------- STATUS and GC (52)


def test_status(paths, fake, tmp_path):  # F52
    conf = conf_for(paths, "1.1.0")
    r = flannel("STATUS", conf, fake)
    assert r.returncode == 0, r.stdout
    env, stdin = fake.calls()[-1]
    assert env["CNI_COMMAND"] == "STATUS" and stdin == expected_delegate("1.1.0")
    paths["subnet"].unlink()
    r = flannel("STATUS", conf, fake)
    assert (r.returncode, r.result["code"]) == (1, 50)
    assert r.result["msg"] == (
        f"failed to load flannel 'subnet.env' file: open {paths['subnet']}: no such file or "
        f"directory. "
        "Check the flannel pod log for this node."
    )
    paths["subnet"].write_text("FLANNEL_MTU=1450\n")
    r = flannel("STATUS", conf, fake)
    assert r.result["code"] == 50 and "is missing" in r.result["msg"]
    paths["subnet"].write_text(V4_ENV)
    r = flannel("STATUS", conf, fake, cni_path=str(tmp_path / "none"))
    assert r.result["code"] == 50 and "failed to find plugin" in r.result["msg"]
    fake.reply("STATUS", {"cniVersion": "1.1.0", "code": 50, "msg": "ipam down"}, rc=1)
    r = flannel("STATUS", conf, fake)
    assert (r.result["code"], r.result["msg"]) == (50, "ipam down")
    r = flannel("STATUS", conf_for(paths, "1.0.0"), fake)
    assert (r.result["code"], r.result["msg"]) == (1, "config version does not allow STATUS")


def _add_containers(paths, fake, *cids):
    for cid in cids:
        assert flannel("ADD", conf_for(paths, "1.1.0"), fake, cid=cid).returncode == 0


def test_gc_removes_stale_and_forwards(paths, fake):  # F52
    _add_containers(paths, fake, "keep1", "stale1", "stale2")
    other = json.loads(expected_delegate("1.1.0"))
    other["name"] = "other-net"
    (paths["data"] / "othernet1").write_text(json.dumps(other))  # another network's attachment
    (paths["data"] / "torn1").write_bytes(b"")
    old_tmp = paths["data"] / ".stale1.tmp-1-deadbeef"
    old_tmp.write_text("x")
    os.utime(old_tmp, (time.time() - 3600, time.time() - 3600))
    valid = [{"containerID": "keep1", "ifname": "eth0"}]
    before = len(fake.calls())
    r = flannel(
        "GC",
        conf_for(paths, "1.1.0", **{"cni.dev/valid-attachments": valid}),
        fake,
        cid=None,
        ifname=None,
        netns=None,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    calls = fake.calls()[before:]
    assert [(e["CNI_COMMAND"], e.get("CNI_CONTAINERID")) for e, _ in calls[:2]] == [
        ("DEL", "stale1"),
        ("DEL", "stale2"),
    ]
    assert all(e["CNI_IFNAME"] == "eth0" and e["CNI_NETNS"] == "" for e, _ in calls[:2])
    assert calls[0][1] == expected_delegate("1.1.0")
    gc_env, gc_stdin = calls[2]
    assert gc_env["CNI_COMMAND"] == "GC" and len(calls) == 3
    assert json.loads(gc_stdin)["cni.dev/valid-attachments"] == valid
    assert sorted(os.listdir(paths["data"])) == ["keep1", "othernet1", "torn1"]


def test_gc_failure_keeps_file_and_continues(paths, fake):
    _add_containers(paths, fake, "stale1", "stale2")
    fake.reply("DEL", {"cniVersion": "1.1.0", "code": 999, "msg": "busy"}, rc=1)
    r = flannel(
        "GC",
        conf_for(paths, "1.1.0", **{"cni.dev/valid-attachments": []}),
        fake,
        cid=None,
        ifname=None,
    )
    assert (r.returncode, r.result["msg"]) == (1, "busy")
    assert sorted(os.listdir(paths["data"])) == ["stale1", "stale2"]
    assert fake.commands()[-3:] == ["DEL", "DEL", "GC"]


def test_gc_without_subnet_env_uses_saved_template(paths, fake):
    _add_containers(paths, fake, "keep1")
    paths["subnet"].unlink()
    valid = [{"containerID": "keep1", "ifname": "eth0"}]
    r = flannel(
        "GC",
        conf_for(paths, "1.1.0", **{"cni.dev/valid-attachments": valid}),
        fake,
        cid=None,
        ifname=None,
    )
    assert r.returncode == 0
    env, stdin = fake.calls()[-1]
    assert env["CNI_COMMAND"] == "GC"
    assert json.loads(stdin)["ipam"]["ranges"] == [[{"subnet": "10.1.17.0/24"}]]


def test_gc_gated(paths, fake):
    r = flannel("GC", conf_for(paths, "1.0.0"), fake, cid=None, ifname=None)
    assert (r.result["code"], r.result["msg"]) == (1, "config version does not allow GC")


def test_gc_legacy_attachments_key_is_forwarded(paths, fake):
    _add_containers(paths, fake, "keep1")
    valid = [{"containerID": "keep1", "ifname": "eth0"}]
    r = flannel(
        "GC",
        conf_for(paths, "1.1.0", **{"cni.dev/attachments": valid}),
        fake,
        cid=None,
        ifname=None,
    )
    assert r.returncode == 0, r.stdout
    env, stdin = fake.calls()[-1]
    assert env["CNI_COMMAND"] == "GC"
    assert json.loads(stdin)["cni.dev/valid-attachments"] == valid
    assert os.listdir(paths["data"]) == ["keep1"]


def test_empty_delegate_type_never_blocks_del(paths, fake):
    r = flannel("ADD", conf_for(paths, delegate={"type": ""}), fake)
    assert (r.returncode, r.result["msg"]) == (1, "failed to delegate add: no plugin name provided")
    assert (paths["data"] / "ctr1").exists()
    r = flannel("DEL", conf_for(paths, delegate={"type": ""}), fake)
    assert r.returncode == 0, r.stdout
    assert not (paths["data"] / "ctr1").exists()
    assert fake.calls() == []


def test_nul_in_paths_is_a_clean_error(paths, fake):
    for key in ("subnetFile", "dataDir"):
        r = flannel("ADD", conf_for(paths, **{key: "/tmp/a\u0000b"}), fake)
        assert r.returncode == 1 and r.result["code"] == 7
        assert key in r.result["msg"] and "Traceback" not in r.stderr
