"""The resident worker as a systemd service (packaging/systemd/): unit contents, the release
tarball and `make install` carrying them, socket activation with the real
systemd-socket-activate, and the fallback where systemd does not run the machine.

What must hold (README "Installing on a node"): the socket listens where clients look first
(/run/pycni/pycni.sock, root only, in a 0700 directory); the service runs an installed
executable of the suite as the worker in its own unit (no inherited descriptors, cwd /, ordinary
OOM score, restarted on failure); a socket-activated worker serves calls and stays resident;
`make install` installs the units under DESTDIR, enables the socket only on a machine systemd
runs and says how otherwise.
"""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conformance import harness
from conformance.harness import run_plugin
from conformance.workers import alive as _alive
from conformance.workers import end as _kill
from plugins.multicall import ENTRY_POINTS

REPO = harness.REPO_ROOT
UNITS = REPO / "packaging" / "systemd"
DIST = REPO / "dist" / "bin"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def test_socket_unit():
    sock = _unit("pycni-worker.socket")["Socket"]
    assert sock["ListenSequentialPacket"] == "/run/pycni/pycni.sock"
    assert (sock["SocketMode"], sock["DirectoryMode"]) == ("0600", "0700")
    assert (sock["SocketUser"], sock["SocketGroup"]) == ("root", "root")
    assert sock["Accept"] == "no"  # one worker gets the listener (LISTEN_FDS=1), not a connection
    assert _unit("pycni-worker.socket")["Install"]["WantedBy"] == "sockets.target"


def test_service_unit():
    """The worker in its own unit: an installed executable of the suite with PYCNI_WORKER_SERVE
    naming the socket's path (plugins/multicall.py serves before it looks at its name), cwd /,
    ordinary OOM score, restarted on failure, no descriptors but systemd's."""
    unit = _unit("pycni-worker.service")
    service = unit["Service"]
    exe, argv0 = service["ExecStart"].split()
    assert exe.startswith("@/opt/cni/bin/") and exe[len("@/opt/cni/bin/"):] in ENTRY_POINTS
    assert argv0 == "pycni-worker"
    socket_path = _unit("pycni-worker.socket")["Socket"]["ListenSequentialPacket"]
    assert service["Environment"] == f"PYCNI_WORKER_SERVE={socket_path}"
    assert service["WorkingDirectory"] == "/"
    assert service["OOMScoreAdjust"] == "0"
    assert service["Restart"] == "on-failure"
    assert service["StandardInput"] == "null"
    assert "NoNewPrivileges" not in service and "CapabilityBoundingSet" not in service
    assert unit["Unit"]["Requires"] == unit["Unit"]["After"] == "pycni-worker.socket"
    assert unit["Install"]["WantedBy"] == "multi-user.target"  # warm from boot on
    multicall = (REPO / "plugins" / "multicall.py").read_text()
    assert 'env.get("PYCNI_WORKER_SERVE")' in multicall


def test_release_tarball_carries_the_units(tmp_path):
    from scripts import make_release

    if not (DIST / "pycni-lib" / "BUILD-INFO").exists():
        pytest.skip("dist/bin not built (run `make build`)")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_release.py"), "--bin", str(DIST),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    with tarfile.open(tmp_path / make_release.tarball_name()) as tar:
        for name in ("pycni-worker.socket", "pycni-worker.service"):
            member = tar.getmember(f"./pycni-lib/systemd/{name}")
            assert member.mode == 0o644 and (member.uid, member.gid) == (0, 0)
            assert tar.extractfile(member).read() == (UNITS / name).read_bytes()


def _make_install(**variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "install", *(f"{k}={v}" for k, v in variables.items())],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )


def test_make_install_puts_the_units_under_destdir(tmp_path):
    dest = tmp_path / "root"
    proc = _make_install(DESTDIR=str(dest), PREFIX="/usr/libexec/cni")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    units = dest / "etc" / "systemd" / "system"
    socket_unit = (units / "pycni-worker.socket").read_text()
    service = (units / "pycni-worker.service").read_text()
    assert socket_unit == (UNITS / "pycni-worker.socket").read_text()
    assert "ExecStart=@/usr/libexec/cni/loopback pycni-worker" in service
    assert "/opt/cni/bin/" not in service
    assert (dest / "usr" / "libexec" / "cni" / "loopback").exists()
    enable = (
        "systemctl daemon-reload && systemctl enable --now pycni-worker.socket pycni-worker.service"
    )
    assert enable in proc.stdout
    assert not (dest / "etc" / "systemd" / "system" / "sockets.target.wants").exists()


