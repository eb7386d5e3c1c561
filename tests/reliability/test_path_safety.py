"""Path safety (docs/reliability.md): crafted names and paths are rejected before any file or kernel
change.

Container IDs, network names, interface names, dataDir, subnetFile and cache paths crafted to
escape (`../`, absolute paths, NUL, overlong) go through the real executables inside a node
namespace. Each must end with exit 1 and a well-formed CNI error (cnitool: a one-line message)
and nothing may change meanwhile: `ip monitor` (node and pod) and `nft monitor` (node) see no
event during the call, no file under the test's tree appears, changes or disappears, and the
path the value tries to reach does not exist afterwards (tests/reliability/watch.py).

What "escape" means per value:
* container ID, network name, interface name: any `/`, a `.`/`..` name, NUL, or (where the
  value names a file: flannel's saved configuration, host-local's network directory, the
  result cache) more than 255 bytes.
* dataDir, subnetFile, cache directory: a `..` component (relative or absolute), NUL, a
  component over 255 bytes or a path over 4095 bytes. An absolute path is their normal form.
NUL cannot be passed in an environment variable or an argv element (exec forbids it), so it is
tested where it can arrive: inside stdin JSON strings.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conformance import harness
from conformance.harness import Netns
from tests.reliability import budget
from tests.reliability.contract import check_cnitool, check_error_json
from tests.reliability.known_bugs import path_bug
from tests.reliability.lifecycle import BIN, SUBNET_ENV
from tests.reliability.watch import watch

pytestmark = [pytest.mark.netns]

# CI runs a subset of the crafted names (one of each shape); PYCNI_FULL=1 runs them all.
NAME_ESCAPES = (
    ["../pwned", "../../../../pwned", "/tmp/pycni-pwned", "a/../../pwned", "a/b", "..", "."]
    if budget.full()
    else ["../pwned", "/tmp/pycni-pwned", ".."]
)
IFNAME_ESCAPES = (
    ["../x", "/x", "a/b", "..", ".", "x" * 16] if budget.full() else ["../x", "..", "x" * 16]
)
DEPTH = 14  # the plugins run in <tmp>/cwd/d1/.../d14, so a relative `../` * 14 lands in <tmp>
LONG = "x" * 300
PATH_ESCAPE_FORMS = ["dotdot", "relative-dotdot", "long-component", "long-path", "nul"]


def _forms(bugs: dict[str, str], forms: list[str] = PATH_ESCAPE_FORMS) -> list:
    """`forms` as parameters, those listed in `bugs` marked xfail with that known bug."""
    return [pytest.param(f, marks=path_bug(bugs[f])) if f in bugs else f for f in forms]


HL_BUGS: dict[str, str] = {}  # host-local-datadir-escape: fixed (cni.validate.safe_path)


def _escaped_path(state: Path, form: str) -> str:
    """A dataDir-like value under `state` crafted in `form`; escaping ones aim at
    state/../escaped."""
    return {
        "dotdot": f"{state}/networks/../../escaped",
        "relative-dotdot": "../" * DEPTH + "escaped",
        "long-component": f"{state}/{'d' * 300}",
        "long-path": f"{state}/" + "/".join(["d" * 200] * 25),
        "nul": f"{state}/nets\x00/../../escaped",
    }[form]


@pytest.fixture
def world(node_ns: Netns, make_pod, tmp_path: Path):
    """(node, pod, state dir, escape targets, cwd) with subnet.env for flannel in place; the
    plugins run in `cwd`, deep enough that relative escapes stay inside the test's tmp dir."""
    pod = make_pod()
    state = tmp_path / "state"
    state.mkdir()
    (state / "subnet.env").write_text(SUBNET_ENV)
    cwd = tmp_path.joinpath("cwd", *[f"d{i}" for i in range(1, DEPTH)])
    cwd.mkdir(parents=True)
    escapes = [tmp_path / "escaped", tmp_path / "pwned", Path("/tmp/pycni-pwned")]
    for e in escapes:
        assert not e.exists(), f"{e} exists before the test: remove it"
    return node_ns, pod, state, escapes, cwd


