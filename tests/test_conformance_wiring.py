"""The conformance suite (conformance/, issue 9) run from the main test suite.

Runs `python -m conformance` exactly as a user would: once against the Go reference alone
(this is what proves the suite itself), and once against dist/bin compared with the
reference, including the real-runtime scenario when containerd is installed. Each run must
end with `<label>: N passed, 0 failed`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import harness
import pytest

REPO = Path(__file__).resolve().parent.parent
DIST = REPO / "dist" / "bin"

pytestmark = [pytest.mark.netns, pytest.mark.reference]


def _run(*args: str) -> tuple[str, dict[str, tuple[int, int]]]:
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


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)


def test_reference_passes_the_suite() -> None:
    """Against /usr/lib/cni alone: every case passes (known deviations are asserted as such)."""
    if not (harness.REFERENCE_BIN / "bridge").exists():
        pytest.skip("reference plugins not installed (Debian package containernetworking-plugins)")
    out, closing = _run("--cni-bin", str(harness.REFERENCE_BIN))
    assert "reference" in closing, _tail(out)
    passed, failed = closing["reference"]
    assert failed == 0, _tail(out)
    assert passed > 250, _tail(out)


def test_ours_passes_the_suite() -> None:
    """Against dist/bin, compared with the reference, with the containerd scenario when the
    packages are there: no failure."""
    if not (DIST / "flannel").exists():
        pytest.skip("dist/bin not built (make build)")
    args = ["--cni-bin", str(DIST), "--runtime"]
    if (harness.REFERENCE_BIN / "bridge").exists():
        args += ["--reference", str(harness.REFERENCE_BIN)]
    out, closing = _run(*args)
    assert "ours" in closing, _tail(out)
    from conformance import runtime

    if runtime.unavailable_reason() is None:
        assert "containerd scenario unavailable" not in out, _tail(out)
        assert "real-runtime scenario not requested" not in out, _tail(out)
    for label, (_passed, failed) in closing.items():
        assert failed == 0, f"{label}: {failed} failed\n" + _tail(out)
