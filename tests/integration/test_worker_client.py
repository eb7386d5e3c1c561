"""The client side of the warm worker (plugins/worker/client.py, plugins/multicall.py,
plugins/worker/attachment.py) with the built executables.

What must hold (docs/worker-threat-model.md): the client checks the server before it sends anything,
so a process that replaced a worker's socket gets nothing and the call runs in-process with the
right result (the client's side); an in-process call takes the same attachment lock as a worker, so
a DEL that runs in-process waits for an ADD a worker is finishing (defence 5: tests/test_worker.py,
test_del_after_a_killed_client_waits_for_its_call[in-process]) and a delegate it executes presents
that lock instead of waiting for it; a worker a call starts holds nothing of that call (descriptors,
working directory, OOM score) and starts at a lower priority (defence 8); a call that finds no
worker starts at most one, the resident one, in the background; a relative PYCNI_WORKER_DIR is not
used.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conformance import harness
from conformance.harness import run_plugin
from conformance.workers import worker_pids as _worker_pids
from plugins.worker import protocol
from plugins.worker.attachment import stripe_name as attachment_stripe
from tests.integration.test_worker import (
    DIST,
    _needs,  # noqa: F401 - module fixture: skips without a build
    bridge_conf,
    pod_addr,
    served,
    wait_for_worker,
    wdir,  # noqa: F401 - fixture
    wenv,
)

pytestmark = pytest.mark.netns


def test_stable_env_compares_only_what_the_suite_and_its_tools_read():
    base = {"PATH": "/usr/sbin:/usr/bin", "LANG": "C.UTF-8", "HOME": "/root", "CNI_COMMAND": "ADD"}
    other = dict(base, HOME="/var/lib/containerd", INVOCATION_ID="x", CNI_COMMAND="DEL",
                 PYCNI_WORKER_SERVE="/run/pycni/pycni.sock", PYCNI_WORKER_RESIDENT="1")
    assert protocol.stable_env(base) == protocol.stable_env(other) == [
        ("LANG", "C.UTF-8"), ("PATH", "/usr/sbin:/usr/bin")
    ]
    for key, value in (("PATH", "/bin"), ("LC_ALL", "C"), ("XTABLES_LOCKFILE", "/tmp/x")):
        assert protocol.stable_env(dict(base, **{key: value})) != protocol.stable_env(base), key


def test_relative_worker_dir_is_not_used(tmp_path):
    env = dict(wenv(Path("rel")), PYCNI_WORKER_DIR="rel/pycni")
    proc = subprocess.run(
        [str(DIST / "loopback")], input=b'{"cniVersion": "1.0.0"}', capture_output=True,
        env=harness.plugin_env("VERSION", extra_env=env), cwd=tmp_path, check=False,
    )
    assert proc.returncode == 0 and b'"supportedVersions"' in proc.stdout
    assert b"pycni worker: in-process: no usable worker directory" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_cold_call_starts_one_resident_worker(node_ns, make_pod, state_dir, wdir):  # noqa: F811
    """No worker up, PYCNI_WORKER_PROCS=4: the call runs in-process and starts exactly one
    worker, on the resident socket, marked resident; the call's result is the in-process one."""
    pod = make_pod()
    conf = bridge_conf(state_dir)
    env = wenv(wdir, PYCNI_WORKER_PROCS="4")
    kw = dict(netns=pod.path, containerid="c1", in_netns=node_ns, extra_env=env)
    r = run_plugin(DIST / "bridge", "ADD", conf, **kw)
    assert r.returncode == 0 and "in-process: no worker (starting one)" in r.stderr, r.stderr
    assert pod_addr(pod) == [r.result["ips"][0]["address"]]
    wait_for_worker(wdir)
    time.sleep(0.5)
    (pid,) = _worker_pids(wdir)
    assert [p.name for p in wdir.glob("*.sock")] == ["pycni.sock"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"PYCNI_WORKER_RESIDENT=1" in environ
    assert f"PYCNI_WORKER_SERVE={wdir}/pycni.sock".encode() in environ
    assert not [e for e in environ if e.startswith(b"CNI_")]
    r = run_plugin(DIST / "bridge", "DEL", conf, **kw)
    assert r.returncode == 0 and served(r), r.stderr
    assert pod_addr(pod) == [] and _worker_pids(wdir) == [pid]


def test_spawned_worker_holds_nothing_of_its_caller(wdir, tmp_path):  # noqa: F811
    """docs/worker-threat-model.md, defence 8: the caller holds an flock and a pipe's write end
    (both inheritable), runs in its own working directory with oom_score_adj -999; the worker its
    call starts holds neither descriptor (the flock can be taken, the pipe reaches EOF), works in /,
    has oom_score_adj 0, and starts at a positive niceness (back to 0 once it listens)."""
    lock_path = tmp_path / "caller.lock"
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    read_end, write_end = os.pipe()
    os.set_inheritable(lock_fd, True)
    os.set_inheritable(write_end, True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = harness.plugin_env("VERSION", extra_env=wenv(wdir))
    # containerd runs at -999; without CAP_SYS_RESOURCE (some sandboxes) any other value shows it
    script = (f"{{ echo -999 > /proc/self/oom_score_adj || echo 500 > /proc/self/oom_score_adj; }}"
              f" 2>/dev/null; exec {DIST / 'loopback'}")
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", script], input=b'{"cniVersion": "1.0.0"}', capture_output=True,
            env=env, cwd=cwd, pass_fds=(lock_fd, write_end), check=False, timeout=30,
        )
        assert proc.returncode == 0 and b"no worker (starting one)" in proc.stderr, proc.stderr
        deadline = time.monotonic() + 20
        while not (pids := _worker_pids(wdir)) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert pids, "no worker started"
        (pid,) = pids
        start_nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        os.close(write_end)
        write_end = -1
        os.close(lock_fd)
        lock_fd = -1
        assert start_nice > 0, start_nice
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "0"
        targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert str(lock_path) not in targets and str(cwd) not in targets, targets
        os.set_blocking(read_end, False)
        deadline = time.monotonic() + 5
        while True:  # EOF: no process holds the write end any more
            try:
                assert os.read(read_end, 1) == b""
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the worker holds the caller's pipe"
                time.sleep(0.05)
        probe = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds the caller's flock
        finally:
            os.close(probe)
        wait_for_worker(wdir)
        deadline = time.monotonic() + 5
        while int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) != 0:
            assert time.monotonic() < deadline, "the worker stayed at a lowered priority"
            time.sleep(0.05)
    finally:
        for fd in (lock_fd, write_end, read_end):
            if fd >= 0:
                os.close(fd)