def _conf(plugin: str, state: Path, **over) -> dict:
    hl = {"type": "host-local", "subnet": "10.82.0.0/24", "dataDir": str(state / "networks")}
    if plugin in ("bridge", "host-local"):
        conf = {"cniVersion": "1.0.0", "name": "psnet", "type": "bridge", "bridge": "psbr0",
                "isGateway": True, "ipMasq": True, "ipam": hl}
    elif plugin == "flannel":
        conf = {"cniVersion": "1.0.0", "name": "psnet", "type": "flannel",
                "subnetFile": str(state / "subnet.env"), "dataDir": str(state / "flannel"),
                "subnetFileWait": 0, "delegate": {"bridge": "psbr0"},
                "ipam": {"dataDir": str(state / "networks")}}
    elif plugin == "portmap":
        conf = {
            "cniVersion": "1.0.0",
            "name": "psnet",
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {
                "portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
            },
            "prevResult": {
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": "POD"}],
                "ips": [{"address": "10.82.0.5/24", "interface": 0}],
            },
        }
    else:
        conf = {"cniVersion": "1.0.0", "name": "psnet", "type": "loopback"}
    conf.update(over)
    return conf


def _exec(
    node: Netns, argv: list[str], env: dict[str, str], stdin: bytes, cwd: Path
) -> harness.PluginRun:
    """Run argv inside `node` from `cwd` (harness.run_plugin has no cwd)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", node.name, *argv],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode(errors="replace")
    try:
        parsed = json.loads(out)
    except ValueError:
        parsed = None
    return harness.PluginRun(proc.returncode, parsed, out, proc.stderr.decode(errors="replace"))


def _run(
    world,
    plugin: str,
    conf: dict,
    *,
    cid: str = "ps-0",
    ifname: str = "eth0",
    then_del: bool = False,
):
    """ADD through `plugin` under watch; with `then_del`, the runtime's DEL follows a failure."""
    node, pod, state, escapes, cwd = world
    if plugin == "portmap":
        conf["prevResult"]["interfaces"][0]["sandbox"] = pod.path
    env = harness.plugin_env(
        "ADD",
        containerid=cid,
        netns=pod.path,
        ifname=ifname,
        cni_path=str(BIN),
        extra_env={"CNI_PY_DEBUG": "1"},
    )
    stdin = json.dumps(conf).encode()

    def delete(add: harness.PluginRun):
        if add.returncode == 0:
            return None
        return _exec(node, [str(BIN / plugin)], {**env, "CNI_COMMAND": "DEL"}, stdin, cwd)

    return watch(
        node,
        [pod],
        {"state": state.parent},
        escapes,
        lambda: _exec(node, [str(BIN / plugin)], env, stdin, cwd),
        delete if then_del else None,
    )


def _assert_rejected(w, *, codes: tuple[int, ...] = (4, 6, 7), owner: bool = True) -> None:
    """Exit 1 with a well-formed error of one of `codes`, and nothing changed.

    `owner`: the executable called is the one that uses the value, so not even a transient
    change is allowed. Otherwise (bridge or flannel passing an IPAM setting on to host-local,
    which only sees it after they created links) nothing may be left changed once the
    runtime's DEL that follows a failed ADD has run (`_run(..., then_del=True)`).
    """
    r = w.result
    assert r.returncode == 1, f"accepted (exit {r.returncode}): {r.stdout[:300]} {r.stderr[-300:]}"
    assert "Traceback" not in r.stderr, r.stderr
    assert not check_error_json(r.stdout), check_error_json(r.stdout)
    if owner:
        assert not w.changed, f"rejected only after changing things: {w.describe()}"
    else:
        d = w.followup
        # A meta-plugin's own state directory (flannel's dataDir), created before the delegate
        # refused, may stay, empty: it is infrastructure, like host-local's network directory.
        w.files = [f for f in w.files if f != "state:state/flannel"]
        assert not w.left_changed, (
            f"rejected, but left things changed even after the runtime's DEL "
            f"({'exit ' + str(d.returncode) + ' ' + d.stdout.strip()[:200] if d else 'no DEL'}): "
            f"{w.describe()}"
        )
    assert r.result["code"] in codes, f"code {r.result['code']}: {r.result['msg']}"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("plugin", ["bridge", "host-local", "flannel", "portmap", "loopback"])
