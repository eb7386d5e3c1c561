"""The README's test command sets the machine up itself, and a run that still lacks a package
the tests drive says so and fails (scripts/install-deps.sh, tests/conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conformance import harness

DEPS = harness.REPO_ROOT / "scripts" / "install-deps.sh"
TESTS_DIR = Path(__file__).resolve().parents[1]


def test_test_dependencies_are_all_present_after_install() -> None:
    """`make test` ran `install-deps.sh test` first: its --check finds nothing missing."""
    env = {"PATH": harness.SAFE_PATH}
    check = subprocess.run(["sh", str(DEPS), "test", "--check"], capture_output=True, text=True,
                           env=env, check=False)
    assert (check.returncode, check.stdout) == (
        0, "install-deps: everything the build, the demo and the tests need is present\n"
    ), check.stderr


def test_unknown_argument_is_a_usage_error() -> None:
    proc = subprocess.run(["sh", str(DEPS), "tests"], capture_output=True, text=True,
                          env={"PATH": harness.SAFE_PATH}, check=False)
    assert proc.returncode == 2
    assert "unknown argument tests" in proc.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run is the README's test line and nothing else."""
    readme = (harness.REPO_ROOT / "README.md").read_text()
    marker = "# the whole test suite, set-up included (what CI runs)"
    line = next(ln for ln in readme.splitlines() if ln.rstrip().endswith(marker))
    command = line.split("#", 1)[0].strip()
    ci = (harness.REPO_ROOT / ".ci" / "run").read_text().splitlines()
    body = [ln for ln in ci if ln.strip() and not ln.startswith("#")]
    assert body == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', command]


def _inner_session(pytester: pytest.Pytester) -> None:
    shutil.copy(TESTS_DIR / "conftest.py", pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    netns: x\n    reference: x\n    slow: x\n")
    pytester.makepyfile(
        test_inner="""
from conformance import harness
import pytest

def test_runs():
    assert True

def test_needs_a_tool():
    pytest.skip(harness.missing_reason("frobnicate", "frob-tools"))

def test_other_skip():
    pytest.skip("kernel has no such feature")
"""
    )


def test_a_skip_for_a_missing_package_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary names the skipped test and the missing package, and the run exits 1; a skip
    for another reason (a kernel feature) does not fail it."""
    monkeypatch.delenv("PYCNI_ALLOW_SKIPS", raising=False)
    _inner_session(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 1
    out = result.stdout.str()
    assert (
        "frobnicate (Debian package frob-tools): 1 skipped: test_inner.py::test_needs_a_tool" in out
    )
    assert "1 tests skipped for missing packages (frobnicate (Debian package frob-tools)): " \
           "the run FAILS" in out
    result.assert_outcomes(passed=1, skipped=2)


def test_allow_skips_lets_such_a_run_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYCNI_ALLOW_SKIPS", "1")
    _inner_session(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0
    assert "allowed by PYCNI_ALLOW_SKIPS=1" in result.stdout.str()
