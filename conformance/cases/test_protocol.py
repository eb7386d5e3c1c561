"""Protocol: the plugin-side checks docs/spec-rules.md C1-C37 for every executable in the
directory, plus the generic differential cases docs/reference-behaviour.md P1-P12.

Case names carry the check numbers: `test_p13_...` is docs/spec-rules.md C13; each docstring
starts with its ids, `(P4)` naming the matching case of docs/reference-behaviour.md. Checks not
observable from outside a finished executable (C10, C24, C27's "plugin supports only <= 0.3.0",
C30, C31, C34, C35: they need a plugin with another version list or a scripted callback) are covered
by the skel's unit tests, not here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from conformance import deviations as dev
from conformance import harness, observe, targets
from conformance.bindir import ALL_VERSIONS, ALL_VERSIONS_V111, PLUGINS, CniDir
from conformance.checks import expect_error, expect_ok, go_q_list, require, show
from conformance.sandbox import Sandbox

NETNS_PLACEHOLDER = "/var/run/netns/cnitest-not-there"
"""A CNI_NETNS value for cases that fail before any namespace is opened."""


@pytest.fixture(params=PLUGINS)
def plugin(request: pytest.FixtureRequest, cni: CniDir) -> str:
    """Each plugin executable the suite knows, skipped when the directory lacks it."""
    name = request.param
    if not cni.has(name):
        pytest.skip(f"{name} is not in {cni.path}")
    return name


def versions(cni: CniDir) -> list[str]:
    return dev.pick(cni, "R2-version-list", new=ALL_VERSIONS, old=ALL_VERSIONS_V111)


UNMARSHALL = "error unmarshall network config: "
PY_JSON_POSITION = re.compile(r": line \d+ column \d+ \(char \d+\)$")
"""How Python's JSON decoder ends its messages (I10: our wording after Go's prefix)."""


def expect_decode_error(cni: CniDir, run, go_detail: str) -> None:
    """Code 6 with the `error unmarshall network config: ` prefix: Go's decoder text on the
    reference, Python's (`<what>: line L column C (char N)`) on ours (I10)."""
    if dev.old_side(cni, "I10-json-syntax-message"):
        expect_error(run, 6, UNMARSHALL + go_detail)
        return
    err = expect_error(run, 6, startswith=UNMARSHALL)
    assert PY_JSON_POSITION.search(err["msg"]), show(run)


def _errrun(cni: CniDir, plugin: str, command: str | None, conf, **kw):
    """A run that must fail before touching anything: fake netns path unless given."""
    kw.setdefault("netns", NETNS_PLACEHOLDER)
    return cni.run(plugin, command, conf, **kw)


# ------------------------------------------------------------------ VERSION / about (32, 7-9)


def test_p32_version_reply(cni: CniDir, plugin: str) -> None:
    """C32 (P1): VERSION with empty stdin -> compact JSON + newline, non-empty cniVersion,
    supportedVersions = every version of the spec (upstream 3d27709f up to 1.1.0; v1.1.1 up to
    1.0.0)."""
    run = cni.run(plugin, "VERSION", b"", containerid=None, netns=None, ifname=None,
                  args=None, cni_path=None)
    expect_ok(run)
    assert isinstance(run.result, dict), show(run)
    assert run.result.get("supportedVersions") == versions(cni), show(run)
    ver = run.result.get("cniVersion")
    assert isinstance(ver, str) and ver, show(run)
    assert ver == dev.pick(cni, "R2-version-list", new="1.1.0", old="1.0.0")
    assert run.stdout == json.dumps(run.result, separators=(",", ":")) + "\n", (
        "VERSION must be compact JSON with one trailing newline\n  " + show(run))


