"""Fuzzing every executable's stdin and environment (docs/reliability.md, Fuzzing).

Each executable gets PYCNI_FUZZ_CASES hypothesis-generated cases (CI: a reduced count; full:
10,000 with PYCNI_FULL=1), PYCNI_FUZZ_EXEC_CASES of them through the real dist/bin executable,
the rest in-process through `cni.skel.run` (the code path the executables take), all inside a
throwaway node namespace with two pod namespaces. Every case must end with exit 0 and a valid
result or exit 1 and a well-formed CNI error, never a traceback or a hang, and leave nothing
behind (see tests/reliability/fuzz_runner.py). Findings that are reported plugin bugs
(tests/reliability/known_bugs.py) are counted, not failed; each has a strict-xfail reproducer
here or in test_path_safety.py.

Figures: with PYCNI_FIGURES_DIR set, each run's summary is written there as <exe>-fuzz.json
(docs/reliability.md lists the measured ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import harness
from conformance.harness import Netns
from tests.reliability import budget
from tests.reliability.contract import check_error_json
from tests.reliability.known_bugs import KNOWN, split_findings

pytestmark = [pytest.mark.slow, pytest.mark.netns]

EXECUTABLES = ("loopback", "host-local", "bridge", "portmap", "flannel", "cnitool")
RUNNER = "tests.reliability.fuzz_runner"  # run with -m, the repository on PYTHONPATH
PYTHON = harness.REPO_ROOT / ".venv" / "bin" / "python"
BIN = harness.REPO_ROOT / "dist" / "bin"
# Generated cases that must reach a successful ADD (proof the fuzzer gets past validation).
MIN_ADD_OK_SHARE = {"loopback": 0.05, "host-local": 0.05, "bridge": 0.04, "portmap": 0.04,
                    "flannel": 0.02, "cnitool": 0.02}


@pytest.fixture(scope="module")
def fuzz_world() -> Iterator[tuple[Netns, Netns, Netns]]:
    """A node namespace and two pod namespaces shared by the module's fuzz runs."""
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not (BIN / "bridge").exists():
        pytest.skip("dist/bin is not built (make build)")
    made: list[Netns] = []
    try:
        made.append(harness.create_netns("fznode", lo_up=True))
        made.append(harness.create_netns("fzpod", lo_up=False))
        made.append(harness.create_netns("fzpod", lo_up=False))
        yield made[0], made[1], made[2]
    finally:
        for ns in reversed(made):
            harness.delete_netns(ns)


def run_fuzz(
    world: tuple[Netns, Netns, Netns], exe: str, cases: int, exec_cases: int, tmp: Path
) -> dict:
    """Run the fuzz runner for `exe` inside the node namespace; its JSON summary."""
    node, pod0, pod1 = world
    root, out = tmp / "root", tmp / "summary.json"
    root.mkdir()
    argv = [
        "ip",
        "netns",
        "exec",
        node.name,
        str(PYTHON),
        "-m",
        RUNNER,
        "--exe",
        exe,
        "--cases",
        str(cases),
        "--exec-cases",
        str(exec_cases),
        "--pods",
        f"{pod0.path},{pod1.path}",
        "--root",
        str(root),
        "--out",
        str(out),
        "--outer-pid",
        str(os.getpid()),
        "--call-timeout",
        str(10 if budget.full() else 8),
    ]
    seed = budget.seed()
    if seed is not None:
        argv += ["--seed", str(seed)]
    limit = 300 + cases * 4.0
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit,
                              env={"PATH": harness.SAFE_PATH, "PYTHONPATH": str(harness.REPO_ROOT),
                                   **harness.IN_PROCESS_ENV}, check=False)
    except subprocess.TimeoutExpired:
        progress = Path(str(out) + ".progress")
        last = progress.read_text() if progress.exists() else "(no progress file)"
        pytest.fail(
            f"fuzz runner for {exe} did not finish within {limit:.0f}s; last case: {last[:3000]}"
        )
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"fuzz runner for {exe} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    summary = json.loads(out.read_text())
    figures = os.environ.get("PYCNI_FIGURES_DIR")
    if figures:
        Path(figures).mkdir(parents=True, exist_ok=True)
        (Path(figures) / f"{exe}-fuzz.json").write_text(json.dumps(summary, indent=1))
    return summary


