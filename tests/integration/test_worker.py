"""The warm worker (on by default; plugins/worker/server.py, plugins/worker/client.py) with the
built executables.

Real executables from dist/bin, real namespaces, a worker directory per test (short, 0700, under
/tmp). Every worker a test caused is ended by pid (read from its lock file) at teardown.

What must hold: a call through the worker gives the same stdout and exit status as the same
call in-process; every call acts in its own caller's namespaces, also when many run at once and
when callers sit in different node namespaces; a worker of another build or environment, a dead
worker or an unsafe directory means in-process work, never a wrong or missing answer; a worker
that dies mid-call gives a CNI error instead of a hang; an idle worker goes away.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conformance import harness
from conformance.harness import Netns, run_plugin
from conformance.workers import alive as _alive
from conformance.workers import end as _kill
from conformance.workers import wait_accepting
from conformance.workers import worker_pids as _worker_pids

DIST = harness.REPO_ROOT / "dist" / "bin"

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module", autouse=True)
def _needs():
    for name in ("bridge", "host-local", "loopback", "flannel"):
        if not os.access(DIST / name, os.X_OK):
            pytest.skip(f"{DIST / name} not built (run `make build`)")
    info = DIST / "pycni-lib" / "BUILD-INFO"
    if info.exists() and not (DIST / "pycni-lib" / "plugins" / "worker" / "client.pyc").exists():
        pytest.skip("dist/bin predates the worker (run `make build`)")


@pytest.fixture
def wdir():
    """A private worker directory; the workers started in it are ended afterwards."""
    d = Path(tempfile.mkdtemp(prefix="pwt-", dir="/tmp"))
    try:
        yield d
    finally:
        _kill(_worker_pids(d))
        shutil.rmtree(d, ignore_errors=True)


def wenv(wdir: Path, **extra: str) -> dict[str, str]:
    """extra_env switching the worker on, with its directory, a log and the debug line."""
    return {
        "PYCNI_WORKER": "1",
        "PYCNI_WORKER_DIR": str(wdir),
        "PYCNI_WORKER_DEBUG": "1",
        "PYCNI_WORKER_LOG": str(wdir / "log"),
        "PYCNI_WORKER_IDLE": "60",
        "PYCNI_WORKER_PROCS": "1",  # one worker: deterministic; test_two_workers has two
        **extra,
    }


def wait_for_worker(wdir: Path, timeout: float = 20.0) -> None:
    """Until a live worker accepts on one of the sockets of `wdir`."""
    wait_accepting(wdir, timeout)


def wait_for_workers(wdir: Path, count: int, timeout: float = 20.0) -> None:
    """Until `count` workers are alive and as many sockets listen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(wdir.glob("*.sock"))) == count and len(_worker_pids(wdir)) == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"not {count} workers in {wdir}: {_worker_pids(wdir)}")


def served(r) -> bool:
    """True when the client's debug line says the worker ran the call."""
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("pycni worker: ")]
    assert len(lines) == 1, r.stderr
    return lines[0] == "pycni worker: served"


def no_worker_errors(wdir: Path) -> None:
    log = wdir / "log"
    assert not log.exists() or not log.read_text().strip(), log.read_text()


def bridge_conf(state, bridge="cni0", subnet="10.33.0.0/16") -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "wnet",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(state.networks)},
    }


