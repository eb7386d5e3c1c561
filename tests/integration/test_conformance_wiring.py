"""The conformance suite (conformance/, README "Layout") run from the main test suite.

Runs `python -m conformance` exactly as a user would, once: dist/bin compared with the Go
reference, including the real-runtime scenario when containerd is installed. The runner checks
the reference directory on its own first (this is what proves the suite itself), so the one run
yields both closing lines, `reference: N passed, 0 failed` and `ours: N passed, 0 failed`, and
each test asserts its own. Without a build in dist/bin, the reference is run alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import harness

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist" / "bin"

pytestmark = [pytest.mark.netns, pytest.mark.reference]

Run = tuple[str, dict[str, tuple[int, int]]]


def _run(*args: str) -> Run:
    env = dict(os.environ)
    env.setdefault("CONFORMANCE_CONCURRENCY", "10")
    proc = subprocess.run([sys.executable, "-m", "conformance", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    closing = {m.group(1): (int(m.group(2)), int(m.group(3)))
               for m in re.finditer(r"^(\w+): (\d+) passed, (\d+) failed$", out, re.M)}
    return out, closing


def _tail(out: str) -> str:
    failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    return "\n".join(failed[:80]) + "\n...\n" + "\n".join(out.splitlines()[-40:])


def _have_reference() -> bool:
    return (harness.REFERENCE_BIN / "bridge").exists()


@pytest.fixture(scope="module")
def combined() -> Run | None:
    """The one run of dist/bin (with the reference when installed, and --runtime); None when
    dist/bin is not built."""
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not (DIST / "flannel").exists():
        return None
    args = ["--cni-bin", str(DIST), "--runtime"]
    if _have_reference():
        args += ["--reference", str(harness.REFERENCE_BIN)]
    return _run(*args)


def test_reference_passes_the_suite(combined: Run | None) -> None:
    """Against /usr/lib/cni on its own: every case passes (known deviations are asserted as
    such)."""
    if not _have_reference():
        pytest.skip(harness.missing_reason("/usr/lib/cni/bridge", "containernetworking-plugins"))
    out, closing = combined if combined is not None else _run(
        "--cni-bin", str(harness.REFERENCE_BIN))
    assert "reference" in closing, _tail(out)
    passed, failed = closing["reference"]
    assert failed == 0, _tail(out)
    assert passed > 250, _tail(out)


def test_ours_passes_the_suite(combined: Run | None) -> None:
    """Against dist/bin, compared with the reference, with the containerd scenario when the
    packages are there: no failure."""
    if combined is None:
        pytest.skip("dist/bin not built (make build)")
    out, closing = combined
    assert "ours" in closing, _tail(out)
    passed, _failed = closing["ours"]
    assert passed > 300, _tail(out)
    for label, (_passed, failed) in closing.items():
        assert failed == 0, f"{label}: {failed} failed\n" + _tail(out)


def test_real_runtime_scenario_ran(combined: Run | None) -> None:
    """The containerd scenario was part of the combined run; where containerd or runc is
    missing, that is a skip for a missing package (which fails `make test`), not a silent pass."""
    if combined is None:
        pytest.skip("dist/bin not built (make build)")
    from conformance import runtime

    reason = runtime.unavailable_reason()
    if reason is not None and ("not installed" in reason or "missing" in reason):
        pytest.skip(harness.missing_reason(f"the containerd scenario's tools ({reason})",
                                           "containerd runc busybox-static"))
    if reason is not None:
        pytest.skip(f"containerd scenario unavailable: {reason}")
    out, _closing = combined
    assert "containerd scenario unavailable" not in out, _tail(out)
    assert "real-runtime scenario not requested" not in out, _tail(out)


def test_ours_passes_the_suite_through_the_warm_worker() -> None:
    """The whole suite again with PYCNI_WORKER=1 on every call of dist/bin (`--worker`): the
    worker gives exactly the in-process answers, and it really served the calls (the clients'
    debug lines are tallied; only the calls that start a worker run in-process)."""
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not (DIST / "flannel").exists():
        pytest.skip("dist/bin not built (make build)")
    out, closing = _run("--cni-bin", str(DIST), "--worker")
    assert "ours" in closing, _tail(out)
    passed, failed = closing["ours"]
    assert failed == 0 and passed > 300, _tail(out)
    m = re.search(r"through the warm worker: (\d+) calls served", out)
    assert m is not None and int(m.group(1)) > 300, _tail(out)
    assert "worker errors" not in out, _tail(out)
