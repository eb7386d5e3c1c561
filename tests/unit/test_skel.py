"""The skel against docs/spec-rules.md C1-C37 (plugin env and stdin handling, version gating,
callback errors). Most cases run `cni.skel.run` in-process with a recording plugin; the cases
about the process itself (stdin, about text, exit status) run a real executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cni import version
from cni.errors import CNIError
from cni.skel import Plugin, run

REPO = str(Path(__file__).resolve().parents[2])
CONF = {"cniVersion": "1.1.0", "name": "net1", "type": "fake"}
FULL_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "ctr1",
    "CNI_NETNS": "/var/run/netns/does-not-exist-here",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


class Recorder:
    """A plugin whose callbacks record their calls."""

    def __init__(self, versions=version.ALL, about="", gc=True, status=True):
        self.calls: list[str] = []
        self.plugin = Plugin(
            add=self._cb("ADD"),
            delete=self._cb("DEL"),
            check=self._cb("CHECK"),
            gc=self._cb("GC") if gc else None,
            status=self._cb("STATUS") if status else None,
            versions=tuple(versions),
            about=about,
        )

    def _cb(self, name):
        def cb(args):
            self.calls.append(name)
            return None

        return cb


def go(plugin, env, conf=CONF):
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    rc, out = run(plugin, env, stdin)
    return rc, (json.loads(out) if out.strip() else None)


def env_with(**kw):
    env = dict(FULL_ENV)
    for k, v in kw.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def test_01_add_with_everything_runs_callback():
    r = Recorder()
    rc, out = go(r.plugin, env_with(CNI_NETNS_OVERRIDE="1"))
    assert rc == 0 and r.calls == ["ADD"]


def test_02_missing_vars_named_in_reference_order():
    rc, out = go(Recorder().plugin, env_with(CNI_NETNS=None, CNI_IFNAME=None, CNI_PATH=None))
    assert rc == 1 and out["code"] == 4
    assert out["msg"] == "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"


@pytest.mark.parametrize("cmd", ["ADD", "CHECK"])
@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"])
def test_03_each_required_var_alone(cmd, var):
    rc, out = go(Recorder().plugin, env_with(CNI_COMMAND=cmd, **{var: None}))
    assert rc == 1 and out["code"] == 4
    assert out["msg"] == f"required env variables [{var}] missing"


def test_04_del_without_netns_succeeds():
    r = Recorder()
    rc, out = go(r.plugin, env_with(CNI_COMMAND="DEL", CNI_NETNS=None))
    assert rc == 0 and out is None and r.calls == ["DEL"]


def test_05_gc_needs_only_command_and_path():
    r = Recorder()
    env = {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}
    assert go(r.plugin, env)[0] == 0 and r.calls == ["GC"]
    rc, out = go(r.plugin, {"CNI_COMMAND": "GC"})
    assert (
        rc == 1 and out["code"] == 4 and out["msg"] == "required env variables [CNI_PATH] missing"
    )


def test_06_status_without_attachment_vars():
    r = Recorder()
    assert go(r.plugin, {"CNI_COMMAND": "STATUS", "CNI_PATH": "/x"})[0] == 0
    rc, out = go(r.plugin, {"CNI_COMMAND": "STATUS"})
    assert rc == 1 and out["code"] == 4


def test_08_empty_command_is_missing():
    rc, out = go(Recorder().plugin, env_with(CNI_COMMAND=""))
    assert rc == 1 and out["msg"] == "required env variables [CNI_COMMAND] missing"


def test_10_missing_command_without_about():
    rc, out = go(Recorder().plugin, {})
    assert rc == 1 and out["code"] == 4
    assert out["msg"] == "required env variables [CNI_COMMAND] missing"


@pytest.mark.parametrize("cmd", ["NOPE", "add"])
def test_11_unknown_command(cmd):
    rc, out = go(Recorder().plugin, env_with(CNI_COMMAND=cmd))
    assert rc == 1 and out["code"] == 4 and out["msg"] == f"unknown CNI_COMMAND: {cmd}"


def test_12_unknown_command_with_empty_stdin_is_decoding_error():
    rc, out = go(Recorder().plugin, env_with(CNI_COMMAND="NOPE"), b"")
    assert rc == 1 and out["code"] == 6


def test_13_bad_container_id():
    rc, out = go(Recorder().plugin, env_with(CNI_CONTAINERID="some-%%container-id"))
    assert out["code"] == 4 and out["msg"] == "invalid characters in containerID"
    assert out["details"] == "some-%%container-id"


@pytest.mark.parametrize("cid,ok", [("a", True), ("-abc", False), ("_abc", False), (".abc", False)])
def test_14_container_id_charset(cid, ok):
    rc, out = go(Recorder().plugin, env_with(CNI_CONTAINERID=cid, CNI_NETNS_OVERRIDE="1"))
    assert (rc == 0) == ok
    if not ok:
        assert out["code"] == 4


def test_15_ifname_length():
    rc, out = go(Recorder().plugin, env_with(CNI_IFNAME="a" * 16))
    assert out["code"] == 4 and out["msg"] == "interface name is too long"
    assert go(Recorder().plugin, env_with(CNI_IFNAME="a" * 15, CNI_NETNS_OVERRIDE="1"))[0] == 0


@pytest.mark.parametrize("name", [".", "..", "a/b", "a:b", "a b", "a\tb"])
def test_16_ifname_bad(name):
    rc, out = go(Recorder().plugin, env_with(CNI_IFNAME=name))
    assert rc == 1 and out["code"] == 4


@pytest.mark.parametrize("cmd", ["GC", "STATUS", "VERSION"])
def test_17_ifname_not_validated_for_gc_status_version(cmd):
    env = {"CNI_COMMAND": cmd, "CNI_PATH": "/x", "CNI_IFNAME": "../../bad name"}
    assert go(Recorder().plugin, env)[0] == 0


def test_18_not_json_and_empty_object():
    rc, out = go(Recorder().plugin, env_with(), b"{not json")
    assert out["code"] == 6 and out["msg"].startswith("error unmarshall network config:")
    rc, out = go(Recorder().plugin, env_with(), {})
    assert out["code"] == 7 and out["msg"] == "missing network name"


def test_19_bad_name_checked_before_version_even_for_gc():
    conf = {"cniVersion": "0.4.0", "name": "te%%st"}
    rc, out = go(Recorder().plugin, {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, conf)
    assert out["code"] == 7 and out["msg"] == "invalid characters found in network name"
    assert out["details"] == "te%%st"


def test_20_name_number():
    assert go(Recorder().plugin, env_with(), {"name": 5})[1]["code"] == 6


def test_21_cni_version_number():
    assert go(Recorder().plugin, env_with(), {"name": "n", "cniVersion": 1})[1]["code"] == 6


def test_23_no_version_means_010():
    r = Recorder()
    assert go(r.plugin, env_with(CNI_NETNS_OVERRIDE="1"), {"name": "n"})[0] == 0 and r.calls == [
        "ADD"
    ]


def test_24_no_version_plugin_without_010():
    rc, out = go(Recorder(versions=["0.3.1", "1.0.0"]).plugin, env_with(), {"name": "n"})
    assert out["code"] == 1 and out["msg"] == "incompatible CNI versions"
    assert out["details"] == 'config is "0.1.0", plugin supports ["0.3.1" "1.0.0"]'


@pytest.mark.parametrize("v", ["9.9.9", "adsf"])
def test_25_unsupported_version_add_is_code_1(v):
    rc, out = go(Recorder().plugin, env_with(), {"name": "n", "cniVersion": v})
    assert out["code"] == 1


def test_26_check_below_040():
    r = Recorder()
    rc, out = go(r.plugin, env_with(CNI_COMMAND="CHECK"), {"name": "n", "cniVersion": "0.3.1"})
    assert out == {"cniVersion": "0.3.1", "code": 1, "msg": "config version does not allow CHECK"}
    assert r.calls == []


def test_27_check_plugin_too_old():
    r = Recorder(versions=["0.1.0", "0.2.0", "0.3.0"])
    rc, out = go(r.plugin, env_with(CNI_COMMAND="CHECK"), {"name": "n", "cniVersion": "0.4.0"})
    assert out["code"] == 1 and out["msg"] == "plugin version does not allow CHECK"


def test_28_check_unparsable_version_is_code_6():
    rc, out = go(
        Recorder().plugin, env_with(CNI_COMMAND="CHECK"), {"name": "n", "cniVersion": "adsfsadf"}
    )
    assert out["code"] == 6


@pytest.mark.parametrize("cmd", ["GC", "STATUS"])
def test_29_gc_status_need_110(cmd):
    rc, out = go(
        Recorder().plugin,
        {"CNI_COMMAND": cmd, "CNI_PATH": "/x"},
        {"name": "n", "cniVersion": "1.0.0"},
    )
    assert out["code"] == 1 and out["msg"] == f"config version does not allow {cmd}"


def test_30_gc_plugin_only_0x():
    r = Recorder(versions=["0.3.1", "0.4.0"])
    rc, out = go(r.plugin, {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, CONF)
    assert out["code"] == 1 and out["msg"] == "plugin version does not allow GC"


def test_31_gc_unparsable_supported_entry_is_code_6():
    r = Recorder(versions=["0.3.1", "x.y", "1.1.0"])
    rc, out = go(r.plugin, {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, CONF)
    assert out["code"] == 6


def test_32_version_reply():
    rc, out = go(Recorder().plugin, {"CNI_COMMAND": "VERSION"}, b"")
    assert rc == 0 and out["cniVersion"] and out["supportedVersions"] == list(version.ALL)
    rc, out = go(Recorder().plugin, {"CNI_COMMAND": "VERSION"}, {"cniVersion": "0.4.0"})
    assert out["cniVersion"] == "0.4.0"


@pytest.mark.parametrize("cmd", ["GC", "STATUS"])
def test_33_missing_handlers_succeed_silently(cmd):
    r = Recorder(gc=False, status=False)
    rc, out = go(r.plugin, {"CNI_COMMAND": cmd, "CNI_PATH": "/x"}, CONF)
    assert rc == 0 and out is None


def test_34_typed_error_passes_through():
    def boom(args):
        raise CNIError(1234, "custom", "more")

    rc, out = go(Plugin(add=boom), env_with(CNI_NETNS_OVERRIDE="1"))
    assert rc == 1 and out == {
        "cniVersion": "1.1.0",
        "code": 1234,
        "msg": "custom",
        "details": "more",
    }


def test_35_untyped_error_is_999():
    def boom(args):
        raise RuntimeError("kaboom")

    rc, out = go(Plugin(add=boom), env_with(CNI_NETNS_OVERRIDE="1"))
    assert out["code"] == 999 and "kaboom" in out["msg"] and "\n" not in out["msg"]


def test_37_own_netns_refused_unless_overridden():
    r = Recorder()
    own = f"/proc/{os.getpid()}/ns/net"
    rc, out = go(r.plugin, env_with(CNI_NETNS=own))
    assert out["code"] == 8 and r.calls == []
    for value in ("1", "TRUE", "true"):
        assert go(r.plugin, env_with(CNI_NETNS=own, CNI_NETNS_OVERRIDE=value))[0] == 0


# ---- the process itself: a real executable built by `make build`

LOOPBACK = os.path.join(REPO, "dist", "bin", "loopback")


def _exe(env, stdin=b"", **kw):
    if not os.path.exists(LOOPBACK):
        pytest.skip("dist/bin/loopback not built (make build)")
    if isinstance(stdin, bytes):
        kw["input"] = stdin
    else:
        kw["stdin"] = stdin
    env = {"PYCNI_WORKER": "0", **env}  # in-process, as every test's call (harness.IN_PROCESS_ENV)
    return subprocess.run([LOOPBACK], env=env, capture_output=True, timeout=20, **kw)


def test_07_version_never_blocks_on_open_stdin():
    # stdin is a pipe nobody closes: VERSION must still answer promptly.
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            [LOOPBACK],
            env={"CNI_COMMAND": "VERSION", "PYCNI_WORKER": "0"},
            stdin=r,
            capture_output=True,
            timeout=20,
        )
    finally:
        os.close(r)
        os.close(w)
    assert proc.returncode == 0 and json.loads(proc.stdout)["supportedVersions"]
    proc = _exe({"CNI_COMMAND": "VERSION"}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0


def test_09_about_text_on_stderr():
    proc = _exe({})
    assert proc.returncode == 0 and proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert "loopback" in lines[0] and "0.1.0" in lines[0]
    assert lines[1] == "CNI protocol versions supported: " + ", ".join(version.ALL)


def test_22_stdin_read_error_is_code_5():
    r, w = os.pipe()  # stdin is the pipe's write end: read(2) fails with EBADF
    try:
        proc = _exe(dict(FULL_ENV), stdin=w)
    finally:
        os.close(r)
        os.close(w)
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["code"] == 5


def test_36_error_json_on_stdout_no_traceback():
    proc = _exe(dict(FULL_ENV), stdin=b"[1,2")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert list(out) == ["cniVersion", "code", "msg"] and out["code"] == 6
    assert b"Traceback" not in proc.stderr


def test_error_output_format_matches_skel():
    proc = _exe(dict(FULL_ENV), stdin=b"{}")
    assert proc.stdout.startswith(b"{\n    ") and not proc.stdout.endswith(b"\n")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


@pytest.mark.parametrize("escape", ["\\udcff", "\\ud800x", "\\uDFFF"])
def test_lone_surrogate_escape_is_a_decoding_error(escape: str) -> None:
    """A \\u escape naming half a surrogate pair decodes to text nothing can encode (the kernel,
    iptables, a result): code 6 naming it, before the plugin runs. A proper pair is fine."""
    from cni import skel

    stdin = ('{"cniVersion":"1.0.0","name":"n","type":"t","bridge":"' + escape + '"}').encode()
    with pytest.raises(CNIError) as err:
        skel._decode_config(stdin)
    assert err.value.code == 6
    assert err.value.msg.startswith(
        "error unmarshall network config: invalid Unicode: lone surrogate \\u"
    )
    ok = skel._decode_config(b'{"name":"n","x":"\\ud83d\\ude00"}')
    assert ok["x"] == "\U0001F600"


def test_plugin_of_takes_the_verbs_by_name() -> None:
    """plugin_of maps cmd_add/cmd_del/cmd_check/cmd_status/cmd_gc to the callbacks; a verb the
    module lacks is None (it then succeeds with no output), the rest of the namespace is ignored."""
    from cni.skel import plugin_of

    def cmd_add(args):
        return None

    def cmd_del(args):
        return None

    plugin = plugin_of({"cmd_add": cmd_add, "cmd_del": cmd_del, "other": print}, "about me")
    expected = Plugin(add=cmd_add, delete=cmd_del, about="about me")
    assert [getattr(plugin, k) for k in Plugin.__slots__] == [
        getattr(expected, k) for k in Plugin.__slots__
    ]
    rc, out = go(plugin, env_with(CNI_COMMAND="CHECK"))
    assert (rc, out) == (0, None)


def test_deferred_plugin_imports_the_steps_on_first_call() -> None:
    """Each thin main's verbs resolve to its steps module's functions of the verb's name, and
    building the Plugin imports no steps module (VERSION must not pay for them)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import ipam.host_local, plugins.flannel, plugins.portmap\n"
        "assert not [m for m in sys.modules if m.endswith('.steps')], sorted(sys.modules)\n"
        "from ipam import steps as a\n"
        "from plugins.flannel import steps as b\n"
        "from plugins.portmap import steps as c\n"
        "for verb in ('add', 'delete', 'check', 'status', 'gc'):\n"
        "    for mod in (a, b, c):\n"
        "        assert callable(getattr(mod, verb)), (mod, verb)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_deferred_passes_args_and_extras() -> None:
    """A deferred verb calls module.function(args, *extra) and returns its value."""
    from cni.skel import deferred

    verb = deferred("os.path", "join", "b")
    assert verb("a") == "a/b"  # type: ignore[arg-type]
