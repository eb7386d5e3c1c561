"""A resident worker (PYCNI_WORKER_RESIDENT=1; socket activation is tested in
test_systemd_units.py): no idle exit, about no CPU while idle, and it leaves once its executable
is replaced, so an upgrade retires it. Runs a private copy of dist/bin (the copy is replaced)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests import worker_testlib as wt


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_resident_worker_stays_idle_cheaply_and_leaves_when_replaced(tmp_path, monkeypatch):
    from plugins.worker import limits

    if not os.access(wt.DIST / "bridge", os.X_OK):
        pytest.skip("dist/bin not built (run `make build`)")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(wt.DIST / "pycni-lib", bindir / "pycni-lib")
    shutil.copy2(wt.DIST / "bridge", bindir / "bridge")
    monkeypatch.setattr(wt, "DIST", bindir)  # Served starts, and build_id() names, the copy
    with wt.Served(
        PYCNI_WORKER_RESIDENT="1", PYCNI_WORKER_IDLE="1", PYCNI_WORKER_MAX_AGE="1"
    ) as served:
        served.start()
        assert wt.call(served, b"{}", served.call_env("VERSION"))[-1] == b"X\x00"
        time.sleep(1.5)  # let the call's thread end and the loop settle
        ticks = _cpu_ticks(served.pid)
        time.sleep(2 * limits.STALE_SECONDS)  # past its idle time and its age
        assert served.proc.poll() is None, "a resident worker left when idle"
        assert _cpu_ticks(served.pid) - ticks <= 2, "CPU used while idle"
        new = bindir / "bridge.new"
        shutil.copy2(wt.DIST / "bridge", new)
        os.rename(new, bindir / "bridge")  # an upgrade: another file under the same name
        deadline = time.monotonic() + limits.STALE_SECONDS + 5
        while served.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served.proc.poll() is not None, "a stale resident worker stayed"
        assert not served.sock.exists()