def _describe(findings: list[dict], limit: int = 8) -> str:
    lines = []
    for f in findings[:limit]:
        lines.append(f"- case #{f['n']} ({f.get('outcome', '')}):")
        lines += [f"    {p[:700]}" for p in f["problems"]]
        lines.append(f"    input: {json.dumps(f['case'])[:1500]}")
    return "\n".join(lines)


@pytest.mark.parametrize("exe", EXECUTABLES)
def test_fuzz(exe: str, fuzz_world, tmp_path: Path, record_property) -> None:
    """Generated inputs: exit 0 + valid result or exit 1 + CNI error, nothing left behind."""
    cases = budget.count("PYCNI_FUZZ_CASES")
    exec_cases = min(budget.count("PYCNI_FUZZ_EXEC_CASES"), cases)
    summary = run_fuzz(fuzz_world, exe, cases, exec_cases, tmp_path)
    counts = summary["counts"]
    unknown, known = split_findings(exe, summary["findings"])
    for key in ("cases", "seed", "elapsed_s"):
        record_property(f"fuzz_{key}", summary[key])
    record_property("fuzz_counts", json.dumps(counts))
    record_property("fuzz_known_bugs", json.dumps(known))
    sys.stderr.write(
        f"\nfuzz {exe}: {summary['cases']} cases ({counts.get('cases exec', 0)} exec'd, "
        f"{counts.get('cases exec through the worker', 0)} of them through the worker), "
        f"{counts.get('plugin calls', 0)} calls, {counts.get('adds ok', 0)} ADDs succeeded, "
        f"known bugs hit: {known or 'none'}, seed {summary['seed']}, {summary['elapsed_s']}s\n"
    )
    assert not unknown, (
        f"{len(unknown)} fuzz finding(s) for {exe} (seed {summary['seed']}; rerun with "
        f"PYCNI_FUZZ_SEED={summary['seed']}):\n{_describe(unknown)}"
    )
    # Not vacuous: the requested number of distinct cases ran, some through the executable,
    # and enough of them got past validation to create real state.
    assert summary["cases"] == cases, f"only {summary['cases']} distinct cases of {cases}"
    assert counts.get("cases exec", 0) >= exec_cases * 0.9
    if exe != "cnitool" and exec_cases >= 2:  # half the exec'd cases take the default path
        assert counts.get("cases exec through the worker", 0) >= exec_cases * 0.9 // 2, counts
    need = (
        1 if cases < 500 else int(cases * MIN_ADD_OK_SHARE[exe])
    )  # a share only means much at scale
    assert counts.get("adds ok", 0) >= need, counts


# --------------------------------------------------------------------------- core regressions


@pytest.mark.parametrize("command", ["VERSION", "ADD", "DEL"])
def test_deeply_nested_stdin_is_a_decoding_error(command: str) -> None:
    """Found by the fuzzer: 2,000 nested arrays on stdin made the skel raise RecursionError out
    of its error path (a traceback, no CNI error). Now: code 6 (VERSION: its normal answer)."""
    if not (BIN / "loopback").exists():
        pytest.skip("dist/bin is not built (make build)")
    deep = b"[" * 2000 + b"]" * 2000
    r = harness.run_plugin(BIN / "loopback", command, deep, netns="/run/netns/pycni-absent")
    assert "Traceback" not in r.stderr, r.stderr
    if command == "VERSION":
        assert r.returncode == 0 and "supportedVersions" in r.result
    else:
        assert r.returncode == 1, r
        assert r.result["code"] == 6, r.result