SQUATTER = textwrap.dedent("""
    import os, socket, sys
    path, record = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.listen(16)
    with open(record, "a") as f:
        f.write("listening\\n")
    while True:
        conn, _ = s.accept()
        msg, anc, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(64))
        with open(record, "a") as f:
            f.write(f"got {len(msg)} bytes {len(anc)} ancillary\\n")
        conn.sendall(b"A") if msg else None
        conn.close()
""")


def _traced_unix_sends(trace: Path) -> list[str]:
    """sendmsg calls on unix sockets in an `strace -f -yy` output file."""
    return [ln for ln in trace.read_text().splitlines() if "sendmsg(" in ln and "UNIX" in ln]


def _wait_listening(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(str(path))
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise AssertionError(f"nothing listens on {path}")


def _traced_add(node_ns, pod, state_dir, wdir, trace: Path, cid: str):  # noqa: F811
    """A bridge ADD under strace (its sendmsg calls recorded in `trace`); the CompletedProcess."""
    strace = shutil.which("strace", path=harness.SAFE_PATH)
    if strace is None:
        pytest.skip(harness.missing_reason("strace", "strace"))
    env = harness.plugin_env("ADD", netns=pod.path, containerid=cid, cni_path=str(DIST),
                             extra_env=wenv(wdir))
    # not -f: the worker the call may start must not be traced (strace would wait for it)
    proc = node_ns.exec(strace, "-qq", "-yy", "-e", "trace=sendmsg", "-o", str(trace),
                        str(DIST / "bridge"), input=json.dumps(bridge_conf(state_dir)), env=env,
                        check=False)
    return proc


@pytest.mark.parametrize("squatter", ["another executable", "uid 0 without capabilities",
                                      "pid 1 of its own pid namespace"])
def test_socket_squatter_gets_nothing(squatter, node_ns, make_pod, state_dir, wdir, tmp_path):  # noqa: F811
    """docs/worker-threat-model.md, the client's side: whatever listens on the resident socket and
    is not a worker of this build with at least the client's capabilities is sent nothing (no
    request, no descriptor), and the call runs in-process with the right result."""
    sock = wdir / "pycni.sock"
    record = tmp_path / "record"
    if squatter == "another executable":
        proc = subprocess.Popen([sys.executable, "-c", SQUATTER, str(sock), str(record)])
    elif squatter == "pid 1 of its own pid namespace":  # init passes only in the client's own
        unshare = shutil.which("unshare", path=harness.SAFE_PATH)
        if unshare is None:
            pytest.skip(harness.missing_reason("unshare", "util-linux"))
        proc = subprocess.Popen([unshare, "--pid", "--fork", "--kill-child", sys.executable, "-c",
                                 SQUATTER, str(sock), str(record)])
    else:  # the very executable, serving as a worker, but with every capability dropped
        setpriv = shutil.which("setpriv", path=harness.SAFE_PATH)
        if setpriv is None:
            pytest.skip(harness.missing_reason("setpriv", "util-linux"))
        env = dict(wenv(wdir), PATH=harness.SAFE_PATH, PYCNI_WORKER_SERVE=str(sock),
                   PYCNI_WORKER_RESIDENT="1")
        proc = subprocess.Popen(
            [setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
             str(DIST / "loopback")], env=env, stdin=subprocess.DEVNULL,
        )
    try:
        _wait_listening(sock)
        pod = make_pod()
        trace = tmp_path / "trace"
        r = _traced_add(node_ns, pod, state_dir, wdir, trace, "sq1")
        assert r.returncode == 0, r.stdout + r.stderr
        reason = "fewer capabilities" if "capabilities" in squatter else "another executable"
        assert f"server not trusted ({reason}); nothing sent" in r.stderr, r.stderr
        assert _traced_unix_sends(trace) == [], "the client sent something over a unix socket"
        result = json.loads(r.stdout)
        assert pod_addr(pod) == [result["ips"][0]["address"]]
        if "capabilities" not in squatter:
            assert "got 0 bytes 0 ancillary" in record.read_text(), record.read_text()
            assert "got 0 bytes 0 ancillary" == record.read_text().splitlines()[-1]
        env = harness.plugin_env("DEL", netns=pod.path, containerid="sq1", cni_path=str(DIST),
                                 extra_env=wenv(wdir))
        d = node_ns.exec(str(DIST / "bridge"), input=json.dumps(bridge_conf(state_dir)), env=env,
                         check=False)
        assert d.returncode == 0 and pod_addr(pod) == [], d.stdout + d.stderr
    finally:
        proc.kill()
        proc.wait()


def test_in_process_delegate_presents_its_callers_lock(
    node_ns, make_pod, state_dir, wdir, tmp_path  # noqa: F811
):
    """flannel in-process (holding the attachment lock) executes a bridge that is another file,
    itself in-process: the bridge presents the lock its caller passed down instead of waiting
    for it, and the pod is set up and torn down."""
    copy = tmp_path / "other"
    copy.mkdir()
    shutil.copy2(DIST / "bridge", copy / "bridge")  # another inode: executed, not in-process
    os.symlink(DIST / "pycni-lib", copy / "pycni-lib")
    state_dir.subnet_env.write_text(
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    )
    conf = {
        "cniVersion": "1.0.0", "name": "cbr0", "type": "flannel",
        "subnetFile": str(state_dir.subnet_env), "dataDir": str(state_dir.flannel),
        "ipam": {"dataDir": str(state_dir.networks)}, "delegate": {"bridge": "cni9"},
    }
    pod = make_pod()
    kw = dict(netns=pod.path, containerid="p1", in_netns=node_ns, cni_path=f"{copy}:{DIST}",
              extra_env=wenv(wdir, PYCNI_WORKER="0"), timeout=20)
    start = time.monotonic()
    r = run_plugin(DIST / "flannel", "ADD", conf, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.monotonic() - start < 15
    assert pod_addr(pod) == [r.result["ips"][0]["address"]]
    r = run_plugin(DIST / "flannel", "DEL", conf, **kw)
    assert r.returncode == 0 and pod_addr(pod) == [], r.stdout + r.stderr
    assert list(wdir.glob("a-*.att")), "the in-process calls took no attachment lock"


def test_attachment_lock_unit(tmp_path):
    """acquire: bounded wait; the same stripe's held description is accepted, another file's or
    a fresh description of a held stripe is not; release of an inherited hold keeps the lock."""
    from plugins.worker import attachment, directory

    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    dirfd = directory.open_worker_dir(str(d), create=False)
    assert dirfd is not None
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "u1", "CNI_IFNAME": "eth0"}
    try:
        assert attachment.acquire(dirfd, {"CNI_COMMAND": "VERSION"}).fd is None
        held = attachment.acquire(dirfd, env, 1.0)
        assert held is not None and held.fd is not None
        assert attachment.exec_extras() == ((held.fd,), {"PYCNI_ATTACHMENT_FD": str(held.fd)})
        start = time.monotonic()
        assert attachment.acquire(dirfd, env, 0.3) is None  # another description: waits, gives up
        assert 0.25 <= time.monotonic() - start < 2
        stray = os.open(d / "stray", os.O_RDWR | os.O_CREAT, 0o600)
        fresh = os.open(d / attachment.stripe_name(env), os.O_RDWR)
        try:
            assert attachment.acquire(dirfd, env, 0.1, inherited=stray) is None
            assert attachment.acquire(dirfd, env, 0.1, inherited=fresh) is None
            child = attachment.acquire(dirfd, env, 0.1, inherited=held.fd)
            assert child is not None and child.inherited
            child.release()
            assert attachment.acquire(dirfd, env, 0.1) is None  # still held by `held`
        finally:
            os.close(stray)
            os.close(fresh)
        held.release()
        assert attachment.exec_extras() == ((), {"PYCNI_ATTACHMENT_FD": None})
        again = attachment.acquire(dirfd, env, 0.1)
        assert again is not None
        again.release()
    finally:
        os.close(dirfd)



def test_in_process_call_without_a_worker_directory_creates_none(tmp_path):
    """PYCNI_WORKER=0 and no worker directory: no worker can be running a call to wait for, so
    the in-process DEL takes no lock and creates nothing; with the directory, it locks in it."""
    missing = tmp_path / "absent"
    conf = {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}
    env = {"PYCNI_WORKER": "0", "PYCNI_WORKER_DIR": str(missing)}
    r = run_plugin(DIST / "loopback", "DEL", conf, containerid="nd1", extra_env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not missing.exists()
    missing.mkdir(mode=0o700)
    r = run_plugin(DIST / "loopback", "DEL", conf, containerid="nd1", extra_env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.name for p in missing.iterdir()] == [attachment_stripe({"CNI_CONTAINERID": "nd1",
                                                                     "CNI_IFNAME": "eth0"})]


def test_executed_delegate_gets_the_held_lock(tmp_path):
    """cni.invoke runs the hook the entry point registers: a delegate executed while the thread
    holds an attachment lock gets that descriptor and PYCNI_ATTACHMENT_FD naming it; without a
    held lock, a stale PYCNI_ATTACHMENT_FD is removed from its environment."""
    from cni import invoke
    from plugins.worker import attachment, directory

    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    script = tmp_path / "delegate"
    script.write_text(
        '#!/bin/sh\nreadlink "/proc/self/fd/${PYCNI_ATTACHMENT_FD:-none}" || echo none\n'
    )
    script.chmod(0o755)
    env = {"PATH": harness.SAFE_PATH, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "x1",
           "CNI_IFNAME": "eth0", "PYCNI_ATTACHMENT_FD": "77"}
    dirfd = directory.open_worker_dir(str(d), create=False)
    assert dirfd is not None
    invoke.set_exec_extras(attachment.exec_extras)
    try:
        held = attachment.acquire(dirfd, env, 1.0)
        assert held is not None
        try:
            out = invoke.exec_plugin(str(script), env, b"").decode().strip()
        finally:
            held.release()
        assert out == str(d / attachment.stripe_name(env))
        assert invoke.exec_plugin(str(script), env, b"").decode().strip() == "none"
    finally:
        invoke.set_exec_extras(None)
        os.close(dirfd)


def test_in_process_lock_wait_is_bounded(tmp_path):
    """A process holding an attachment's lock file (any uid-0 process can open it) delays an
    in-process DEL of that attachment by PYCNI_WORKER_LOCK_WAIT seconds at most: then CNI error
    11 (try again later), naming the attachment; once it lets go, the DEL succeeds."""
    from plugins.worker import attachment

    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    cid = "lw1"
    stripe = d / attachment.stripe_name({"CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0"})
    fd = os.open(stripe, os.O_RDWR | os.O_CREAT, 0o600)
    conf = {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}
    env = {"PYCNI_WORKER": "0", "PYCNI_WORKER_DIR": str(d), "PYCNI_WORKER_LOCK_WAIT": "0.5"}
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = time.monotonic()
        r = run_plugin(DIST / "loopback", "DEL", conf, containerid=cid, extra_env=env)
        assert time.monotonic() - start < 10
        assert r.returncode == 1 and r.result["code"] == 11, r.stdout + r.stderr
        assert f"container {cid} interface eth0" in r.result["msg"]
    finally:
        os.close(fd)
    r = run_plugin(DIST / "loopback", "DEL", conf, containerid=cid, extra_env=env)
    assert r.returncode == 0, r.stdout + r.stderr


INIT_LISTENER = textwrap.dedent("""
    # pid 1 of a fresh pid namespace, standing in for systemd: it owns the listening socket
    # (as systemd does for pycni-worker.socket), then runs a client in its namespace and, when
    # the client sends a request, answers it.
    import os, socket, subprocess, sys, json
    path, exe, wdir = sys.argv[1], sys.argv[2], sys.argv[3]
    assert os.getpid() == 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.listen(4)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYCNI_WORKER_DIR": wdir,
           "PYCNI_WORKER_DEBUG": "1", "PYCNI_WORKER_PROCS": "2", "CNI_COMMAND": "VERSION"}
    client = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
    conn, _ = s.accept()
    msg, anc, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(64))
    for level, kind, data in anc:  # close what was passed
        for i in range(0, len(data) - 3, 4):
            os.close(int.from_bytes(data[i:i + 4], sys.byteorder))
    if msg:
        conn.send(b"A")
        conn.send(b'O{"from": "init"}')
        conn.send(b"X\\x00")
    out, err = client.communicate(b'{"cniVersion": "1.0.0"}', timeout=20)
    print(json.dumps({"got": len(msg), "out": out.decode(), "err": err.decode(),
                      "rc": client.returncode}))
""")


@pytest.mark.parametrize("resident", [True, False])
def test_init_owns_only_the_resident_socket(resident, wdir):  # noqa: F811
    """systemd's socket: the listener belongs to init (pid 1), not to the worker behind it, so
    the client accepts pid 1 in its own pid namespace as the owner of the resident socket (root
    configured what runs there). A burst worker's socket owned by init is refused."""
    unshare = shutil.which("unshare", path=harness.SAFE_PATH)
    if unshare is None:
        pytest.skip(harness.missing_reason("unshare", "util-linux"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYCNI_WORKER_PROCS": "2"}
    name = "pycni.sock" if resident else protocol.socket_name(
        protocol.build_id(os.stat(DIST / "loopback")), env, 1)
    busy = os.open(wdir / "pycni.sock.busy", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not resident:  # the client tries a burst socket only when the resident is busy
            os.lockf(busy, os.F_LOCK, 0)
        proc = subprocess.run(
            [unshare, "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c",
             INIT_LISTENER, str(wdir / name), str(DIST / "loopback"), str(wdir)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        os.close(busy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["rc"] == 0, seen
    if resident:
        assert seen["got"] > 0, seen
        assert seen["out"] == '{"from": "init"}' and "pycni worker: served" in seen["err"], seen
    else:
        assert seen["got"] == 0 and '"supportedVersions"' in seen["out"], seen
        assert "server not trusted (another executable); nothing sent" in seen["err"], seen


def test_a_cold_call_does_not_wait_for_the_worker_it_starts(wdir):  # noqa: F811
    """The call that starts a worker answers in-process while the worker is still loading the
    plugins (≈150 ms of imports at lowered priority): when the call has returned, nothing
    accepts on the socket yet; the worker listens a little later."""
    from conformance.workers import accepting

    r = run_plugin(DIST / "loopback", "VERSION", {"cniVersion": "1.0.0"}, extra_env=wenv(wdir))
    listening_at_return = accepting(wdir)
    assert r.returncode == 0 and "no worker (starting one)" in r.stderr, r.stderr
    assert not listening_at_return, "the call returned only once its worker was listening"
    wait_for_worker(wdir)