def test_make_install_without_systemd_says_how(tmp_path):
    """No DESTDIR on a machine systemd does not run: the units are installed, nothing is
    enabled, and the output says how to enable them (and that calls start the worker)."""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip(
            "systemd runs this machine: `make install` without DESTDIR would enable the unit"
        )
    bindir, units = tmp_path / "bin", tmp_path / "units"
    proc = _make_install(DESTDIR="", PREFIX=str(bindir), SYSTEMD_UNITDIR=str(units))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "systemctl enable --now pycni-worker.socket" in proc.stdout
    assert "the first plugin call starts the resident worker itself" in proc.stdout
    service = (units / "pycni-worker.service").read_text()
    assert f"ExecStart=@{bindir}/loopback pycni-worker" in service
    analyze = shutil.which("systemd-analyze")
    if analyze:  # the installed units parse, and the ExecStart executable exists
        check = subprocess.run([analyze, "verify", str(units / "pycni-worker.socket"),
                                str(units / "pycni-worker.service")],
                               capture_output=True, text=True, check=False, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.netns
def test_socket_activation_serves_and_stays_resident():
    """systemd-socket-activate listens on <dir>/pycni.sock and starts the worker on the first
    connection, passing the listener as descriptor 3 (LISTEN_FDS=1): calls are served by it,
    and it does not leave when idle."""
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip(harness.missing_reason("systemd-socket-activate", "systemd"))
    if not os.access(DIST / "loopback", os.X_OK):
        pytest.skip("dist/bin not built (run `make build`)")
    wdir = Path(tempfile.mkdtemp(prefix="pws-", dir="/tmp"))
    sock = wdir / "pycni.sock"
    env = {"PYCNI_WORKER": "1", "PYCNI_WORKER_DIR": str(wdir), "PYCNI_WORKER_DEBUG": "1",
           "PYCNI_WORKER_LOG": str(wdir / "log")}
    proc = subprocess.Popen(
        [tool, "--seqpacket", "-l", str(sock), "-E", f"PYCNI_WORKER_SERVE={sock}",
         "-E", f"PATH={harness.SAFE_PATH}", "-E", "PYCNI_WORKER_IDLE=1",
         "-E", f"PYCNI_WORKER_LOG={wdir / 'log'}", str(DIST / "loopback")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.05)
        # The first connection makes systemd-socket-activate exec the worker (in its own pid:
        # it owns the listener). A client connecting before that exec sees another executable
        # and starts a worker of its own (under systemd the listener's owner is init instead),
        # so connect once without sending, as a runtime's first call would, and wait for it.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        probe.connect(str(sock))
        probe.close()
        deadline = time.monotonic() + 10
        while not os.path.samefile(f"/proc/{proc.pid}/exe", DIST / "loopback"):
            assert time.monotonic() < deadline and proc.poll() is None, "the worker never started"
            time.sleep(0.02)
        conf = {"cniVersion": "1.0.0", "name": "sa", "type": "loopback"}
        deadline = time.monotonic() + 20
        while True:  # until the worker has loaded the plugins and accepts
            r = run_plugin(DIST / "loopback", "VERSION", conf, extra_env=env)
            assert r.returncode == 0 and '"supportedVersions"' in r.stdout, r.stdout + r.stderr
            if "pycni worker: served" in r.stderr:
                break
            assert "server not trusted" not in r.stderr, r.stderr
            assert time.monotonic() < deadline, r.stderr
            time.sleep(0.2)
        assert not list(wdir.glob("w-*.sock")), "a worker of its own was started besides"
        time.sleep(3)  # past PYCNI_WORKER_IDLE: a socket-activated worker is resident
        assert _alive(proc.pid) and proc.poll() is None
        r = run_plugin(DIST / "loopback", "VERSION", conf, extra_env=env)
        assert r.returncode == 0 and "pycni worker: served" in r.stderr, r.stderr
        log = wdir / "log"
        assert not log.exists() or "Traceback" not in log.read_text(), log.read_text()
    finally:
        _kill([proc.pid])
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(wdir, ignore_errors=True)
