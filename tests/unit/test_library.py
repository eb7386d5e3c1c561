"""cni/ pure modules: versions (docs/spec-rules.md C70), CNI_ARGS (§7.2), validators (§1.3),
config models, and delegation (C48-C52) over both paths: exec and in-process."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cni import args as cniargs
from cni import config, invoke, validate, version
from cni.errors import CNIError
from plugins import multicall


@pytest.mark.parametrize(
    "v,parsed", [("", (0, 1, 0)), ("1", (1, 0, 0)), ("1.2", (1, 2, 0)), ("1.2.3", (1, 2, 3))]
)
def test_70_parse_accepts(v, parsed):
    assert version.parse(v) == parsed


@pytest.mark.parametrize("v", ["0.", "..", "1.2.3.4", "asdf", "1.0.f", "1.1.0-rc1", "-1.0.0", " 1"])
def test_70_parse_rejects(v):
    with pytest.raises(CNIError) as e:
        version.parse(v)
    assert e.value.code == 6


def test_version_compare_and_lists():
    assert version.greater_than_or_equal("1.1.0", "0.4.0")
    assert not version.greater_than_or_equal("0.3.1", "0.4.0")
    assert version.greater_than_or_equal("1.10.0", "1.9.0")  # numeric, not lexical
    assert version.starting_from("0.3.1") == ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]


# ---- CNI_ARGS

def test_args_pairs_and_unknown():
    assert cniargs.load_args("IP=10.0.0.5;IgnoreUnknown=1;K8S_POD_NAME=x", {"IP"}) == {
        "IP": "10.0.0.5"
    }
    assert cniargs.load_args("IgnoreUnknown=true;Z=1;IP=1;IP=2", {"IP"}) == {"IP": "2"}  # last wins
    with pytest.raises(CNIError) as e:
        cniargs.load_args("K8S_POD_NAME=x;FOO=bar", {"IP"})
    assert e.value.msg == 'ARGS: unknown args ["K8S_POD_NAME=x" "FOO=bar"]'
    # IgnoreUnknown is honoured wherever it stands
    assert cniargs.load_args("FOO=bar;IgnoreUnknown=1", set()) == {}
    assert cniargs.load_args("", {"IP"}) == {}


@pytest.mark.parametrize("bad", ["IP", "IP=1;", "A=b=c", ";"])
def test_args_invalid_pairs(bad):
    with pytest.raises(CNIError) as e:
        cniargs.load_args(bad, {"IP", "A"})
    assert e.value.code == 4 and e.value.msg.startswith("ARGS: invalid pair")


def test_args_bad_bool():
    with pytest.raises(CNIError) as e:
        cniargs.load_args("IgnoreUnknown=maybe", set())
    assert "boolean unmarshal error: invalid input maybe" in e.value.msg


# ---- validators

def test_network_name_rules():
    validate.network_name("cbr0")
    for bad, msg in [
        ("", "missing network name:"),
        ("te%%st", "invalid characters found in network name"),
    ]:
        with pytest.raises(CNIError) as e:
            validate.network_name(bad)
        assert e.value.code == 7 and e.value.msg == msg


def test_container_id_empty_is_code_3():
    with pytest.raises(CNIError) as e:
        validate.container_id("")
    assert e.value.code == 3 and e.value.msg == "missing containerID"


def test_ifname_bytes_not_chars():
    validate.interface_name("é" * 7)  # 14 bytes
    with pytest.raises(CNIError):
        validate.interface_name("é" * 8)  # 8 characters, 16 bytes


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../x", "a\x00b", "x" * 256])
def test_safe_file_component(bad):
    with pytest.raises(CNIError):
        validate.safe_file_component(bad, "container ID")


# ---- config models

def test_config_keeps_unknown_keys_and_matches_case_insensitively():
    m = config.load(
        config.NetConf,
        {"name": "n", "Type": "bridge", "IPAM": {"TYPE": "host-local", "x": 1}, "custom": [1]},
    )
    assert m.type == "bridge" and m.ipam.type == "host-local"
    assert m.dump()["custom"] == [1] and m.dump()["ipam"]["x"] == 1


@pytest.mark.parametrize(
    "conf,code", [({"name": "n", "ipMasq": "true"}, 6), ({"name": "n", "ipam": []}, 6), ([], 6)]
)
def test_config_wrong_types(conf, code):
    with pytest.raises(CNIError) as e:
        config.load(config.NetConf, conf)
    assert e.value.code == code and "\n" not in e.value.msg


def test_valid_attachments_forms():
    both = {"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}
    assert config.valid_attachments(both) == {("a", "eth0")}
    assert config.valid_attachments(
        {"cni.dev/attachments": [{"containerID": "b", "ifname": "e"}]}
    ) == {("b", "e")}
    assert config.valid_attachments({"cni.dev/valid-attachments": None}) == set()
    assert config.valid_attachments({}) == set()
    with pytest.raises(CNIError):
        config.valid_attachments({"cni.dev/valid-attachments": [{"containerID": 1}]})


# ---- delegation (C48-C52), exec path with fake plugins

FAKE = """#!/bin/sh
env | grep '^CNI_' | sort > "{log}.$CNI_COMMAND.env"
cat > "{log}.$CNI_COMMAND.stdin"
echo "delegate says hi" >&2
if [ "$CNI_COMMAND" = ADD ] && [ -e "{log}.fail" ]; then
  printf '{{"code": 11, "msg": "busy", "details": "try later"}}'; exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{{"ips": [{{"address": "10.1.2.3/24", "gateway": "10.1.2.1"}}]}}'
