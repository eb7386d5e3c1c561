"""The warm worker's server gives no caller more than it already has (docs/worker-threat-model.md).

Each test reproduces an attack that one of the numbered defences of the threat model ("What the
worker defends against") names, against the built worker (dist/bin, real processes, real pid
namespace for the pid reuse): the worker must refuse, drop or bound what the attack abused. Workers
run in private directories and are ended by pid; calls that take attachment locks run from a process
inside a throwaway node namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conformance import harness
from tests import worker_testlib as wt

pytestmark = pytest.mark.netns
SETPRIV = shutil.which("setpriv", path=harness.SAFE_PATH)
UNSHARE = shutil.which("unshare", path=harness.SAFE_PATH)
# a uid-0 process with no capability at all, and no way to get one back by executing a file
CAPLESS = [
    SETPRIV or "setpriv",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all",
    "--",
]


@pytest.fixture(scope="module", autouse=True)
def _needs():
    if not os.access(wt.DIST / "bridge", os.X_OK):
        pytest.skip("dist/bin not built (run `make build`)")
    if not harness.is_root():
        pytest.skip("needs root")


def _caller(node, argv: list[str], prefix: list[str] = (), timeout: float = 40) -> list[str]:
    proc = node.exec(*prefix, *argv, env=wt.caller_env(), check=False, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _cni(replies: list[str]) -> tuple[int, dict]:
    """(exit status, stdout JSON) of an accepted call's replies."""
    assert replies[0] == "A", replies
    assert replies[-1][:1] == "X", replies
    out = "".join(m[1:] for m in replies[1:-1])
    return ord(replies[-1][1]), json.loads(out) if out else {}


# ---------------------------------------------------------------- defence 1: pid reuse

_PID_REUSE = textwrap.dedent(r"""
    import json, os, socket, struct, subprocess, sys, time
    dist, wdir, bid, env_json, capless = sys.argv[1:6]
    env = json.loads(env_json)
    sock = wdir + "/w-test.sock"
    worker = subprocess.Popen([dist + "/bridge"], env={**env, "PYCNI_WORKER_SERVE": sock},
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(sock)
            break
        except OSError:
            assert time.monotonic() < deadline, "no worker"
            time.sleep(0.05)
        finally:
            s.close()
    connect = ("import socket, sys\n"
               "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
               "s.connect(sys.argv[1])\n"
               "socket.send_fds(socket.socket(fileno=int(sys.argv[2])), [b'x'], [s.fileno()])\n")
    result = {"reused": False}
    for attempt in range(10):
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a = subprocess.Popen(json.loads(capless) + [sys.executable, "-c", connect, sock,
                             str(there.fileno())], pass_fds=[there.fileno()])
        _, fds, _, _ = socket.recv_fds(here, 16, 1)
        a.wait()  # the connecting process is gone and reaped: its pid number is free
        here.close(); there.close()
        conn = socket.socket(fileno=fds[0])
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(a.pid - 1))
        p = subprocess.Popen(["sleep", "60"])  # privileged, with every capability
        if p.pid != a.pid:
            p.kill(); p.wait(); conn.close()
            continue
        r, w = os.pipe()
        os.write(w, b'{"cniVersion": "1.0.0"}'); os.close(w)
        null = os.open("/dev/null", os.O_WRONLY)
        fields = [b"PYCNI-W1", b"bridge", bid.encode()]
        fields += [f"{k}={v}".encode() for k, v in {**env, "CNI_COMMAND": "VERSION"}.items()]
        conn.sendmsg([b"\0".join(fields)],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("2i", r, null))])
        conn.settimeout(20)
        try:
            first = conn.recv(65536).decode(errors="replace")
        except OSError as e:
            first = "error: " + str(e)
        result = {"reused": True, "first": first, "pid": a.pid}
        p.kill(); p.wait()
        break
    worker.kill(); worker.wait()
    print(json.dumps(result))
""")