def test_skel_run_never_raises_on_deep_json() -> None:
    """The in-process path (delegation) gets the same answer as the executable."""
    from cni import skel
    from plugins.loopback import PLUGIN

    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/run/netns/pycni-absent",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}
    rc, out = skel.run(PLUGIN, env, b"[" * 5000 + b"]" * 5000)
    assert rc == 1 and json.loads(out)["code"] == 6


def _skel_unknown_command() -> None:
    from cni import skel
    from cni.errors import CNIError
    from plugins.loopback import PLUGIN

    env = {"CNI_COMMAND": "ADD\n-x", "CNI_CONTAINERID": "c", "CNI_NETNS": "/run/netns/pycni-absent",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}
    rc, out = skel.run(PLUGIN, env, b'{"cniVersion":"1.0.0","name":"n","type":"loopback"}')
    raise CNIError(**{k: v for k, v in json.loads(out).items() if k in ("code", "msg")})


def _args(text: str):
    from cni.args import load_args

    return lambda: load_args(text, frozenset({"IP"}))


def _version(text: str):
    from cni.version import parse

    return lambda: parse(text)


@pytest.mark.parametrize("call", [
    _skel_unknown_command, _args("a\nb"), _args("IgnoreUnknown=x\ny"), _args("X=1\n2"),
    _version("1.\n0"), _version("1.0.0.\n0"),
], ids=["command", "args-pair", "args-bool", "args-unknown", "version-int", "version-parts"])
def test_core_error_messages_are_one_line(call) -> None:
    """Found by the fuzzer: the skel, CNI_ARGS and version errors echoed raw values, so a value
    with a newline made a multi-line `msg`. They are one line now (newlines escaped)."""
    from cni.errors import CNIError

    with pytest.raises(CNIError) as info:
        call()
    assert "\n" not in info.value.msg and "\\n" in info.value.msg, info.value.msg


# --------------------------------------------------------------------------- known bugs


def _known(key: str):
    bug = next(b for b in KNOWN if b.key == key)
    return pytest.mark.xfail(strict=True, reason=f"BUG ({bug.owner}): {bug.summary}")


def _host_local_conf(tmp: Path, **ipam) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "fznet",
        "type": "bridge",
        "ipam": {
            "type": "host-local",
            "subnet": "10.77.0.0/24",
            "dataDir": str(tmp / "nets"),
            **ipam,
        },
    }


def _prlimit_run(exe: str, command: str, conf: dict, node: Netns) -> harness.PluginRun | None:
    """Run `exe` in `node` with its address space capped at 1 GiB and a 5 s timeout (None when
    it times out), so an endless read fails fast instead of eating the machine's memory."""
    env = harness.plugin_env(command, containerid="fz-0", netns="/run/netns/pycni-absent",
                             cni_path=str(BIN))
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", node.name, "prlimit", "--as=1073741824", str(BIN / exe)],
            input=json.dumps(conf).encode(), capture_output=True, env=env, timeout=5, check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    out = proc.stdout.decode(errors="replace")
    try:
        parsed = json.loads(out)
    except ValueError:
        parsed = None
    return harness.PluginRun(proc.returncode, parsed, out, proc.stderr.decode(errors="replace"))


def _clean_error(r: harness.PluginRun | None) -> bool:
    from tests.reliability.contract import check_plugin

    return (
        r is not None
        and r.returncode == 1
        and not check_plugin("ADD", "1.0.0", r.returncode, r.stdout, r.stderr)
    )


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_host_local_resolvconf_special_file(special: str, node_ns: Netns, tmp_path: Path) -> None:
    """resolvConf naming an endless or blocking file must give a clean error, promptly."""
    path = special
    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    r = _prlimit_run("host-local", "ADD", _host_local_conf(tmp_path, resolvConf=path), node_ns)
    assert _clean_error(r), r


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_flannel_subnetfile_special_file(special: str, node_ns: Netns, tmp_path: Path) -> None:
    """subnetFile naming an endless or blocking file must give a clean error, promptly."""
    path = special
    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    conf = {"cniVersion": "1.0.0", "name": "fznet", "type": "flannel", "subnetFile": path,
            "dataDir": str(tmp_path / "flannel"), "subnetFileWait": 0,
            "ipam": {"dataDir": str(tmp_path / "nets")}}
    r = _prlimit_run("flannel", "ADD", conf, node_ns)
    assert _clean_error(r), r