@pytest.mark.parametrize("cid", NAME_ESCAPES)
def test_container_id(world, plugin: str, cid: str) -> None:
    """CNI_CONTAINERID with a path in it: code 4 before anything happens."""
    w = _run(world, plugin, _conf(plugin, world[2]), cid=cid)
    _assert_rejected(w, codes=(4,))


def test_container_id_overlong_for_a_file_name(world) -> None:
    """flannel names its saved configuration after the container ID: over 255 bytes is refused
    before anything is created."""
    w = _run(world, "flannel", _conf("flannel", world[2]), cid=LONG)
    _assert_rejected(w, codes=(4, 7, 999))


@pytest.mark.parametrize("plugin", ["bridge", "host-local", "flannel", "portmap", "loopback"])
@pytest.mark.parametrize("name", [*NAME_ESCAPES, "psnet\x00../x"])
def test_network_name(world, plugin: str, name: str) -> None:
    """`name` with a path or NUL in it: code 7 before anything happens."""
    w = _run(world, plugin, _conf(plugin, world[2], name=name))
    _assert_rejected(w, codes=(7,))


@pytest.mark.parametrize("plugin", ["bridge", "host-local", "flannel"])
def test_network_name_overlong_for_a_directory(world, plugin: str) -> None:
    """host-local makes `<dataDir>/<name>`: a name over 255 bytes is refused before anything is
    created (for bridge and flannel too, which call host-local after creating links)."""
    w = _run(world, plugin, _conf(plugin, world[2], name=LONG), then_del=plugin != "host-local")
    _assert_rejected(w, codes=(4, 5, 7, 999), owner=plugin == "host-local")


@pytest.mark.parametrize("plugin", ["bridge", "host-local", "flannel", "portmap", "loopback"])
@pytest.mark.parametrize("ifname", IFNAME_ESCAPES)
def test_interface_name(world, plugin: str, ifname: str) -> None:
    """CNI_IFNAME that is no interface name: code 4 before anything happens."""
    w = _run(world, plugin, _conf(plugin, world[2]), ifname=ifname)
    _assert_rejected(w, codes=(4,))


# --------------------------------------------------------------------------- state paths


@pytest.mark.parametrize("form", _forms(HL_BUGS))
@pytest.mark.parametrize("plugin", ["host-local", "bridge"])
def test_host_local_data_dir(world, plugin: str, form: str) -> None:
    """ipam.dataDir crafted to escape: refused before any file or kernel change."""
    conf = _conf(plugin, world[2])
    conf["ipam"]["dataDir"] = _escaped_path(world[2], form)
    _assert_rejected(_run(world, plugin, conf, then_del=plugin != "host-local"), codes=(5, 7),
                     owner=plugin == "host-local")


@pytest.mark.parametrize("form", _forms({}))
def test_flannel_data_dir(world, form: str) -> None:
    """flannel's dataDir crafted to escape: refused before any file or kernel change."""
    conf = _conf("flannel", world[2], dataDir=_escaped_path(world[2], form))
    _assert_rejected(_run(world, "flannel", conf), codes=(5, 7, 999))


@pytest.mark.parametrize("form", _forms(HL_BUGS))
def test_flannel_ipam_data_dir(world, form: str) -> None:
    """flannel's ipam.dataDir (passed to host-local) crafted to escape: refused before any
    change."""
    conf = _conf("flannel", world[2])
    conf["ipam"]["dataDir"] = _escaped_path(world[2], form)
    _assert_rejected(_run(world, "flannel", conf, then_del=True), codes=(5, 7, 999), owner=False)


@pytest.mark.parametrize("form", _forms({}, ["dotdot", "long-component", "long-path", "nul"]))
def test_flannel_subnet_file(world, form: str) -> None:
    """subnetFile crafted to escape (a `..` path that does reach a valid subnet.env): refused."""
    state = world[2]
    outside = state.parent / "outside"
    outside.mkdir()
    (outside / "subnet.env").write_text(SUBNET_ENV)
    value = {
        "dotdot": f"{state}/../outside/subnet.env",
        "long-component": f"{state}/{'s' * 300}",
        "long-path": f"{state}/" + "/".join(["s" * 200] * 25),
        "nul": f"{state}/subnet.env\x00../outside/subnet.env",
    }[form]
    _assert_rejected(
        _run(world, "flannel", _conf("flannel", state, subnetFile=value)), codes=(7, 999)
    )


# --------------------------------------------------------------------------- cnitool cache


def _cnitool(world, argv: list[str], cache: str, conflist: dict):
    node, pod, state, escapes, cwd = world
    netd = state / "net.d"
    netd.mkdir(exist_ok=True)
    (netd / "10-ps.conflist").write_text(json.dumps(conflist))
    env = {
        "PATH": harness.SAFE_PATH,
        **harness.IN_PROCESS_ENV,
        "NETCONFPATH": str(netd),
        "CNI_PATH": str(BIN),
        "CNI_CACHE_DIR": cache,
        "CNI_PY_DEBUG": "1",
    }
    return watch(node, [pod], {"state": state.parent}, escapes,
                 lambda: _exec(node, [str(BIN / "cnitool"), *argv], env, b"", cwd))


def _conflist(state: Path, name: str = "psnet") -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "psbr0",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.82.0.0/24",
                    "dataDir": str(state / "networks"),
                },
            }
        ],
    }


@pytest.mark.parametrize(
    "form", _forms({}, ["dotdot", "relative-dotdot", "long-component", "long-path"])
)
def test_cnitool_cache_dir(world, form: str) -> None:
    """CNI_CACHE_DIR crafted to escape: refused before the plugins run."""
    state = world[2]
    w = _cnitool(
        world, ["add", "psnet", world[1].path], _escaped_path(state, form), _conflist(state)
    )
    assert w.result.returncode == 1 and not check_cnitool(
        "add", 1, w.result.stdout, w.result.stderr
    ), w.result
    assert not w.changed, f"rejected only after changing things: {w.describe()}"


@pytest.mark.parametrize("ifname", ["../../../escaped", "x" * 16, "a/b"])
def test_cnitool_interface_name(world, ifname: str) -> None:
    """cnitool -i with a path in it (it names the cache file): refused before the plugins run."""
    state = world[2]
    w = _cnitool(
        world, ["add", "psnet", world[1].path, "-i", ifname], str(state / "cache"), _conflist(state)
    )
    assert w.result.returncode == 1 and not check_cnitool(
        "add", 1, w.result.stdout, w.result.stderr
    ), w.result
    assert not w.changed, f"rejected only after changing things: {w.describe()}"


def test_cnitool_network_name_overlong_for_the_cache(world) -> None:
    """A network name that fits no cache file name (> 255 bytes with the ID): refused before the
    plugins run, not after they configured the pod."""
    state = world[2]
    name = "n" * 240
    w = _cnitool(world, ["add", name, world[1].path], str(state / "cache"), _conflist(state, name))
    assert w.result.returncode == 1 and not check_cnitool(
        "add", 1, w.result.stdout, w.result.stderr
    ), w.result
    assert not w.changed, f"rejected only after changing things: {w.describe()}"


def test_cnitool_cache_dir_not_a_directory(world) -> None:
    """CNI_CACHE_DIR naming a regular file: refused before the plugins run, not after."""
    state = world[2]
    blocker = state / "not-a-dir"
    blocker.write_text("x\n")
    w = _cnitool(world, ["add", "psnet", world[1].path], str(blocker), _conflist(state))
    assert w.result.returncode == 1 and not check_cnitool(
        "add", 1, w.result.stdout, w.result.stderr
    ), w.result
    assert not w.changed, f"rejected only after changing things: {w.describe()}"