@pytest.mark.skipif(UNSHARE is None or SETPRIV is None, reason="util-linux unshare/setpriv missing")
def test_pid_reuse_is_never_judged_as_the_new_owner(tmp_path):
    """Defence 1: a capability-less caller connects and exits, a privileged process takes its
    pid number (forced with ns_last_pid in a fresh pid namespace), then the connection carries
    a request. The worker must judge the process that connected (gone): no "A", never the call
    run as the privileged process."""
    wdir = Path(tempfile.mkdtemp(prefix="pws-", dir="/tmp"))
    try:
        script = tmp_path / "reuse.py"
        script.write_text(_PID_REUSE)
        env = {
            "PATH": harness.SAFE_PATH,
            "PYCNI_WORKER_LOG": str(wdir / "log"),
            "PYCNI_WORKER_IDLE": "30",
        }
        proc = subprocess.run(
            [UNSHARE, "--pid", "--fork", "--mount-proc", sys.executable, str(script), str(wt.DIST),
             str(wdir), wt.build_id(), json.dumps(env), json.dumps(CAPLESS)],
            capture_output=True, text=True, timeout=90, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["reused"], "could not make the pid number reused"
        assert result["first"] != "A", "the worker accepted a call by a dead caller's reused pid"
        assert result["first"] in ("R", ""), result
        assert "refused" in (wdir / "log").read_text()
    finally:
        shutil.rmtree(wdir, ignore_errors=True)  # the worker died with its pid namespace


# ---------------------------------------------------------------- defence 2: uid 0 is not enough

@pytest.mark.skipif(SETPRIV is None, reason="util-linux setpriv missing")
def test_capability_less_root_caller_is_refused(node_ns):
    """Defence 2: a uid-0 process without capabilities gets "R" (and nothing run), the reason
    in the worker's log only."""
    with wt.Served() as served:
        served.start()
        argv = wt.caller_argv(
            served.sock, served.call_env("VERSION"), stdin='{"cniVersion": "1.0.0"}'
        )
        assert _caller(node_ns, argv, CAPLESS) == ["R"]
        assert "other privileges" in served.logged()
        assert _caller(node_ns, argv)[0] == "A"  # the same call with every capability


@pytest.mark.skipif(SETPRIV is None, reason="util-linux setpriv missing")
def test_a_lock_held_by_a_capability_less_process_delays_a_del_boundedly(node_ns):
    """Defences 2 and 5: a capability-less uid-0 process can still hold an attachment's lock file; a
    DEL waits for it at most the lock wait, then answers CNI error 11 instead of hanging."""
    from plugins.worker import attachment

    with wt.Served(PYCNI_WORKER_LOCK_WAIT="2") as served:
        served.start()
        env = served.call_env("DEL", CNI_CONTAINERID="held", CNI_IFNAME="eth0", CNI_NETNS="")
        stripe = served.dir / attachment.stripe_name(env)
        holder = subprocess.Popen(
            [*CAPLESS, sys.executable, "-c",
             "import fcntl, os, sys, time\n"
             "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
             str(stripe)], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            conf = '{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}'
            start = time.monotonic()
            rc, out = _cni(_caller(node_ns, wt.caller_argv(served.sock, env, "loopback", conf)))
            assert time.monotonic() - start < 15
            assert rc == 1 and out["code"] == 11, out
        finally:
            holder.kill()
            holder.wait()


# ---------------------------------------------------------------- defence 4: the directory

def _started_in(sock_dir: Path, real: Path, **env: str) -> bool:
    """Start a worker for `sock_dir`/w-test.sock; True when it came to listen (in `real`)."""
    served = wt.Served(real, **env)
    served.sock = sock_dir / wt.SOCK
    served.start(wait=False)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and served.proc.poll() is None:
            if (real / wt.SOCK).exists():
                return True
            time.sleep(0.05)
        return (real / wt.SOCK).exists()
    finally:
        served.stop()


@pytest.mark.parametrize("kind", ["symlink", "foreign", "0755", "0770", "relative"])
def test_an_unsafe_worker_directory_is_never_served(kind, tmp_path):
    """Defence 4: a symlinked, foreign-owned, group/other-accessible or relative worker
    directory is refused: the worker exits without a socket."""
    real = Path(tempfile.mkdtemp(prefix="pws-", dir="/tmp"))
    link = Path(f"{real}-link")
    try:
        sock_dir = real
        if kind == "symlink":
            link.symlink_to(real)
            sock_dir = link
        elif kind == "foreign":
            os.chown(real, 65534, 65534)
        elif kind in ("0755", "0770"):
            os.chmod(real, int(kind, 8))
        elif kind == "relative":
            sock_dir = Path(os.path.relpath(real, os.getcwd()))
        assert not _started_in(sock_dir, real)
    finally:
        link.unlink(missing_ok=True)
        shutil.rmtree(real, ignore_errors=True)


def test_a_symlink_planted_in_the_directory_is_never_followed(node_ns):
    """Defence 4: a symlink where the worker's lock file goes, or where an attachment's lock
    file goes, never makes the worker open (let alone truncate) what it points to."""
    victim_dir = Path(tempfile.mkdtemp(prefix="pwv-", dir="/tmp"))
    victim = victim_dir / "precious"
    victim.write_text("precious\n")
    try:
        # the worker's own lock file
        real = Path(tempfile.mkdtemp(prefix="pws-", dir="/tmp"))
        try:
            (real / f"{wt.SOCK}.lock").symlink_to(victim)
            assert not _started_in(real, real)
            assert victim.read_text() == "precious\n"
        finally:
            shutil.rmtree(real, ignore_errors=True)
        # an attachment's lock file: the call gets "try again later", the victim stays unlocked
        from plugins.worker import attachment

        with wt.Served() as served:
            served.start()
            env = served.call_env("DEL", CNI_CONTAINERID="planted", CNI_IFNAME="eth0", CNI_NETNS="")
            (served.dir / attachment.stripe_name(env)).symlink_to(victim)
            conf = '{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}'
            rc, out = _cni(_caller(node_ns, wt.caller_argv(served.sock, env, "loopback", conf)))
            assert rc == 1 and out["code"] == 11, out
            assert victim.read_text() == "precious\n"
    finally:
        shutil.rmtree(victim_dir, ignore_errors=True)


# ---------------------------------------------------------------- defence 6: parked connections

def test_parked_connections_cost_no_threads_and_do_not_stop_the_idle_exit():
    """Defence 6: 200 connections that never send a request: no thread each, a real call is
    still served meanwhile, descriptors come back, and the worker still leaves when idle."""
    from plugins.worker import limits

    with wt.Served(PYCNI_WORKER_IDLE="2") as served:
        served.start()
        fds_before = wt.descriptors(served.pid)
        parked = [served.connect() for _ in range(200)]
        try:
            time.sleep(0.5)
            assert wt.threads(served.pid) <= limits.MAX_CALLS + 1
            replies = wt.call(served, b'{"cniVersion": "1.0.0"}', served.call_env("VERSION"))
            assert replies[0] == b"A" and replies[-1] == b"X\x00", replies
            time.sleep(limits.RECV_SECONDS + 0.5)  # every parked connection has expired
            assert wt.descriptors(served.pid) <= fds_before + 1
            deadline = time.monotonic() + 2 + limits.RECV_SECONDS + 10
            while served.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert served.proc.poll() is not None, "parked connections kept the worker alive"
        finally:
            for s in parked:
                s.close()


# ---------------------------------------------------------------- defences 3, 5, 7: refusals,
# lock-skip

def test_a_refusal_is_a_bare_r():
    """Defence 3: the refusal says only "R" (no hint which guess was wrong); the worker's log
    says why."""
    with wt.Served() as served:
        served.start()
        for bid, env, why in (
            ("0:0:0:0", served.call_env("VERSION"), "another build"),
            (None, {**served.call_env("VERSION"), "LANG": "C.UTF-8"}, "another environment"),
        ):
            with served.connect() as s:
                null = os.open(os.devnull, os.O_RDWR)
                try:
                    wt.send(s, wt.request(env, bid=bid), [null, null])
                finally:
                    os.close(null)
                assert wt.replies(s) == [b"R"]
            assert why in served.logged()


def test_the_delegate_lock_skip_cannot_be_forged(node_ns):
    """Defence 5: only a descriptor that holds the attachment's lock skips the wait for it; an
    ancestor's environment saying "worker" (what the old check read), another file, or another
    open description of the lock file do not."""
    from plugins.worker import attachment

    with wt.Served(PYCNI_WORKER_LOCK_WAIT="1") as served:
        served.start()
        env = served.call_env("DEL", CNI_CONTAINERID="forged", CNI_IFNAME="eth0", CNI_NETNS="")
        stripe = served.dir / attachment.stripe_name(env)
        conf = '{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}'
        fd = os.open(stripe, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)  # a call of this attachment is running
            argv = wt.caller_argv(served.sock, env, "loopback", conf)
            forged_parent = [
                "env",
                "PYCNI_WORKER_SERVE=/nonexistent",
                "sh",
                "-c",
                '"$@"; true',
                "sh",
                "env",
                "-u",
                "PYCNI_WORKER_SERVE",
            ]
            for prefix, args in (
                (forged_parent, argv),
                (
                    (),
                    wt.caller_argv(served.sock, env, "loopback", conf, lock=f"other:{served.log}"),
                ),
                ((), wt.caller_argv(served.sock, env, "loopback", conf, lock=f"other:{stripe}")),
            ):
                rc, out = _cni(_caller(node_ns, args, prefix))
                assert rc == 1 and out.get("code") == 11, (prefix, args[-1], out)
        finally:
            os.close(fd)
        # the lock's own holder (a delegate its caller passed it to) does not wait for itself
        rc, out = _cni(
            _caller(node_ns, wt.caller_argv(served.sock, env, "loopback", conf, lock=str(stripe)))
        )
        assert rc == 0, out


def test_peer_pin_falls_back_to_the_sent_pidfd_only_when_it_is_the_peer(monkeypatch):
    """Unit: without SO_PEERPIDFD (faked), the pidfd the client sent pins it only when its Pid
    is the connected process's; another process's pidfd, or no pidfd, is refused."""
    from plugins.worker import peer

    monkeypatch.setattr(peer, "_peer_pidfd", lambda conn: None)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    other = subprocess.Popen(["sleep", "30"])
    own, foreign = os.pidfd_open(os.getpid()), os.pidfd_open(other.pid)
    try:
        caller = peer.pin(a, own)
        try:
            assert caller.pid == os.getpid() and caller.alive()
            assert caller.ns_id("net") == tuple(os.stat("/proc/self/ns/net")[i] for i in (2, 1))
        finally:
            caller.close()
        for sent in (foreign, None):
            with pytest.raises(peer.Refused):
                peer.pin(a, sent)
    finally:
        other.kill()
        other.wait()
        for fd in (own, foreign):
            os.close(fd)
        a.close()
        b.close()


def test_a_stderr_that_cannot_be_reopened_still_gets_an_answer():
    """Defence 7: a call whose stderr is a directory is answered (the old worker closed that
    descriptor twice and sent nothing after "A"), and leaves no descriptor behind."""
    with wt.Served() as served:
        served.start()
        wt.call(served, b"{}", served.call_env("VERSION"))
        before = wt.descriptors(served.pid)
        env = served.call_env(
            "ADD", CNI_CONTAINERID="e1", CNI_IFNAME="eth0", CNI_NETNS="/nonexistent"
        )
        r, w = os.pipe()
        os.write(w, b"{not json")
        os.close(w)
        d = os.open(served.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with served.connect() as s:
                wt.send(s, wt.request(env), [r, d])
                replies = wt.replies(s)
        finally:
            os.close(r)
            os.close(d)
        rc, out = _cni([m.decode() for m in replies])
        assert rc == 1 and out["code"] == 6, out  # the config's decoding error, as in-process
        time.sleep(0.3)
        assert wt.descriptors(served.pid) <= before


def test_stdin_beyond_the_limit_is_a_cni_error_naming_it():
    """Defence 6: a call's stdin is read up to MAX_STDIN bytes; an endless one (/dev/zero) is
    CNI error 5 naming the limit, not a worker that reads until memory runs out."""
    from plugins.worker import limits

    with wt.Served() as served:
        served.start()
        env = served.call_env(
            "ADD", CNI_CONTAINERID="big", CNI_IFNAME="eth0", CNI_NETNS="/nonexistent"
        )
        zero = os.open("/dev/zero", os.O_RDONLY)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            with served.connect() as s:
                wt.send(s, wt.request(env), [zero, null])
                rc, out = _cni([m.decode() for m in wt.replies(s)])
        finally:
            os.close(zero)
            os.close(null)
        assert rc == 1 and out["code"] == 5 and str(limits.MAX_STDIN) in out["msg"], out


def test_calls_beyond_the_slots_queue_and_beyond_the_queue_are_refused():
    """Defence 6: MAX_CALLS calls run at once (here all waiting for one attachment's lock), the
    next QUEUE_MAX requests wait unanswered, the one after is refused; the worker never has
    more than MAX_CALLS call threads, and once the lock is free every accepted or queued call is
    answered. (The calls are loopback DELs without a namespace: they change nothing.)"""
    import fcntl

    from plugins.worker import attachment, limits

    with wt.Served(PYCNI_WORKER_LOCK_WAIT="30") as served:
        served.start()
        conf = b'{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}'
        env = served.call_env("DEL", CNI_CONTAINERID="slots", CNI_IFNAME="eth0", CNI_NETNS="")
        lock = os.open(served.dir / attachment.stripe_name(env), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        conns: list[socket.socket] = []

        def submit(call_env: dict[str, str], name: str) -> socket.socket:
            r, w = os.pipe()
            os.write(w, conf)
            os.close(w)
            null = os.open(os.devnull, os.O_WRONLY)
            s = served.connect()
            conns.append(s)
            try:
                wt.send(s, wt.request(call_env, name), [r, null])
            finally:
                os.close(r)
                os.close(null)
            return s

        try:
            running = [submit(env, "loopback") for _ in range(limits.MAX_CALLS)]
            for s in running:
                s.settimeout(10)
                assert s.recv(16) == b"A"
            queued = [submit(served.call_env("VERSION"), "bridge") for _ in range(limits.QUEUE_MAX)]
            extra = submit(served.call_env("VERSION"), "bridge")
            assert wt.replies(extra, 10) == [b"R"]
            assert "queue full" in served.logged()
            for s in queued[:3] + queued[-3:]:
                s.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    s.recv(16)
            assert wt.threads(served.pid) <= limits.MAX_CALLS + 1
            os.close(lock)
            lock = -1
            for s in running:
                assert wt.replies(s, 30)[-1] == b"X\x00"
            for s in queued:
                replies = wt.replies(s, 30)
                assert replies[0] == b"A" and replies[-1] == b"X\x00", replies
        finally:
            if lock >= 0:
                os.close(lock)
            for s in conns:
                s.close()
