"""Fake CNI plugins for the runtime's unit tests (never for integration tests).

A fake is a small Python script that appends what it received (command, CNI_* env, stdin) as
one JSON line to $FAKE_LOG and answers like a well-behaved plugin:

* ADD: the prevResult (or a fresh result in the request's version) with one interface
  `<type>-<ifname>` appended (1.x and 0.3/0.4 families), so chaining is visible;
* VERSION: all versions; other commands: no output, exit 0.

A sidecar file `<script>.<COMMAND>` holding JSON {"stdout": str, "stderr": str, "exit": int}
replaces that behaviour for one command (e.g. to fail with an error object).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_SCRIPT = r'''#!/usr/bin/python3 -IS
import json, os, sys
name = os.path.basename(sys.argv[0])
cmd = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.buffer.read() if cmd != "VERSION" or not sys.stdin.isatty() else b""
log = os.environ.get("FAKE_LOG")
if log:
    env = {k: v for k, v in os.environ.items() if k.startswith("CNI_") or k.startswith("FAKE_")}
    with open(log, "a") as f:
        f.write(json.dumps({"plugin": name, "command": cmd, "env": env,
                            "stdin": raw.decode("utf-8", "replace")}) + "\n")
side = sys.argv[0] + "." + cmd
if os.path.exists(side):
    with open(side) as f:
        b = json.load(f)
    sys.stdout.write(b.get("stdout", ""))
    sys.stderr.write(b.get("stderr", ""))
    sys.exit(b.get("exit", 0))
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.1.0", "supportedVersions":
        ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}))
    sys.exit(0)
if cmd != "ADD":
    sys.exit(0)
conf = json.loads(raw)
v = conf.get("cniVersion", "")
ifname = os.environ.get("CNI_IFNAME", "")
if v in ("", "0.1.0", "0.2.0"):
    out = conf.get("prevResult") or {"ip4": {"ip": "10.1.2.3/24", "gateway": "10.1.2.1"}}
else:
    out = conf.get("prevResult") or {"ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1"}]}
    if v.startswith("0.") and "prevResult" not in conf:
        out["ips"][0]["version"] = "4"
    out.setdefault("interfaces", []).append({"name": name + "-" + ifname})
out["cniVersion"] = v
sys.stdout.write(json.dumps(out))
'''


def make_fake(bindir: Path, name: str) -> Path:
    """Write the fake plugin `bindir/name` (mode 0755) and return its path."""
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text(_SCRIPT)
    path.chmod(0o755)
    return path


def set_behaviour(
    plugin: Path, command: str, *, stdout: str = "", stderr: str = "", exit: int = 0
) -> None:
    """Make `plugin` answer `command` with exactly this stdout/stderr/exit status."""
    Path(f"{plugin}.{command}").write_text(
        json.dumps({"stdout": stdout, "stderr": stderr, "exit": exit})
    )


def fail_with(plugin: Path, command: str, code: int, msg: str, details: str = "") -> None:
    """Make `plugin` fail `command` with a CNI error object on stdout, exit 1."""
    err: dict[str, Any] = {"code": code, "msg": msg}
    if details:
        err["details"] = details
    set_behaviour(plugin, command, stdout=json.dumps(err), exit=1)


def read_log(log: Path) -> list[dict[str, Any]]:
    """The calls recorded in `log`, each with `conf` = the decoded stdin (None if not JSON)."""
    if not log.exists():
        return []
    calls = []
    for line in log.read_text().splitlines():
        call = json.loads(line)
        try:
            call["conf"] = json.loads(call["stdin"])
        except ValueError:
            call["conf"] = None
        calls.append(call)
    return calls


def fake_environ(log: Path) -> dict[str, str]:
    """A minimal environment for the runtime under test, with FAKE_LOG set."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FAKE_LOG": str(log)}

