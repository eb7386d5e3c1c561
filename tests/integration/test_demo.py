"""The main-job demonstration (README "The two commands"): scripts/demo.py against the built
dist/bin, as root.

It is run the way `make demo` runs it (the system python3, a separate process) and judged by
what it prints, its exit status, and what is left on the machine afterwards: no namespace, no
temp dir, no change in the root namespace. Also: cleanup when a plugin fails, on SIGTERM in
the middle, and a server that dies with the demo on SIGKILL; and the deps script's no-op path.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conformance import harness

DEMO = harness.REPO_ROOT / "scripts" / "demo.py"
DEPS = harness.REPO_ROOT / "scripts" / "install-deps.sh"
DIST = harness.REPO_ROOT / "dist" / "bin"
NEEDED = ("cnitool", "flannel", "bridge", "host-local", "portmap")

pytestmark = pytest.mark.netns


def _python() -> str:
    """The system python3 (what `make demo` uses), else this interpreter."""
    return shutil.which("python3", path=harness.SAFE_PATH) or sys.executable


@pytest.fixture(scope="module", autouse=True)
def _built():
    missing = [n for n in NEEDED if not os.access(DIST / n, os.X_OK)]
    if missing:
        pytest.skip(f"dist/bin lacks {', '.join(missing)} (run `make build`)")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _demo_names(pid: int) -> list[str]:
    return [f"pycni-demo-{role}-{pid}" for role in ("node", "pod-a", "pod-b", "pod-c")]


def _temp_dirs(pid: int) -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob(f"pycni-demo-{pid}-*"))


def _assert_nothing_left(pid: int) -> None:
    left = [n for n in harness.list_netns() if n in _demo_names(pid)]
    assert left == [], f"demo namespaces left: {left}"
    assert _temp_dirs(pid) == [], f"demo temp dirs left: {_temp_dirs(pid)}"


def _root_changes(before, after) -> list[str]:
    """Root-namespace differences, ignoring namespaces of other live processes (other tests)."""
    return [p for p in harness.audit_diff(before, after) if "pycni-demo-" in p or "netns" not in p]


def _run_demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_python(), str(DEMO), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={"PATH": harness.SAFE_PATH, **harness.IN_PROCESS_ENV}, cwd=harness.REPO_ROOT,
    )


def test_demo_runs_every_step_and_leaves_nothing():
    # Leftovers of a demo killed by SIGKILL (a dead pid): the next run must remove them.
    dead = _dead_pid()
    stale_ns = f"pycni-demo-node-{dead}"
    stale_tmp = Path(tempfile.mkdtemp(prefix=f"pycni-demo-{dead}-"))
    (stale_tmp / "subnet.env").write_text("x")
    subprocess.run(["ip", "netns", "add", stale_ns], check=True)
    try:
        before = harness.root_state()
        proc = _run_demo()
        after = harness.root_state()
    finally:
        if stale_ns in harness.list_netns():
            harness.delete_netns(stale_ns)
        shutil.rmtree(stale_tmp, ignore_errors=True)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert proc.stderr == ""

    headings = re.findall(r"^(\d+)\. (.+)$", out, re.M)
    assert headings == [
        ("1", "sandbox"), ("2", "attach pod-a"), ("3", "attach pod-b"), ("4", "the node"),
        ("5", "pod to pod"), ("6", "hostPort"),
        ("7", "the default path: a process per call, served by a warm worker"), ("8", "delete"),
        ("9", "doctor"), ("10", "nothing left"),
    ]
    assert "ok   cnitool doctor finds nothing failing on the node" in out
    assert re.search(r"^\s+ok   conf\.parse ", out, re.M) and " 0 fail" in out
    assert f"removed what a killed demo left: {stale_ns}, {stale_tmp}" in out
    assert '"cniVersion": "0.3.1"' in out and '"hairpinMode": true' in out  # the conflist shown
    assert "FLANNEL_SUBNET=10.244.1.1/24" in out
    pod_ips = re.findall(r"^\s+ip\s+(10\.244\.1\.\d+)/24\s+gateway 10\.244\.1\.1$", out, re.M)
    assert len(set(pod_ips)) == 2, out
    assert out.count("ok   eth0 MTU is 1450 (FLANNEL_MTU)") == 2
    assert out.count("mtu 1450 qdisc") == 2  # the pods' `ip link` lines
    assert out.count("default via 10.244.1.1 dev eth0") == 2
    assert "ok   cni0 holds the gateway 10.244.1.1/24" in out
    assert out.count("hairpin on") == 2
    assert f"--to-destination {pod_ips[0]}:80" in out
    assert out.count(" 0% packet loss") == 4
    assert "message too long, mtu=1450" in out
    assert out.count("200 OK hello from pod-a") == 2  # from the node, and the hairpin
    for line in (
        "no veth left on the node",
        "no host-local leases",
        "no saved flannel delegate config",
        "result cache empty",
        "no per-pod firewall chain or rule",
        "hostPort 8080 no longer answers",
        "root links: unchanged",
        "/opt/cni/bin: unchanged",
        "/etc/cni/net.d: unchanged",
    ):
        assert f"ok   {line}" in out, line
    # step 7: the cold call ran in-process and started a worker, the warm ones were served by it,
    # each with its timings, against PYCNI_WORKER=0; the worker ended
    assert re.search(r"^  cold ADD +\d+ / +\d+ +in-process", out, re.M), out
    assert "ok   the first call started a worker in the background" in out
    assert re.search(r"^  warm ADD +\d+ / +\d+ +median of 3, served$", out, re.M), out
    assert "ok   every warm call was served by the worker (6 of 6)" in out
    assert re.search(r"^  PYCNI_WORKER=0 ADD +\d+ / +\d+ ", out, re.M), out
    assert re.search(r"the cold ADD took \d+\.\d\dx a PYCNI_WORKER=0 ADD", out), out
    assert "ok   worker(s) ended" in out and "ok   pod-c has no eth0" in out
    assert out.rstrip().endswith(
        "demo passed: every step above was checked; nothing was left behind."
    )
    assert "FAILED" not in out

    pid = int(re.search(r"node netns\s+pycni-demo-node-(\d+)", out).group(1))
    _assert_nothing_left(pid)
    assert stale_ns not in harness.list_netns() and not stale_tmp.exists()
    assert _root_changes(before, after) == []


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str], threading.Timer]:
    proc = subprocess.Popen(
        [_python(), str(DEMO), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": harness.SAFE_PATH, **harness.IN_PROCESS_ENV}, cwd=harness.REPO_ROOT,
    )
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    return proc, [], watchdog


def _read_until(proc: subprocess.Popen[str], lines: list[str], marker: str) -> None:
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            return
    pytest.fail(f"demo ended before {marker!r}:\n{''.join(lines)}")


def test_sigterm_in_the_middle_cleans_up():
    before = harness.root_state()
    proc, lines, watchdog = _start()
    try:
        _read_until(proc, lines, "4. the node")  # both pods attached, rules in place
        proc.send_signal(signal.SIGTERM)
        lines += proc.stdout.readlines()
        rc = proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    assert rc == 128 + signal.SIGTERM, out
    assert "interrupted by signal 15" in out
    assert "cleaned up: namespaces deleted, servers stopped, temp dir removed." in out
    _assert_nothing_left(proc.pid)
    assert _root_changes(before, harness.root_state()) == []


def test_sigkill_takes_the_server_with_it():
    proc, lines, watchdog = _start()
    names = _demo_names(proc.pid)
    try:
        _read_until(proc, lines, "ok   the server answers")  # the HTTP server runs in pod-a
        pod_a = names[1]
        assert harness._run(["ip", "netns", "pids", pod_a]).stdout.split(), "no server in pod-a"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while harness._run(["ip", "netns", "pids", pod_a]).stdout.split():
            assert time.monotonic() < deadline, "the server outlived the killed demo"
            time.sleep(0.1)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for name in names:  # what a SIGKILLed demo cannot clean (its next run would)
            if name in harness.list_netns():
                harness.delete_netns(name)
        for d in _temp_dirs(proc.pid):
            shutil.rmtree(d)
    _assert_nothing_left(proc.pid)


def _bin_with_failing_flannel(directory: Path) -> Path:
    directory.mkdir()
    for entry in DIST.iterdir():
        if entry.name != "flannel":
            os.symlink(entry, directory / entry.name)
    fake = directory / "flannel"
    fake.write_text(
        "#!/bin/sh\n"
        'echo \'{"cniVersion":"0.3.1","code":11,"msg":"demo test: flannel refuses"}\'\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    return directory


def test_a_failing_plugin_fails_the_demo_and_cleans_up(tmp_path):
    before = harness.root_state()
    proc = _run_demo("--bin", str(_bin_with_failing_flannel(tmp_path / "bin")))
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert (
        'FAILED: cnitool add for pod-a exited 1: plugin type="flannel" failed (add): demo test: '
        'flannel refuses'
        in out
    )
    assert "cleaned up: namespaces deleted, servers stopped, temp dir removed." in out
    assert "demo passed" not in out
    pid = int(re.search(r"node netns\s+pycni-demo-node-(\d+)", out).group(1))
    _assert_nothing_left(pid)
    assert _root_changes(before, harness.root_state()) == []


def test_missing_build_is_reported_before_anything_is_made(tmp_path):
    netns_before = harness.list_netns()
    proc = _run_demo("--bin", str(tmp_path))
    assert proc.returncode == 2
    assert (
        f"cannot run the demo: {tmp_path} lacks cnitool, flannel, bridge, host-local, portmap "
        f"(run: make build)"
        in proc.stdout
    )
    assert [
        n for n in harness.list_netns() if n.startswith("pycni-demo-") and n not in netns_before
    ] == []


def test_deps_script_is_a_no_op_when_everything_is_present():
    """This machine has every dependency: --check says so and the install mode calls no apt."""
    env = {"PATH": harness.SAFE_PATH}
    check = subprocess.run(
        ["sh", str(DEPS), "--check"], capture_output=True, text=True, env=env, check=False
    )
    assert (check.returncode, check.stdout) == (
        0,
        "install-deps: everything the build and the demo need is present\n",
    ), check.stderr
    py = subprocess.run(
        ["sh", str(DEPS), "--print-python"], capture_output=True, text=True, env=env, check=True
    )
    name = py.stdout.strip()
    version = subprocess.run([name, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                             capture_output=True, text=True, env=env, check=True)
    assert version.stdout.strip() == "True"
    bad = subprocess.run(
        ["sh", str(DEPS), "--bogus"], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr
