"""Smoke test of the CNI benchmark (conformance/bench/bench_cni.py --quick).

The benchmark is not a timed test: this only checks that it runs to the end against dist/bin
and the reference, prints every table, leaves nothing behind (the module's leak audit), and
writes well-formed JSON. No figure is judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import harness

BENCH = harness.REPO_ROOT / "conformance" / "bench" / "bench_cni.py"
DIST = harness.REPO_ROOT / "dist" / "bin"

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module", autouse=True)
def _needs():
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    for d, names in ((DIST, ("bridge", "host-local", "flannel", "portmap")),
                     (harness.REFERENCE_BIN, ("bridge", "host-local", "portmap"))):
        for n in names:
            if not os.access(d / n, os.X_OK):
                pytest.skip(f"{d / n} missing (run `make build`; reference in /usr/lib/cni)")


def test_quick_run_prints_every_table(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out_json), "--tmp", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for title in (
        "B1 serial pod cycle",
        "B2 bursts",
        "B3 host-local at scale",
        "B4 footprint: peak RSS",
        "B4 footprint: import time",
        "B5 idle node",
    ):
        assert title in text, f"{title!r} missing:\n{text}"
    for row in ("bridge+host-local ipMasq=false", "bridge+host-local ipMasq=true",
                "kube-flannel list (+portmap)", "flannel overhead", "ours+w"):
        assert row in text, f"B1 row {row!r} missing:\n{text}"
    data = json.loads(out_json.read_text())
    assert [r["row"] for r in data["B1"]][:1] == ["bridge+host-local ipMasq=false"]
    assert data["B2"] and data["B3"] and data["B4"]["rss"] and data["B4"]["imports"]
    for row in data["B1"]:
        assert row["ref_cycle_ms"] > 0 and row["ours_cycle_ms"] > 0
    # every entry point's VERSION import figure is there
    entries = {(r["entry"], r["command"]) for r in data["B4"]["imports"]}
    for name in ("loopback", "bridge", "host-local", "flannel", "portmap"):
        assert (name, "VERSION") in entries
    if "B5" in data:  # absent only when no cgroup can count spawned processes' CPU
        cold = {r["variant"]: r for r in data["B5"]["cold"]}
        assert set(cold) == {"ref", "ours", "ours cold"}
        assert all(r["add_all_cpu_ms"] >= r["add_cpu_ms"] * 0.9 for r in cold.values())
        assert [r["variant"] for r in data["B5"]["idle"]] == ["ref", "ours+w"]
        assert data["B5"]["idle"][1]["calls"] == 2
        assert "idle_cpu_ms" in data["B5"]["resident"]
    else:
        assert "B5 idle node" in text and "skipped: no usable cgroup" in text
    assert not list(tmp_path.glob("bench-*")), "state dirs left behind"
    assert not list(Path("/sys/fs/cgroup").glob("*/pycni-bench-*")), "cgroups left behind"