def test_p07_version_closed_stdin(cni: CniDir, plugin: str, sb: Sandbox) -> None:
    """C7: VERSION with no other variable and stdin closed (not even /dev/null) -> success."""
    ns = sb.netns("run")
    exe = str(cni.exe(plugin))
    proc = subprocess.run(
        ["ip", "netns", "exec", ns.name, exe],
        env={"PATH": harness.SAFE_PATH, "CNI_COMMAND": "VERSION"},
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        preexec_fn=lambda: os.close(0),
    )
    assert proc.returncode == 0, proc
    reply = json.loads(proc.stdout)
    assert reply["supportedVersions"] == versions(cni)


def test_p09_about_without_command(cni: CniDir, plugin: str) -> None:
    """C9 (P2): CNI_COMMAND unset -> exit 0, nothing on stdout, about + versions on stderr."""
    run = cni.run(plugin, None, b"", containerid=None, netns=None, ifname=None, args=None,
                  cni_path=None)
    expect_ok(run, silent=True)
    lines = run.stderr.splitlines()
    assert len(lines) == 2, show(run)
    if plugin == "flannel":  # docs/flannel-behaviour.md §4: flannel's own buildversion wording
        first = "CNI Plugin flannel version "
    else:
        first = dev.pick(cni, "I4-about-text", new=f"CNI {plugin} plugin ",
                         old=f"CNI {plugin} plugin version unknown")
    assert lines[0].startswith(first), show(run)
    assert lines[1] == "CNI protocol versions supported: " + ", ".join(versions(cni)), show(run)


def test_p08_empty_command_is_missing(cni: CniDir, plugin: str) -> None:
    """C8: CNI_COMMAND set but empty behaves exactly like unset (the about text, exit 0)."""
    unset = cni.run(plugin, None, b"", containerid=None, netns=None, ifname=None, args=None,
                    cni_path=None)
    empty = cni.run(plugin, "", b"", containerid=None, netns=None, ifname=None, args=None,
                    cni_path=None)
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        unset.returncode, unset.stdout, unset.stderr), show(empty)


# ------------------------------------------------------------------ environment (1-6, 13-17)


def test_p01_add_with_full_env(cni: CniDir, plugin: str, sb: Sandbox) -> None:
    """C1: ADD with every variable set and a valid config runs the plugin: exit 0, a result
    labelled with the config's version; DEL afterwards succeeds."""
    require(cni, *targets.needs(plugin))
    at = targets.attach(cni, plugin, sb)
    run = cni.run(plugin, "ADD", at.conf, **at.kw())
    res = expect_ok(run)
    assert isinstance(res, dict) and res.get("cniVersion") == "1.0.0", show(run)
    expect_ok(cni.run(plugin, "DEL", at.conf, **at.kw()), silent=True)


def test_p02_missing_vars_listed_in_order(cni: CniDir, plugin: str) -> None:
    """C2: ADD without CNI_NETNS, CNI_IFNAME and CNI_PATH -> code 4 naming all three in order."""
    run = cni.run(plugin, "ADD", {"cniVersion": "1.0.0", "name": "n"}, netns=None,
                  ifname=None, cni_path=None)
    expect_error(run, 4, "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing")


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_p03_each_missing_var(cni: CniDir, plugin: str, command: str) -> None:
    """C3 (P3): unsetting each required variable on its own -> code 4 naming only that one;
    CNI_CONTAINERID and CNI_IFNAME together -> both, in order."""
    conf = {"cniVersion": "1.0.0", "name": "n", "type": plugin}
    full = {"containerid": "c1", "netns": NETNS_PLACEHOLDER, "ifname": "eth0",
            "cni_path": str(cni.path)}
    names = {"containerid": "CNI_CONTAINERID", "netns": "CNI_NETNS", "ifname": "CNI_IFNAME",
             "cni_path": "CNI_PATH"}
    problems = []
    for key, var in names.items():
        kw = dict(full, **{key: None})
        run = cni.run(plugin, command, conf, **kw)
        want = f"required env variables [{var}] missing"
        if not (run.returncode == 1 and isinstance(run.result, dict)
                and run.result.get("code") == 4 and run.result.get("msg") == want):
            problems.append(f"{var} unset: {show(run)}")
    run = cni.run(plugin, command, conf, **dict(full, containerid=None, ifname=None))
    want = "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing"
    if not (isinstance(run.result, dict) and run.result.get("msg") == want):
        problems.append(f"CNI_CONTAINERID+CNI_IFNAME unset: {show(run)}")
    assert not problems, "\n".join(problems)


