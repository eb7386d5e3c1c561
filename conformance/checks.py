"""Assertions shared by the cases: plugin presence, CNI error objects, silent successes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.bindir import CniDir
from conformance.harness import PluginRun


def require(cni: CniDir, *names: str) -> None:
    """Skip the case unless every plugin in `names` is present and answers VERSION.

    A present but broken executable is not hidden: its protocol VERSION case fails; the
    cases that merely need it skip with the reason.
    """
    for name in names:
        if not cni.has(name):
            pytest.skip(f"{name} is not in {cni.path}")
        probe = cni.probe(name)
        if not probe.ok:
            pytest.skip(f"{name} in {cni.path} is broken ({probe.failure()})")


def show(run: PluginRun) -> str:
    """A run in one readable block for assertion messages."""
    return (f"rc={run.returncode}\n  stdout={run.stdout[:1500]!r}\n"
            f"  stderr={run.stderr[-800:]!r}")


def error(run: PluginRun) -> dict[str, Any]:
    """The error object of a failed run (asserting exit status 1 and a JSON object on stdout)."""
    assert run.returncode == 1, f"expected exit status 1 with an error object\n  {show(run)}"
    assert isinstance(run.result, dict) and "code" in run.result, (
        f"stdout is not a CNI error object\n  {show(run)}")
    return run.result


def expect_error(
    run: PluginRun,
    code: int,
    msg: str | None = None,
    *,
    details: str | None = None,
    startswith: str | None = None,
    contains: str | None = None,
) -> dict[str, Any]:
    """Assert `run` failed with CNI error `code` and the given message (exact, prefix or part)."""
    err = error(run)
    assert err.get("code") == code, f"code {err.get('code')} != {code}\n  {show(run)}"
    m = err.get("msg", "")
    if msg is not None:
        assert m == msg, f"msg {m!r} != {msg!r}\n  {show(run)}"
    if startswith is not None:
        assert m.startswith(startswith), f"msg {m!r} does not start with {startswith!r}"
    if contains is not None:
        assert contains in m, f"msg {m!r} does not contain {contains!r}"
    if details is not None:
        assert err.get("details") == details, (
            f"details {err.get('details')!r} != {details!r}\n  {show(run)}")
    return err


def expect_ok(run: PluginRun, *, silent: bool = False) -> Any:
    """Assert exit status 0 (and no stdout at all when `silent`); return the parsed stdout."""
    assert run.returncode == 0, f"expected success\n  {show(run)}"
    if silent:
        assert run.stdout == "", f"expected no output\n  {show(run)}"
    return run.result


def go_q_list(items: list[str]) -> str:
    """Go's %q rendering of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"