def test_flannel_del_after_delegate_rejected_config(
    node_ns: Netns, make_pod, tmp_path: Path
) -> None:
    """Found by the fuzzer (fixed in af78a65): an ADD whose delegate rejects its configuration
    left <dataDir>/<containerID>, and every DEL then failed on the same rejection, so the file
    stayed for good. Now neither the failed ADD nor the runtime's DEL leaves it."""
    pod = make_pod()
    subnet = tmp_path / "subnet.env"
    subnet.write_text("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n"
                      "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    conf = {"cniVersion": "1.0.0", "name": "fznet", "type": "flannel", "subnetFile": str(subnet),
            "dataDir": str(tmp_path / "flannel"), "subnetFileWait": 0,
            "delegate": {"bridge": "fzbr0", "forceAddress": "yes please"},
            "ipam": {"dataDir": str(tmp_path / "nets")}}
    kw = dict(containerid="fz-0", netns=pod.path, cni_path=str(BIN), in_netns=node_ns)
    add = harness.run_plugin(BIN / "flannel", "ADD", conf, **kw)
    assert add.returncode == 1 and add.result["code"] == 6, add

    def saved() -> list[str]:
        d = tmp_path / "flannel"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    assert saved() == []
    dele = harness.run_plugin(BIN / "flannel", "DEL", conf, **kw)
    assert dele.returncode in (0, 1) and "Traceback" not in dele.stderr, dele
    if dele.returncode == 1:
        assert not check_error_json(dele.stdout), dele.stdout
    assert saved() == []


def test_portmap_error_message_is_one_line(node_ns: Netns) -> None:
    """A protocol value with a newline must be named on one line (escaped), not echoed raw."""
    conf = {"cniVersion": "1.0.0", "name": "fznet", "type": "portmap",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                "protocol": "tcp\n-A INPUT -j DROP"}]},
            "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                           "ips": [{"address": "10.77.0.9/24", "interface": 0}]}}
    r = harness.run_plugin(BIN / "portmap", "ADD", conf, containerid="fz-0",
                           netns="/run/netns/pycni-absent", cni_path=str(BIN), in_netns=node_ns)
    assert r.returncode == 1 and r.result["code"] == 7, r
    assert "\n" not in r.result["msg"], r.result["msg"]


def test_host_local_deep_data_dir(node_ns: Netns, tmp_path: Path) -> None:
    """Found by the fuzzer (fixed in af78a65): a dataDir of 2,100 components crashed
    host-local's directory creation with RecursionError. Now a clean error naming it."""
    conf = _host_local_conf(tmp_path)
    conf["ipam"]["dataDir"] = str(tmp_path) + "/d" * 2100
    r = harness.run_plugin(BIN / "host-local", "ADD", conf, containerid="fz-0",
                           netns="/run/netns/pycni-absent", cni_path=str(BIN), in_netns=node_ns)
    assert _clean_error(r), r


@pytest.mark.parametrize(
    "mappings", ["x", [1], [{"hostPort": "a"}]], ids=["string", "number", "bad-port"]
)
def test_portmap_del_ignores_malformed_mappings(mappings, node_ns: Netns) -> None:
    """DEL needs no mapping (it removes the container's rules by its ID): a malformed
    runtimeConfig.portMappings must not make it fail, or a list DEL stops there for good."""
    conf = {"cniVersion": "1.0.0", "name": "fznet", "type": "portmap",
            "runtimeConfig": {"portMappings": mappings}}
    r = harness.run_plugin(BIN / "portmap", "DEL", conf, containerid="fz-0", netns="",
                           cni_path=str(BIN), in_netns=node_ns)
    assert r.returncode == 0, r