def test_p04_del_without_netns(cni: CniDir, plugin: str, sb: Sandbox) -> None:
    """C4: DEL with CNI_NETNS unset is valid (and succeeds for an attachment never added)."""
    require(cni, *targets.needs(plugin))
    node = sb.netns("node")
    conf = targets.conf(plugin, sb)
    expect_ok(cni.run(plugin, "DEL", conf, in_netns=node, netns=None), silent=True)


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_p05_p06_gc_status_env(cni: CniDir, plugin: str, command: str, sb: Sandbox) -> None:
    """C5, C6: GC / STATUS need only CNI_COMMAND + CNI_PATH + stdin (success); without CNI_PATH
    -> code 4 `[CNI_PATH]`. v1.1.1 has neither verb (R3): it asks for the container id
    (code 3 `missing containerID`)."""
    require(cni, *targets.needs(plugin))
    node = sb.netns("node")
    conf = targets.conf(plugin, sb, version="1.1.0")
    bare = {"containerid": None, "netns": None, "ifname": None, "args": None}
    ok = cni.run(plugin, command, conf, in_netns=node, **bare)
    nopath = cni.run(plugin, command, conf, in_netns=node, cni_path=None, **bare)
    if dev.old_side(cni, "R3-gc-status-verbs"):
        expect_error(ok, 3, "missing containerID")
        expect_error(nopath, 3, "missing containerID")
        return
    expect_ok(ok, silent=True)
    expect_error(nopath, 4, "required env variables [CNI_PATH] missing")


@pytest.mark.parametrize("cid", ["some-%%container-id", "-abc", "_abc", ".abc", "a/b", " spacey "])
def test_p13_p14_bad_container_id(cni: CniDir, plugin: str, cid: str) -> None:
    """C13, C14 (P4): a container id outside [a-zA-Z0-9][a-zA-Z0-9_.-]* -> code 4
    `invalid characters in containerID`, details = the id."""
    run = _errrun(cni, plugin, "ADD", {"cniVersion": "1.0.0", "name": "n"}, containerid=cid)
    expect_error(run, 4, "invalid characters in containerID", details=cid)


def test_p14_one_char_container_id(cni: CniDir, plugin: str, sb: Sandbox) -> None:
    """C14: a one-character container id `a` is accepted (DEL of nothing succeeds)."""
    require(cni, *targets.needs(plugin))
    node = sb.netns("node")
    run = cni.run(plugin, "DEL", targets.conf(plugin, sb), in_netns=node, containerid="a",
                  netns=None)
    expect_ok(run, silent=True)


def test_p15_ifname_length(cni: CniDir, plugin: str, sb: Sandbox) -> None:
    """C15 (P5): a 16-byte CNI_IFNAME -> code 4 `interface name is too long`; 15 bytes pass."""
    run = _errrun(cni, plugin, "ADD", {"cniVersion": "1.0.0", "name": "n"},
                  ifname="abcdefghijklmnop")
    expect_error(run, 4, "interface name is too long",
                 details="interface name should be less than 16 characters")
    require(cni, *targets.needs(plugin))
    node = sb.netns("node")
    run = cni.run(plugin, "DEL", targets.conf(plugin, sb), in_netns=node,
                  ifname="abcdefghijklmno", netns=None)
    expect_ok(run, silent=True)


