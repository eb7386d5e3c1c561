"""The outcome contract every generated case is held to (docs/reliability.md, Fuzzing).

A plugin call ends with exit 0 and a valid result for its command, or exit 1 and a well-formed
CNI error on stdout: a JSON object with an integer `code` and a one-line string `msg` (and
optionally `details`, `cniVersion`). Never another status, never a traceback on stderr, never
an error produced by an exception the plugin did not expect (the skel's catch-all, which names
a Python exception class).

cnitool is a runtime, not a plugin: its contract is exit 0 (with a valid result for `add`),
or exit 1 with a one-line message on stderr.
"""

from __future__ import annotations

import json
import re
from typing import Any

# The skel's catch-all formats `f"{type(e).__name__}: {e}"`; a message starting with a Python
# exception class name means an exception escaped the plugin's own error handling.
_PY_EXC = re.compile(
    r"^(?:[A-Za-z_.]*\.)?(?:[A-Z][A-Za-z]*(?:Error|Exception|Exit|Interrupt|Warning)"
    r"|StopIteration|RecursionError|KeyError|IndexError|AttributeError|NetlinkError)(?::|$)"
)
_ERROR_KEYS = {"cniVersion", "code", "msg", "details"}


def _unexpected(msg: str) -> bool:
    return bool(_PY_EXC.match(msg))


def check_plugin(command: str, conf_version: str, rc: int, stdout: str, stderr: str) -> list[str]:
    """Problems with one plugin call's outcome (empty list: it honours the contract).

    `conf_version` is the cniVersion the caller asked for ("" when the stdin had none or was not
    a config), used to validate an ADD result in that version's shape.
    """
    problems: list[str] = []
    if "Traceback (most recent call last)" in stderr:
        problems.append("traceback on stderr: " + _tail(stderr))
    if rc == 0:
        problems += _check_success(command, conf_version, stdout)
    elif rc == 1:
        problems += check_error_json(stdout)
    else:
        problems.append(f"exit status {rc} (only 0 and 1 are allowed); stderr: {_tail(stderr)}")
    return problems


def check_error_json(stdout: str) -> list[str]:
    """Problems with a CNI error object printed on stdout."""
    try:
        obj = json.loads(stdout)
    except ValueError:
        return [f"exit 1 without a JSON error on stdout: {stdout[:200]!r}"]
    if not isinstance(obj, dict):
        return [f"error output is not a JSON object: {stdout[:200]!r}"]
    problems = []
    code, msg = obj.get("code"), obj.get("msg")
    if not isinstance(code, int) or isinstance(code, bool):
        problems.append(f"error without an integer code: {stdout[:200]!r}")
    if not isinstance(msg, str) or not msg:
        problems.append(f"error without a message: {stdout[:200]!r}")
    elif "\n" in msg or "\r" in msg:
        problems.append(f"error message is not one line: {msg[:200]!r}")
    elif _unexpected(msg):
        problems.append(f"unexpected exception reported as code {code}: {msg[:200]!r}")
    extra = set(obj) - _ERROR_KEYS
    if extra:
        problems.append(f"error object has unknown keys {sorted(extra)}")
    details = obj.get("details")
    if details is not None and not isinstance(details, str):
        problems.append(f"error details is not a string: {details!r}")
    return problems


def _check_success(command: str, conf_version: str, stdout: str) -> list[str]:
    if command == "VERSION":
        try:
            obj = json.loads(stdout)
        except ValueError:
            return [f"VERSION printed no JSON: {stdout[:200]!r}"]
        if not (isinstance(obj, dict) and isinstance(obj.get("supportedVersions"), list)):
            return [f"VERSION reply without supportedVersions: {stdout[:200]!r}"]
        return []
    if command != "ADD":
        return [] if not stdout.strip() else [f"{command} succeeded but printed {stdout[:200]!r}"]
    return check_result(stdout, conf_version)


def check_result(stdout: str, conf_version: str) -> list[str]:
    """Problems with an ADD result: it must parse as a result of `conf_version` (0.1.0 when "")."""
    from cni.errors import CNIError
    from cni.result import parse_result

    try:
        obj = json.loads(stdout)
    except ValueError:
        return [f"ADD succeeded without a JSON result: {stdout[:200]!r}"]
    if not isinstance(obj, dict):
        return [f"ADD result is not an object: {stdout[:200]!r}"]
    from cni.version import ALL

    want = conf_version or "0.1.0"
    got = obj.get("cniVersion")
    if want in ALL and got != want:
        return [f"ADD result has cniVersion {got!r}, the config asked for {want!r}"]
    try:
        parse_result(stdout.encode(), got if isinstance(got, str) and got else want)
    except (CNIError, ValueError) as e:
        return [f"ADD result does not parse as {want}: {e}"]
    return []


def check_cnitool(command: str, rc: int, stdout: str, stderr: str) -> list[str]:
    """Problems with one cnitool run's outcome."""
    problems: list[str] = []
    if "Traceback (most recent call last)" in stderr:
        problems.append("traceback on stderr: " + _tail(stderr))
    if rc == 0:
        if command == "add" and stdout.strip():
            try:
                obj: Any = json.loads(stdout)
            except ValueError:
                problems.append(f"add printed no JSON result: {stdout[:200]!r}")
            else:
                if not isinstance(obj, dict) or "cniVersion" not in obj:
                    problems.append(f"add printed no result object: {stdout[:200]!r}")
    elif rc == 1:
        lines = [
            ln
            for ln in stderr.splitlines()
            if ln.strip() and not ln.startswith(("flannel:", "Usage:", "Run 'cnitool"))
        ]
        if not lines:
            problems.append("exit 1 without a message on stderr")
        elif _unexpected(lines[-1]):
            problems.append(f"unexpected exception: {lines[-1][:200]!r}")
    else:
        problems.append(f"exit status {rc}; stderr: {_tail(stderr)}")
    return problems


def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]