fi
"""


@pytest.fixture
def fakedir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    log = tmp_path / "log"
    p = d / "fake-ipam"
    p.write_text(FAKE.format(log=log))
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return d, log


def _env(d):
    return {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": f"/nonexistent:{d}",
        "CNI_ARGS": "A=b",
        "PATH": "/usr/bin:/bin",
        "PYCNI_WORKER": "0",
    }


def test_48_find_in_path(fakedir):
    d, _ = fakedir
    assert invoke.find_in_path("fake-ipam", ["/nope", str(d)]) == str(d / "fake-ipam")
    with pytest.raises(CNIError) as e:
        invoke.find_in_path("missing", [str(d)])
    assert e.value.msg == f'failed to find plugin "missing" in path [{d}]'
    for name, msg in [("", "no plugin name provided"), ("a/b", "invalid plugin name: a/b")]:
        with pytest.raises(CNIError) as e:
            invoke.find_in_path(name, [str(d)])
        assert e.value.msg == msg
    with pytest.raises(CNIError) as e:
        invoke.find_in_path("x", [])
    assert e.value.msg == "no paths provided"


def test_49_delegate_gets_stdin_and_env(fakedir, capfd):
    d, log = fakedir
    env = _env(d)
    stdin = json.dumps(
        {"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "fake-ipam"}, "k": 1}
    ).encode()
    result = invoke.delegate_add("fake-ipam", stdin, env)
    assert result.cni_version == "1.0.0"  # missing cniVersion takes the config's
    assert result.to_dict()["ips"][0]["address"] == "10.1.2.3/24"
    assert (log.parent / "log.ADD.stdin").read_bytes() == stdin
    seen = (log.parent / "log.ADD.env").read_text().splitlines()
    assert "CNI_COMMAND=ADD" in seen and "CNI_ARGS=A=b" in seen and "CNI_CONTAINERID=c1" in seen
    invoke.delegate_del("fake-ipam", stdin, env)
    assert "CNI_COMMAND=DEL" in (log.parent / "log.DEL.env").read_text()
    assert env["CNI_COMMAND"] == "ADD"  # caller's env untouched
    assert "delegate says hi" in capfd.readouterr().err  # C52


def test_50_failed_add_runs_del_and_keeps_code(fakedir):
    d, log = fakedir
    (log.parent / "log.fail").write_text("")
    stdin = b'{"cniVersion":"1.0.0","name":"n"}'
    with pytest.raises(CNIError) as e:
        invoke.delegate_add("fake-ipam", stdin, _env(d))
    assert (e.value.code, e.value.msg, e.value.details) == (11, "busy", "try later")
    assert (log.parent / "log.DEL.stdin").read_bytes() == stdin


@pytest.mark.parametrize("verb", ["check", "status", "gc", "del"])
def test_51_other_verbs_forward(fakedir, verb):
    d, log = fakedir
    getattr(invoke, f"delegate_{verb}")("fake-ipam", b'{"name":"n"}', _env(d))
    assert (log.parent / f"log.{verb.upper()}.env").exists()


def test_plugin_error_forms():
    assert invoke.plugin_error(1, b"garbage", b"").msg.startswith(
        "netplugin failed but error parsing its diagnostic message"
    )
    assert invoke.plugin_error(1, b"", b"oops").msg == 'netplugin failed: "oops": exit status 1'
    assert (
        invoke.plugin_error(1, b"", b"").msg
        == "netplugin failed with no error message: exit status 1"
    )


# ---- in-process path: our own executable (same inode) is not exec'd, and answers the same

REPO = str(Path(__file__).resolve().parents[2])
BIN = os.path.join(REPO, "dist", "bin")


@pytest.fixture
def own_loopback():
    path = os.path.join(BIN, "loopback")
    if not os.path.exists(path):
        pytest.skip("dist/bin not built (make build)")
    yield path
    multicall._self_id = None


def test_inprocess_identity_is_exact(own_loopback, tmp_path):
    multicall.set_self(os.path.join(BIN, "bridge"))  # any hard link of the launcher
    assert multicall.is_self(own_loopback)
    copy = tmp_path / "loopback"
    copy.write_bytes(open(own_loopback, "rb").read())
    assert not multicall.is_self(str(copy))


def test_inprocess_and_exec_are_indistinguishable(own_loopback, monkeypatch):
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0",
           "CNI_PATH": BIN, "PATH": "/usr/bin:/bin", "PYCNI_WORKER": "0"}
    stdin = b'{"cniVersion":"9.9.9","name":"n"}'
    with pytest.raises(CNIError) as by_exec:
        invoke.exec_plugin(own_loopback, env, stdin)
    multicall.set_self(own_loopback)
    spawned = []
    monkeypatch.setattr(invoke, "_exec", lambda *a: spawned.append(a))
    with pytest.raises(CNIError) as in_proc:
        invoke.exec_plugin(own_loopback, env, stdin)
    assert spawned == []
    assert (by_exec.value.code, by_exec.value.msg, by_exec.value.details) == (
        in_proc.value.code, in_proc.value.msg, in_proc.value.details)
    assert in_proc.value.code == 1


def test_ensure_dir_is_iterative_and_bounded(tmp_path):
    """A data dir of thousands of components is created without recursion; past PATH_MAX it is
    a clean OSError; a file in the way gives ENOTDIR, as mkdir -p does."""
    import errno
    import subprocess

    from cni import fileutil

    deep = str(tmp_path / "a") + "/d" * 1800  # ~3.6 KiB, deeper than Python's recursion limit
    try:
        fileutil.ensure_dir(deep)
        assert os.path.isdir(deep)
        with pytest.raises(OSError) as e:
            fileutil.ensure_dir(str(tmp_path) + "/d" * 2100)
        assert e.value.errno == errno.ENAMETOOLONG
        (tmp_path / "f").write_text("")
        with pytest.raises(OSError) as e:
            fileutil.ensure_dir(str(tmp_path / "f" / "sub"))
        assert e.value.errno == errno.ENOTDIR
    finally:
        subprocess.run(["rm", "-rf", str(tmp_path / "a")], check=False)  # rmtree would recurse


def test_cni_imports_nothing_from_plugins_or_ipam() -> None:
    """Layering: cni/ is the spec library; the entry point (plugins/multicall.py) and the worker
    know the executables, and cni.invoke runs a delegate in-process only through the local runner
    they register. Checked on every import statement of cni/, lazy ones included."""
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted((Path(__file__).resolve().parents[2] / "cni").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("plugins", "ipam")]
    assert offenders == []