def _bridge_add_del(conf: dict, node: Netns, pod: Netns, ifname: str = "eth0"):
    kw = dict(containerid="fz-0", netns=pod.path, ifname=ifname, cni_path=str(BIN), in_netns=node)
    return (harness.run_plugin(BIN / "bridge", "ADD", conf, **kw),
            harness.run_plugin(BIN / "bridge", "DEL", conf, **kw))


def _leases(tmp: Path) -> list[str]:
    d = tmp / "nets" / "fznet"
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def test_bridge_route_gateway_of_the_other_family(node_ns: Netns, make_pod, tmp_path: Path) -> None:
    """Found by the full-count fuzzer: an IPv4 route with an IPv6 gateway reached pyroute2's
    encoder and came back as a traceback. Now the reference's error (Go netlink's text), code
    999, one line, and the failed ADD is rolled back."""
    pod = make_pod()
    conf = _host_local_conf(tmp_path, routes=[{"dst": "10.9.0.0/16", "gw": "fd77::1"}])
    conf["bridge"] = "fzbr0"
    add, dele = _bridge_add_del(conf, node_ns, pod)
    assert add.returncode == 1 and not check_error_json(add.stdout), add
    assert "Traceback" not in add.stderr, add.stderr
    assert add.result["code"] == 999 and add.result["msg"] == (
        "failed to add route '{10.9.0.0 ffff0000} via fd77::1 dev eth0 metric 0 (Scope: universe, "
        "Table: 0)': "
        "gateway, source, and destination ip are not the same IP family"
    ), add.result
    assert pod.ip("link", "show", "eth0", check=False).returncode != 0
    assert _leases(tmp_path) == []
    assert dele.returncode == 0, dele


def test_bridge_interface_name_not_utf8(node_ns: Netns, make_pod, tmp_path: Path) -> None:
    """Found by the full-count fuzzer: CNI_IFNAME holding a byte that is not UTF-8 reached
    pyroute2's encoder (traceback, code 999) on ADD and on DEL. ADD now refuses it (code 4,
    naming it as Go's %q does); DEL has nothing to remove on the pod side and succeeds."""
    pod = make_pod()
    conf = dict(_host_local_conf(tmp_path), bridge="fzbr0")
    add, dele = _bridge_add_del(conf, node_ns, pod, ifname="\udcff")
    assert add.returncode == 1 and not check_error_json(add.stdout), add
    assert (add.result["code"], add.result["msg"]) == (
        4,
        'interface name "\\xff" is not valid UTF-8',
    ), add.result
    assert dele.returncode == 0 and "Traceback" not in dele.stderr, dele
    assert _leases(tmp_path) == []


def test_bridge_name_with_newline_is_named_on_one_line(
    node_ns: Netns, make_pod, tmp_path: Path
) -> None:
    """Found by the full-count fuzzer: the bridge name was quoted raw, so a newline in it broke
    the one-line message. Now it is escaped as the reference's %q does."""
    pod = make_pod()
    conf = dict(_host_local_conf(tmp_path), bridge="a\nb")
    add, dele = _bridge_add_del(conf, node_ns, pod)
    assert add.returncode == 1 and not check_error_json(add.stdout), add
    assert (
        add.result["msg"]
        == 'failed to create bridge "a\\nb": could not add "a\\nb": invalid argument'
    )


def test_bridge_netns_path_with_control_characters_is_named_on_one_line(
    node_ns: Netns, tmp_path: Path
) -> None:
    """Found by the full-count fuzzer (through flannel): CNI_NETNS was quoted raw in "failed to
    open netns", so a newline in it broke the one-line message; now escaped as Go's %q does."""
    conf = dict(_host_local_conf(tmp_path), bridge="fzbr0")
    r = harness.run_plugin(BIN / "bridge", "ADD", conf, containerid="fz-0", netns="/x\n\x07y",
                           cni_path=str(BIN), in_netns=node_ns)
    assert r.returncode == 1 and not check_error_json(r.stdout), r
    assert r.result["msg"].startswith('failed to open netns "/x\\n\\ay": '), r.result