@pytest.mark.parametrize(
    "ifname, msg",
    [
        (".", "interface name is . or .."),
        ("..", "interface name is . or .."),
        ("a/b", "interface name contains / or : or whitespace characters"),
        ("a:b", "interface name contains / or : or whitespace characters"),
        ("a b", "interface name contains / or : or whitespace characters"),
        ("a\tb", "interface name contains / or : or whitespace characters"),
    ],
    ids=["dot", "dotdot", "slash", "colon", "space", "tab"],
)
def test_p16_bad_ifname(cni: CniDir, plugin: str, ifname: str, msg: str) -> None:
    """C16 (P5): `.`, `..` and names with `/`, `:` or whitespace -> code 4."""
    run = _errrun(cni, plugin, "ADD", {"cniVersion": "1.0.0", "name": "n"}, ifname=ifname)
    expect_error(run, 4, msg)


@pytest.mark.parametrize("command", ["VERSION", "GC", "STATUS"])
def test_p17_ifname_ignored(cni: CniDir, plugin: str, command: str, sb: Sandbox) -> None:
    """C17: an invalid CNI_IFNAME is not validated on GC, STATUS and VERSION (v1.1.1, R11:
    validated on every command but VERSION)."""
    require(cni, *targets.needs(plugin))
    node = sb.netns("node")
    conf = targets.conf(plugin, sb, version="1.1.0")
    run = cni.run(plugin, command, conf, in_netns=node, ifname="a/b",
                  netns=NETNS_PLACEHOLDER)
    if command != "VERSION" and dev.old_side(cni, "R11-ifname-unchecked-verbs"):
        expect_error(run, 4, "interface name contains / or : or whitespace characters")
        return
    expect_ok(run, silent=command != "VERSION")


# ------------------------------------------------------------------ stdin (18-22, 11-12)


def test_p18_not_json(cni: CniDir, plugin: str) -> None:
    """C18 (P6): stdin `{bad` -> code 6 with Go's decoder message (ours: Python's, I10)."""
    run = _errrun(cni, plugin, "ADD", b"{bad")
    expect_decode_error(cni, run, "invalid character 'b' looking for beginning of object key "
                                  "string")


def test_p18_empty_object(cni: CniDir, plugin: str) -> None:
    """C18 (P7): stdin `{}` -> code 7 `missing network name`."""
    expect_error(_errrun(cni, plugin, "ADD", b"{}"), 7, "missing network name")


@pytest.mark.parametrize("name", ["te%%st", "a/b"])
def test_p19_bad_network_name(cni: CniDir, plugin: str, name: str) -> None:
    """C19 (P7): a network name with bad characters -> code 7, details = the name."""
    run = _errrun(cni, plugin, "ADD", {"cniVersion": "1.0.0", "name": name})
    expect_error(run, 7, "invalid characters found in network name", details=name)


def test_p19_bad_name_on_gc(cni: CniDir, plugin: str) -> None:
    """C19: the name check runs before the version gate, on GC too (cniVersion 0.4.0 -> 7)."""
    run = _errrun(cni, plugin, "GC", {"cniVersion": "0.4.0", "name": "te%%st"})
    expect_error(run, 7, "invalid characters found in network name", details="te%%st")


def test_p20_name_not_string(cni: CniDir, plugin: str) -> None:
    """C20: `name` as a number -> code 6."""
    expect_error(_errrun(cni, plugin, "ADD", {"cniVersion": "1.0.0", "name": 5}), 6)


def test_p21_version_not_string(cni: CniDir, plugin: str) -> None:
    """C21: `cniVersion` as a number -> code 6."""
    expect_error(_errrun(cni, plugin, "ADD", {"cniVersion": 1, "name": "n"}), 6)