def start_worker(node: Netns, pod: Netns, wdir: Path, state) -> None:
    """First call: in-process, starts the worker; returns once the worker listens."""
    conf = bridge_conf(state)
    kw = dict(netns=pod.path, in_netns=node, containerid="boot", extra_env=wenv(wdir))
    r = run_plugin(DIST / "bridge", "ADD", conf, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not served(r) and "no worker (starting one)" in r.stderr
    assert run_plugin(DIST / "bridge", "DEL", conf, **kw).returncode == 0
    wait_for_worker(wdir)


def pod_addr(pod: Netns) -> list[str]:
    out = pod.ip("-o", "-4", "addr", "show", "dev", "eth0", check=False).stdout
    return [line.split()[3] for line in out.splitlines()]


def strip_volatile(result: dict) -> dict:
    """The result without what differs between two pods (MACs, sandbox path, addresses)."""
    text = json.dumps(result)
    out = json.loads(text)
    for iface in out.get("interfaces", []):
        iface.pop("mac", None)
        iface.pop("sandbox", None)
        if iface.get("name", "").startswith("veth"):
            iface["name"] = "veth*"
    for ip in out.get("ips", []):
        ip["address"] = "*"
    return out


def test_calls_through_the_worker_match_in_process(node_ns, make_pod, state_dir, wdir):
    """ADD, CHECK, DEL, VERSION and errors: same stdout and status through the worker."""
    pod_w, pod_i = make_pod(), make_pod()
    start_worker(node_ns, pod_w, wdir, state_dir)
    conf = bridge_conf(state_dir)
    via = dict(in_netns=node_ns, extra_env=wenv(wdir))
    inproc = dict(in_netns=node_ns)
    rw = run_plugin(DIST / "bridge", "ADD", conf, netns=pod_w.path, containerid="w1", **via)
    ri = run_plugin(DIST / "bridge", "ADD", conf, netns=pod_i.path, containerid="i1", **inproc)
    assert served(rw)
    assert (rw.returncode, ri.returncode) == (0, 0), rw.stdout + ri.stdout
    assert strip_volatile(rw.result) == strip_volatile(ri.result)
    assert pod_addr(pod_w) == [rw.result["ips"][0]["address"]]
    prev = dict(conf, prevResult=rw.result)
    r = run_plugin(DIST / "bridge", "CHECK", prev, netns=pod_w.path, containerid="w1", **via)
    assert served(r) and r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    # errors: the same JSON and status
    bad = dict(conf, vlan=5000)  # refused (code 7) before anything is created
    for command in ("ADD", "DEL"):
        rw = run_plugin(DIST / "bridge", command, bad, netns=pod_w.path, containerid="w2", **via)
        ri = run_plugin(DIST / "bridge", command, bad, netns=pod_i.path, containerid="i2", **inproc)
        assert served(rw)
        assert (rw.returncode, rw.stdout) == (ri.returncode, ri.stdout)
    for stdin in (b"{not json", b""):
        rw = run_plugin(DIST / "bridge", "ADD", stdin, netns=pod_w.path, containerid="w3", **via)
        ri = run_plugin(DIST / "bridge", "ADD", stdin, netns=pod_i.path, containerid="i3", **inproc)
        assert (rw.returncode, rw.stdout) == (ri.returncode, ri.stdout)
    rw = run_plugin(DIST / "bridge", "VERSION", {"cniVersion": "0.4.0"}, **via)
    ri = run_plugin(DIST / "bridge", "VERSION", {"cniVersion": "0.4.0"}, **inproc)
    assert served(rw) and (rw.returncode, rw.stdout) == (ri.returncode, ri.stdout)
    for pod, cid, kw in ((pod_w, "w1", via), (pod_i, "i1", inproc)):
        r = run_plugin(DIST / "bridge", "DEL", conf, netns=pod.path, containerid=cid, **kw)
        assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    assert pod_addr(pod_w) == [] and pod_addr(pod_i) == []
    no_worker_errors(wdir)


def test_flannel_delegates_in_process_inside_the_worker(node_ns, make_pod, state_dir, wdir):
    pod = make_pod()
    start_worker(node_ns, make_pod(), wdir, state_dir)
    state_dir.subnet_env.write_text(
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    )
    conf = {
        "cniVersion": "0.3.1",
        "name": "cbr0",
        "type": "flannel",
        "subnetFile": str(state_dir.subnet_env),
        "dataDir": str(state_dir.flannel),
        "ipam": {"dataDir": str(state_dir.networks)},
        "delegate": {"bridge": "cni9", "hairpinMode": True, "isDefaultGateway": True},
    }
    kw = dict(netns=pod.path, containerid="f1", in_netns=node_ns, extra_env=wenv(wdir))
    r = run_plugin(DIST / "flannel", "ADD", conf, **kw)
    assert served(r) and r.returncode == 0, r.stdout + r.stderr
    assert pod_addr(pod) == [r.result["ips"][0]["address"]]
    assert r.result["ips"][0]["address"].startswith("10.244.7.")
    r = run_plugin(DIST / "flannel", "DEL", conf, **kw)
    assert served(r) and r.returncode == 0, r.stdout + r.stderr
    assert pod_addr(pod) == []
    no_worker_errors(wdir)


def test_concurrent_calls_each_act_in_their_own_pod(node_ns, make_pod, state_dir, wdir):
    n = int(os.environ.get("WORKER_TEST_PODS", "16"))
    pods = [make_pod() for _ in range(n)]
    start_worker(node_ns, pods[0], wdir, state_dir)
    conf = bridge_conf(state_dir)
    results: dict[int, object] = {}

    def call(i: int, command: str) -> None:
        results[i] = run_plugin(
            DIST / "bridge", command, conf, netns=pods[i].path, containerid=f"c{i}",
            in_netns=node_ns, extra_env=wenv(wdir),
        )

    for command in ("ADD", "DEL"):
        results.clear()
        threads = [threading.Thread(target=call, args=(i, command)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(n):
            r = results[i]
            assert r.returncode == 0, r.stdout + r.stderr
            assert served(r), r.stderr
            if command == "ADD":
                assert pod_addr(pods[i]) == [r.result["ips"][0]["address"]], i
        if command == "ADD":
            addrs = {results[i].result["ips"][0]["address"] for i in range(n)}
            assert len(addrs) == n
            veths = node_ns.ip("-o", "link", "show", "type", "veth").stdout.splitlines()
            assert len(veths) == n
    assert all(pod_addr(p) == [] for p in pods)
    assert node_ns.ip("-o", "link", "show", "type", "veth").stdout.strip() == ""
    assert [p.name for p in (state_dir.networks / "wnet").iterdir() if p.name[0].isdigit()] == []
    no_worker_errors(wdir)


def test_callers_in_two_node_namespaces_share_one_worker(make_pod, state_dir, wdir):
    node_a, node_b = make_pod("node", lo_up=True), make_pod("node", lo_up=True)
    pod_a, pod_b = make_pod(), make_pod()
    start_worker(node_a, make_pod(), wdir, state_dir)
    conf = bridge_conf(state_dir, bridge="cni5")
    for node, pod, cid in ((node_a, pod_a, "a"), (node_b, pod_b, "b")):
        r = run_plugin(DIST / "bridge", "ADD", conf, netns=pod.path, containerid=cid,
                       in_netns=node, extra_env=wenv(wdir))
        assert served(r) and r.returncode == 0, r.stdout + r.stderr
        host_veth = [i["name"] for i in r.result["interfaces"] if i["name"].startswith("veth")][0]
        assert node.ip("link", "show", host_veth, check=False).returncode == 0
        assert node.ip("link", "show", "cni5", check=False).returncode == 0
    assert len(_worker_pids(wdir)) == 1
    for node, pod, cid in ((node_a, pod_a, "a"), (node_b, pod_b, "b")):
        r = run_plugin(DIST / "bridge", "DEL", conf, netns=pod.path, containerid=cid,
                       in_netns=node, extra_env=wenv(wdir))
        assert served(r) and r.returncode == 0
    no_worker_errors(wdir)


def test_dead_worker_means_in_process_and_a_new_worker(node_ns, make_pod, state_dir, wdir):
    pod = make_pod()
    start_worker(node_ns, pod, wdir, state_dir)
    (old,) = _worker_pids(wdir)
    _kill([old], signal.SIGKILL)
    assert list(wdir.glob("*.sock")), "a killed worker leaves its socket file"
    conf = bridge_conf(state_dir)
    kw = dict(netns=pod.path, containerid="d1", in_netns=node_ns, extra_env=wenv(wdir))
    r = run_plugin(DIST / "bridge", "ADD", conf, **kw)
    assert r.returncode == 0 and not served(r), r.stdout + r.stderr
    wait_for_worker(wdir)
    assert _worker_pids(wdir) != [old]
    r = run_plugin(DIST / "bridge", "DEL", conf, **kw)
    assert r.returncode == 0 and served(r)


def test_worker_dying_mid_call_is_an_error_not_a_hang(node_ns, make_pod, state_dir, wdir):
    pod = make_pod()
    start_worker(node_ns, pod, wdir, state_dir)
    (pid,) = _worker_pids(wdir)
    conf = {  # flannel waits for a subnet.env that never comes: a call that takes a while
        "cniVersion": "1.0.0", "name": "slow", "type": "flannel", "subnetFileWait": 20,
        "subnetFile": str(state_dir.subnet_env), "dataDir": str(state_dir.flannel),
    }
    threading.Timer(1.5, lambda: _kill([pid], signal.SIGKILL)).start()
    start = time.monotonic()
    r = run_plugin(DIST / "flannel", "ADD", conf, netns=pod.path, containerid="m1",
                   in_netns=node_ns, extra_env=wenv(wdir), timeout=30)
    assert time.monotonic() - start < 10
    assert r.returncode == 1 and r.result["code"] == 999, r.stdout
    assert "worker ended before answering" in r.result["msg"]


def test_refusals_mean_in_process(node_ns, make_pod, state_dir, wdir):
    """Another environment gets its own worker; another build is refused; an unsafe dir is
    unused."""
    pod = make_pod()
    start_worker(node_ns, pod, wdir, state_dir)
    conf = bridge_conf(state_dir)
    r = run_plugin(DIST / "bridge", "VERSION", conf, extra_env=wenv(wdir, LANG="C.UTF-8"))
    assert r.returncode == 0 and not served(r) and "no worker" in r.stderr
    wait_for_workers(wdir, 2)
    # a request naming another build, straight through the protocol
    from plugins.worker import protocol

    sock_path = sorted(wdir.glob("*.sock"), key=os.path.getmtime)[0]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(str(sock_path))
    req = protocol.encode_request(
        "bridge", "0:0:0:0", wenv(wdir) | {"PATH": harness.SAFE_PATH}
    )
    s.sendmsg([req], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, (0).to_bytes(4, "little") * 2)])
    assert s.recv(4096) == b"R"  # no reason for a prober: it goes to the worker's log
    s.close()
    assert "another build" in (wdir / "log").read_text()
    # a directory others can write to is not used
    unsafe = Path(tempfile.mkdtemp(prefix="pwu-", dir="/tmp"))
    try:
        os.chmod(unsafe, 0o777)
        r = run_plugin(DIST / "bridge", "VERSION", conf, extra_env=wenv(unsafe))
        assert r.returncode == 0 and "in-process: no usable worker directory" in r.stderr
        assert not list(unsafe.glob("*.sock"))
    finally:
        shutil.rmtree(unsafe)


def test_replaced_executable_means_a_new_worker(node_ns, make_pod, state_dir, wdir, tmp_path):
    """An upgrade (the executable replaced by a new file) never reaches the old worker."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(DIST / "pycni-lib", bindir / "pycni-lib")
    shutil.copy2(DIST / "bridge", bindir / "bridge")
    os.link(bindir / "bridge", bindir / "host-local")
    pod = make_pod()
    conf = bridge_conf(state_dir)
    kw = dict(netns=pod.path, in_netns=node_ns, extra_env=wenv(wdir))
    r = run_plugin(bindir / "bridge", "ADD", conf, containerid="u1", **kw)
    assert r.returncode == 0 and "starting one" in r.stderr, r.stderr
    wait_for_worker(wdir)
    (old,) = _worker_pids(wdir)
    assert served(run_plugin(bindir / "bridge", "DEL", conf, containerid="u1", **kw))
    # upgrade: a new file under the same names
    new = bindir / "bridge.new"
    shutil.copy2(DIST / "bridge", new)
    os.utime(new, ns=(time.time_ns(), time.time_ns()))
    os.rename(new, bindir / "bridge")
    os.unlink(bindir / "host-local")
    os.link(bindir / "bridge", bindir / "host-local")
    r = run_plugin(bindir / "bridge", "ADD", conf, containerid="u2", **kw)
    assert r.returncode == 0 and not served(r), r.stderr  # nothing sent to the old build's worker
    deadline = time.monotonic() + 20  # the resident notices it is stale and leaves
    while _alive(old) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(old), "the old build's resident worker did not retire"
    assert run_plugin(bindir / "bridge", "DEL", conf, containerid="u2", **kw).returncode == 0
    deadline = time.monotonic() + 20  # a call now starts the new build's resident worker
    while not served(run_plugin(bindir / "bridge", "VERSION", conf, **kw)):
        assert time.monotonic() < deadline, "the new build's worker never served a call"
        time.sleep(0.2)
    assert (wdir / "pycni.sock").exists() and old not in _worker_pids(wdir)


def test_worker_is_the_default_and_off_switches(node_ns, make_pod, state_dir, wdir):
    """No PYCNI_WORKER at all: the first call starts the worker, the next is served by it, and
    the worker shows as pycni-worker in ps. PYCNI_WORKER=0/false/no/off (any case): in-process,
    no worker touched. No or an unknown CNI_COMMAND never starts one."""
    pod = make_pod()
    conf = bridge_conf(state_dir)
    default = {k: v for k, v in wenv(wdir).items() if k != "PYCNI_WORKER"}
    kw = dict(netns=pod.path, in_netns=node_ns, containerid="d1")
    for command in (None, "NOSUCH"):
        r = run_plugin(
            DIST / "bridge", command, conf, extra_env={**default, "PYCNI_WORKER": None}, **kw
        )
        assert r.returncode != 0 or command is None, r.stdout
        assert "pycni worker:" not in r.stderr
    assert not list(wdir.iterdir()), "a call without a CNI command touched the worker directory"
    r = run_plugin(
        DIST / "bridge", "VERSION", conf, extra_env={**default, "PYCNI_WORKER": None}, **kw
    )
    assert r.returncode == 0 and "no worker (starting one)" in r.stderr, r.stderr
    wait_for_worker(wdir)
    (pid,) = _worker_pids(wdir)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"pycni-worker"
    r = run_plugin(DIST / "bridge", "ADD", conf, extra_env={**default, "PYCNI_WORKER": None}, **kw)
    assert r.returncode == 0 and served(r), r.stdout + r.stderr
    for off in ("0", "false", "No", "OFF"):
        v = run_plugin(
            DIST / "bridge", "VERSION", conf, extra_env={**default, "PYCNI_WORKER": off}, **kw
        )
        assert v.returncode == 0 and "pycni worker:" not in v.stderr, (off, v.stderr)
    r = run_plugin(DIST / "bridge", "DEL", conf, extra_env={**default, "PYCNI_WORKER": None}, **kw)
    assert r.returncode == 0 and served(r), r.stdout + r.stderr
    assert _worker_pids(wdir) == [pid]
    no_worker_errors(wdir)


def test_no_worker_is_started_past_the_directory_cap(wdir):
    """MAX_LIVE_WORKERS live workers in the directory (any build or environment: here lock files
    held as a worker holds its own): a call that finds no worker of its own runs in-process and
    starts none. Once they are gone, the next call starts one."""
    import fcntl

    from plugins.worker.spawn import MAX_LIVE_WORKERS

    held = []
    try:
        for i in range(MAX_LIVE_WORKERS):
            fd = os.open(wdir / f"w-{i:016x}-0.sock.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.append(fd)
        r = run_plugin(DIST / "loopback", "VERSION", {"cniVersion": "1.0.0"}, extra_env=wenv(wdir))
        assert r.returncode == 0 and f"already {MAX_LIVE_WORKERS} in the directory" in r.stderr, (
            r.stderr
        )
        time.sleep(0.5)
        assert _worker_pids(wdir) == [] and not list(wdir.glob("*.sock"))
    finally:
        for fd in held:
            os.close(fd)
    r = run_plugin(DIST / "loopback", "VERSION", {"cniVersion": "1.0.0"}, extra_env=wenv(wdir))
    assert r.returncode == 0 and "no worker (starting one)" in r.stderr, r.stderr
    wait_for_worker(wdir)


def test_idle_worker_goes_away(node_ns, make_pod, state_dir, wdir):
    """The resident worker a call starts stays past the idle time; with the opt-out
    (PYCNI_WORKER_RESIDENT=0 in the caller's environment) it leaves when idle."""
    pod = make_pod()
    conf = bridge_conf(state_dir)
    kw = dict(netns=pod.path, in_netns=node_ns, extra_env=wenv(wdir, PYCNI_WORKER_IDLE="1"))
    assert run_plugin(DIST / "bridge", "VERSION", conf, **kw).returncode == 0
    wait_for_worker(wdir)
    (resident,) = _worker_pids(wdir)
    time.sleep(3)
    assert _alive(resident), "the resident worker left when idle"
    _kill([resident])
    kw["extra_env"] = wenv(wdir, PYCNI_WORKER_IDLE="1", PYCNI_WORKER_RESIDENT="0")
    assert run_plugin(DIST / "bridge", "ADD", conf, containerid="i1", **kw).returncode == 0
    wait_for_worker(wdir)
    (pid,) = _worker_pids(wdir)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert not list(wdir.glob("*.sock"))
    assert run_plugin(DIST / "bridge", "DEL", conf, containerid="i1", **kw).returncode == 0


def test_closed_stdin_is_handled_in_process(node_ns, make_pod, state_dir, wdir):
    pod = make_pod()
    start_worker(node_ns, pod, wdir, state_dir)
    env = harness.plugin_env("ADD", netns=pod.path, cni_path=str(DIST), extra_env=wenv(wdir))
    outs = []
    for extra in ({}, {"PYCNI_WORKER": "0"}):
        proc = node_ns.exec(
            "sh", "-c", f"exec {DIST / 'bridge'} <&-", env={**env, **extra}, check=False
        )
        outs.append((proc.returncode, proc.stdout))
    assert outs[0] == outs[1] and outs[0][0] == 1 and '"code": 5' in outs[0][1]


def test_two_workers_share_a_burst(node_ns, make_pod, state_dir, wdir):
    """PYCNI_WORKER_PROCS=2: a serial caller brings up only the resident worker; a burst that
    finds it busy starts the second, and every call of the burst is served correctly."""
    n = 12
    pods = [make_pod() for _ in range(n)]
    conf = bridge_conf(state_dir)
    env = wenv(wdir, PYCNI_WORKER_PROCS="2")
    for _ in range(3):  # the first starts the resident worker; serial calls start no other
        assert run_plugin(DIST / "bridge", "VERSION", conf, extra_env=env).returncode == 0
        wait_for_worker(wdir)
    assert [p.name for p in wdir.glob("*.sock")] == ["pycni.sock"]
    results: dict[int, object] = {}

    def call(i: int, command: str) -> None:
        results[i] = run_plugin(
            DIST / "bridge",
            command,
            conf,
            netns=pods[i].path,
            containerid=f"t{i}",
            in_netns=node_ns,
            extra_env=env,
        )

    for command in ("ADD", "DEL"):
        threads = [threading.Thread(target=call, args=(i, command)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(results[i].returncode == 0 and served(results[i]) for i in range(n)), [
            results[i].stderr for i in range(n)
        ]
        if command == "ADD":
            assert len({results[i].result["ips"][0]["address"] for i in range(n)}) == n
            assert all(
                pod_addr(pods[i]) == [results[i].result["ips"][0]["address"]] for i in range(n)
            )
            wait_for_workers(wdir, 2)  # the burst found the resident busy and started the second
    assert all(pod_addr(p) == [] for p in pods)
    no_worker_errors(wdir)


def test_caller_with_fewer_privileges_is_not_served(node_ns, make_pod, state_dir, wdir):
    """A caller must not borrow the worker's capabilities: a narrower bounding set is refused."""
    start_worker(node_ns, make_pod(), wdir, state_dir)
    setpriv = shutil.which("setpriv", path=harness.SAFE_PATH)
    if setpriv is None:
        pytest.skip(harness.missing_reason("setpriv", "util-linux"))
    env = harness.plugin_env("VERSION", extra_env=wenv(wdir))
    proc = node_ns.exec(setpriv, "--bounding-set=-net_raw", str(DIST / "bridge"),
                        input='{"cniVersion": "1.0.0"}', env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "pycni worker: in-process: refused" in proc.stderr
    assert "other privileges" in (wdir / "log").read_text()
    proc = node_ns.exec(str(DIST / "bridge"), input='{"cniVersion": "1.0.0"}', env=env, check=False)
    assert "pycni worker: served" in proc.stderr


def test_worker_retires_at_max_age_and_a_successor_takes_over(node_ns, make_pod, state_dir, wdir):
    """PYCNI_WORKER_MAX_AGE: a busy (non-resident) worker still retires; every call meanwhile
    succeeds."""
    env = wenv(wdir, PYCNI_WORKER_MAX_AGE="2", PYCNI_WORKER_RESIDENT="0")
    conf = {"cniVersion": "1.0.0", "name": "v", "type": "bridge"}
    seen: set[int] = set()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and len(seen) < 2:
        r = run_plugin(DIST / "bridge", "VERSION", conf, extra_env=env)
        assert r.returncode == 0 and '"supportedVersions"' in r.stdout, r.stdout + r.stderr
        seen.update(_worker_pids(wdir))
        time.sleep(0.2)
    assert len(seen) >= 2, f"no successor worker seen: {seen}"
    no_worker_errors(wdir)


def _client_pids(container_id: str, command: str) -> list[int]:
    """Processes whose environment says they are the plugin call (command, container ID)."""
    want = {f"CNI_COMMAND={command}".encode(), f"CNI_CONTAINERID={container_id}".encode()}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= env:
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("del_path", ["worker", "in-process"])
def test_del_after_a_killed_client_waits_for_its_call(del_path, node_ns, make_pod, state_dir, wdir):
    """A runtime kills a plugin at its timeout and then DELs. Killing a client does not stop its
    call in the worker, so that DEL must wait for the call instead of finding nothing to undo
    while the ADD goes on to configure the pod: afterwards nothing of the pod is left. The same
    when the DEL runs in-process (PYCNI_WORKER=0 here; likewise a refused or retiring worker):
    it takes the same attachment lock (docs/worker-threat-model.md, defence 5)."""
    pod = make_pod()
    start_worker(node_ns, make_pod(), wdir, state_dir)
    conf = {  # flannel waits for subnet.env: the ADD stays in the worker until it is written
        "cniVersion": "1.0.0", "name": "cbr0", "type": "flannel", "subnetFileWait": 20,
        "subnetFile": str(state_dir.subnet_env), "dataDir": str(state_dir.flannel),
        "ipam": {"dataDir": str(state_dir.networks)}, "delegate": {"bridge": "cni9"},
    }
    kw = dict(netns=pod.path, containerid="k1", in_netns=node_ns, extra_env=wenv(wdir), timeout=40)
    results: dict[str, object] = {}
    add = threading.Thread(
        target=lambda: results.update(add=run_plugin(DIST / "flannel", "ADD", conf, **kw))
    )
    add.start()
    deadline = time.monotonic() + 10
    while not (pids := _client_pids("k1", "ADD")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pids, "the ADD client never started"
    time.sleep(0.5)  # accepted by the worker, which now waits for subnet.env
    _kill(pids, signal.SIGKILL)
    add.join(10)
    if del_path == "in-process":
        kw["extra_env"] = wenv(wdir, PYCNI_WORKER="0")
    dele = threading.Thread(
        target=lambda: results.update(dele=run_plugin(DIST / "flannel", "DEL", conf, **kw))
    )
    dele.start()
    dele.join(1.5)
    assert dele.is_alive(), f"DEL did not wait for the killed ADD: {results.get('dele')}"
    state_dir.subnet_env.write_text(
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    )
    dele.join(30)
    r = results["dele"]
    via_worker = "pycni worker: served" in r.stderr
    assert r.returncode == 0 and via_worker == (del_path == "worker"), r.stdout + r.stderr
    assert pod_addr(pod) == [] and not pod.ip("link", "show", "eth0", check=False).returncode == 0
    assert not [p for p in state_dir.networks.rglob("*") if p.is_file() and p.name[0].isdigit()]
    assert not (state_dir.flannel / "k1").exists()
    assert "veth" not in node_ns.ip("-o", "link", "show").stdout
    no_worker_errors(wdir)


def test_delegate_of_another_build_does_not_wait_for_the_callers_lock(
    node_ns, make_pod, state_dir, wdir, tmp_path
):
    """flannel (through its worker, holding the attachment's lock) executes a bridge that is
    another file (a copy, or a new build mid-upgrade), whose own worker serves it: that call
    must not wait for the lock its caller holds (it would wait for ever)."""
    copy = tmp_path / "other"
    copy.mkdir()
    shutil.copy2(DIST / "bridge", copy / "bridge")  # another inode: executed, not in-process
    os.symlink(DIST / "pycni-lib", copy / "pycni-lib")
    start_worker(node_ns, make_pod(), wdir, state_dir)
    state_dir.subnet_env.write_text(
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.8.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    )
    conf = {
        "cniVersion": "1.0.0", "name": "cbr0", "type": "flannel",
        "subnetFile": str(state_dir.subnet_env), "dataDir": str(state_dir.flannel),
        "ipam": {"dataDir": str(state_dir.networks)}, "delegate": {"bridge": "cni9"},
    }
    for i in range(2):  # the first round starts the copy's worker, the second goes through it
        if i == 1:
            wait_for_workers(wdir, 2)
        pod = make_pod()
        kw = dict(netns=pod.path, containerid=f"d{i}", in_netns=node_ns, cni_path=f"{copy}:{DIST}",
                  extra_env=wenv(wdir), timeout=30)
        r = run_plugin(DIST / "flannel", "ADD", conf, **kw)
        assert r.returncode == 0 and "pycni worker: served" in r.stderr, r.stdout + r.stderr
        assert pod_addr(pod) == [r.result["ips"][0]["address"]]
        r = run_plugin(DIST / "flannel", "DEL", conf, **kw)
        assert r.returncode == 0 and pod_addr(pod) == [], r.stdout + r.stderr
    no_worker_errors(wdir)