def test_p22_stdin_read_error(cni: CniDir, plugin: str, sb: Sandbox) -> None:
    """C22: stdin that cannot be read (a directory) -> code 5 `error reading from stdin: ...`.
    Ours cannot answer (L1): the Python interpreter aborts in its start-up
    (`init_sys_streams`), so: non-zero exit, nothing on stdout. Nothing changes either way."""
    ns = sb.netns("run")
    before = {"kernel": observe.kernel(ns), "firewall": observe.firewall(ns)}
    env = harness.plugin_env("ADD", netns=NETNS_PLACEHOLDER, cni_path=str(cni.path))
    fd = os.open("/", os.O_RDONLY)
    try:
        proc = subprocess.run(["ip", "netns", "exec", ns.name, str(cni.exe(plugin))], stdin=fd,
                              capture_output=True, env=env, timeout=60)
    finally:
        os.close(fd)
    assert {"kernel": observe.kernel(ns), "firewall": observe.firewall(ns)} == before
    if dev.old_side(cni, "L1-stdin-directory"):
        assert proc.returncode == 1, proc
        err = json.loads(proc.stdout)
        assert err["code"] == 5 and err["msg"].startswith("error reading from stdin: "), err
        return
    assert proc.returncode != 0, proc
    assert proc.stdout == b"", proc
    assert b"init_sys_streams" in proc.stderr, proc


@pytest.mark.parametrize("command", ["NOPE", "add"])
def test_p11_unknown_command(cni: CniDir, plugin: str, command: str) -> None:
    """C11 (P10): an unknown command with a valid config -> code 4 `unknown CNI_COMMAND: X`."""
    run = _errrun(cni, plugin, command, {"cniVersion": "1.0.0", "name": "n"})
    expect_error(run, 4, f"unknown CNI_COMMAND: {command}")


def test_p12_unknown_command_empty_stdin(cni: CniDir, plugin: str) -> None:
    """C12: an unknown command with empty stdin -> code 6 (the config check runs first), with
    Go's message for empty input (ours: Python's, I10)."""
    run = _errrun(cni, plugin, "NOPE", b"")
    expect_decode_error(cni, run, "unexpected end of JSON input")


# ------------------------------------------------------------------ versions (23-29, 33)


def test_p23_no_version_is_010(cni: CniDir, plugin: str, sb: Sandbox) -> None:
    """C23: a config without cniVersion is treated as 0.1.0 and runs (DEL of nothing)."""
    require(cni, *targets.needs(plugin))
    node = sb.netns("node")
    conf = targets.conf(plugin, sb)
    del conf["cniVersion"]
    if plugin == "portmap":
        conf.pop("prevResult")
    expect_ok(cni.run(plugin, "DEL", conf, in_netns=node, netns=None), silent=True)


@pytest.mark.parametrize("ver", ["9.9.9", "7.0.0", "adsf"])
def test_p25_unsupported_version(cni: CniDir, plugin: str, ver: str) -> None:
    """C25 (P8): an unsupported or unparsable cniVersion on ADD -> code 1
    `incompatible CNI versions`, details `config is "X", plugin supports [...]`."""
    run = _errrun(cni, plugin, "ADD", {"cniVersion": ver, "name": "n"})
    expect_error(run, 1, "incompatible CNI versions",
                 details=f'config is "{ver}", plugin supports {go_q_list(versions(cni))}')


def test_p26_check_below_040(cni: CniDir, plugin: str) -> None:
    """C26 (P9): CHECK with cniVersion 0.3.1 -> code 1 `config version does not allow CHECK`."""
    run = _errrun(cni, plugin, "CHECK", {"cniVersion": "0.3.1", "name": "n"})
    expect_error(run, 1, "config version does not allow CHECK")


def test_p27_check_above_supported(cni: CniDir, plugin: str) -> None:
    """C27 (P9): CHECK at a version above every supported one -> code 1
    `plugin version does not allow CHECK`."""
    run = _errrun(cni, plugin, "CHECK", {"cniVersion": "9.9.9", "name": "n"})
    expect_error(run, 1, "plugin version does not allow CHECK")


def test_p28_check_unparsable_version(cni: CniDir, plugin: str) -> None:
    """C28: CHECK with cniVersion `adsfsadf` -> code 6."""
    expect_error(_errrun(cni, plugin, "CHECK", {"cniVersion": "adsfsadf", "name": "n"}), 6)


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_p29_gc_status_need_110(cni: CniDir, plugin: str, command: str) -> None:
    """C29 (P11): GC / STATUS with cniVersion 1.0.0 -> code 1 `config version does not allow
    GC` / `... STATUS` (v1.1.1, R3: code 4 unknown command)."""
    run = _errrun(cni, plugin, command, {"cniVersion": "1.0.0", "name": "n"})
    if dev.old_side(cni, "R3-gc-status-verbs"):
        expect_error(run, 4, f"unknown CNI_COMMAND: {command}")
    else:
        expect_error(run, 1, f"config version does not allow {command}")


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_p33_gc_status_silent(cni: CniDir, plugin: str, command: str, sb: Sandbox) -> None:
    """C33 (P11): GC / STATUS at 1.1.0 with nothing to do -> exit 0 and no output."""
    require(cni, *targets.needs(plugin))
    at = targets.attach(cni, plugin, sb, version="1.1.0")
    conf = dict(at.conf)
    if command == "GC":
        conf["cni.dev/valid-attachments"] = []
    run = cni.run(plugin, command, conf, **at.kw())
    if dev.old_side(cni, "R3-gc-status-verbs"):
        expect_error(run, 4, f"unknown CNI_COMMAND: {command}")
    else:
        expect_ok(run, silent=True)


# ------------------------------------------------------------------ errors and netns (36, 37)


def test_p36_error_object_format(cni: CniDir, plugin: str) -> None:
    """C36 (P12): the error goes to stdout as a JSON object with `code`, `msg`, `details`
    (cniVersion too on ours, I1), 4-space indented, code before msg, no trailing newline;
    stderr does not carry it."""
    cid = "some-%%container-id"
    run = _errrun(cni, plugin, "ADD", {"cniVersion": "1.0.0", "name": "n"}, containerid=cid)
    err = expect_error(run, 4, "invalid characters in containerID", details=cid)
    allowed = {"code", "msg", "details"} | dev.pick(cni, "I1-error-cniversion",
                                                     new={"cniVersion"}, old=set())
    assert set(err) <= allowed, show(run)
    assert run.stdout == json.dumps(err, indent=4), "4-space indent, no trailing newline"
    assert run.stdout.index('"code"') < run.stdout.index('"msg"')
    assert '"code"' not in run.stderr


def test_p36_error_html_escaping(cni: CniDir, sb: Sandbox) -> None:
    """(P12, docs/reference-behaviour.md §0.2) Go escapes `<` and `>` in error strings as \\u003c /
    \\u003e: host-local with a range object lacking `subnet` -> `IP <nil> not v4 nor v6` (code 7 on
    ours, 999 on the Go plugin, I7)."""
    require(cni, "host-local")
    conf = {"cniVersion": "1.0.0", "name": "n",
            "ipam": {"type": "host-local", "ranges": [[{}]], "dataDir": str(sb.dir("ipam"))}}
    run = cni.run("host-local", "ADD", conf, in_netns=sb.netns("node"), netns=NETNS_PLACEHOLDER)
    err = expect_error(run, dev.pick(cni, "I7-error-codes", new=7, old=999),
                       "invalid range set 0: IP <nil> not v4 nor v6")
    assert "<nil>" in err["msg"], show(run)
    assert "\\u003cnil\\u003e" in run.stdout and "<nil>" not in run.stdout, show(run)


def test_p37_own_netns(cni: CniDir, sb: Sandbox) -> None:
    """C37: ADD whose CNI_NETNS is the plugin's own namespace -> code 8 (v1.1.1, R10: no check,
    success); with CNI_NETNS_OVERRIDE=1 or TRUE it is allowed."""
    require(cni, "loopback")
    node = sb.netns("node")
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "loopback"}
    run = cni.run("loopback", "ADD", conf, in_netns=node, netns=node.path)
    if dev.old_side(cni, "R10-own-netns-check"):
        expect_ok(run)
    else:
        expect_error(run, 8, "plugin's netns and netns from CNI_NETNS should not be the same")
    for value in ("1", "TRUE"):
        run = cni.run("loopback", "ADD", conf, in_netns=node, netns=node.path,
                      extra_env={"CNI_NETNS_OVERRIDE": value})
        expect_ok(run)
