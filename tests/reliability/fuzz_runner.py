"""Fuzz one executable with generated cases, from inside a throwaway node namespace.

    ip netns exec <node> env PYTHONPATH=. .venv/bin/python -m tests.reliability.fuzz_runner \\
        --exe bridge --cases 10000 --exec-cases 200 --pods /run/netns/p0,/run/netns/p1 \\
        --root /tmp/x --out /tmp/summary.json --outer-pid <pytest pid> [--seed N]

Refuses to run unless its network and mount namespaces differ from --outer-pid's, then mounts a
private tmpfs over /var/lib (defaults such as /var/lib/cni/networks land there), caps its memory,
and runs `--cases` hypothesis-generated cases. Most run in this interpreter through
`cni.skel.run(plugin, env, stdin)` (for cnitool `cni.libcni.cnitool.run(argv, env, ...)`), the code
path the executables take; every (cases / exec-cases)-th runs the real dist/bin executable, and
every second of those (plugins only) goes through a warm worker (the default way a call runs:
plugins/worker/server.py) in a private worker directory, ended when the run ends; a traceback in the
workers' log is a finding.

Per case: write the case's files, set up its pre-state, snapshot (node netns, pods, files), run,
check the outcome contract (reliability/contract.py), run DEL after an ADD (and require it to
succeed after a successful ADD), undo the pre-state, snapshot again and report every leftover
that is not shared infrastructure (reliability/nsstate.py); then reset everything.

Writes a JSON summary to --out: counts, outcome histogram and findings (problem, case).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability import contract, nsstate, sandbox
from tests.reliability.strategies import Case, case_strategy

_REPO = Path(__file__).resolve().parents[2]

BIN = _REPO / "dist" / "bin"
ABSENT_NETNS = "/run/netns/pycni-fuzz-absent"
CALL_TIMEOUT = 30.0
PATH_KEYS = {"datadir", "subnetfile", "resolvconf"}
PRE_IP = "10.77.0.7"
GOOD_SUBNET_ENV = (
    b"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1450\n"
    b"FLANNEL_IPMASQ=true\n"
)


class EnoughCases(Exception):
    """Raised once the requested number of distinct cases ran: stops hypothesis early."""


class CaseTimeout(BaseException):
    """A plugin call exceeded CALL_TIMEOUT (a hang). BaseException: no plugin handler eats it."""


_ARMED = [False]


def _short(filename: str) -> str:
    """`filename` relative to the repository when it is inside it."""
    return os.path.relpath(filename, _REPO) if filename.startswith(str(_REPO)) else filename


def _on_alarm(signum, frame):  # noqa: ARG001
    # The timer repeats every 2 s once it has fired: code that swallows one CaseTimeout (an
    # asyncio callback inside pyroute2 logs and drops BaseException) gets the next one.
    if _ARMED[0]:
        raise CaseTimeout()


# --------------------------------------------------------------------------- calls


def _call_inproc(
    exe: str, env: dict[str, str], stdin: bytes, argv: list[str]
) -> tuple[int, str, str]:
    from cni import skel
    from plugins import multicall

    out, err = io.StringIO(), io.StringIO()
    _ARMED[0] = True
    signal.setitimer(signal.ITIMER_REAL, CALL_TIMEOUT, 2.0)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if exe == "cnitool":
                from cni.libcni import cnitool

                try:
                    rc = cnitool.run(argv, env, sys.stdout, sys.stderr)
                except Exception as e:  # noqa: BLE001 - what cnitool.main would print
                    from cni.errors import one_line

                    sys.stderr.write(one_line(f"{type(e).__name__}: {e}") + "\n")
                    rc = 1
                text = ""
            else:
                rc, text = skel.run(multicall.plugin_for(exe), env, stdin)
    except CaseTimeout:
        _ARMED[0] = False
        import traceback

        where = " <- ".join(
            f"{_short(f.filename)}:{f.name}"
            for f in reversed(traceback.extract_tb(sys.exc_info()[2])[-4:])
        )
        return -9, "", f"HANG: no answer within {CALL_TIMEOUT:g}s (in-process) in {where}"
    finally:
        _ARMED[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    stray = out.getvalue()
    if exe == "cnitool":
        return rc, stray, err.getvalue()
    if stray:
        err.write(f"\n[wrote to sys.stdout directly: {stray[:200]!r}]")
        rc = 97
    return rc, text, err.getvalue()


def _call_exec(exe: str, env: dict[str, str], stdin: bytes, argv: list[str], cwd: str,
               worker_dir: str | None = None) -> tuple[int, str, str]:
    if worker_dir is None:
        how = {"PYCNI_WORKER": "0"}
    else:  # one worker, short-lived: the runner ends it, and a killed runner's goes soon
        how = {"PYCNI_WORKER": "1", "PYCNI_WORKER_DIR": worker_dir, "PYCNI_WORKER_PROCS": "1",
               "PYCNI_WORKER_IDLE": "10", "PYCNI_WORKER_LOG": os.path.join(worker_dir, "log")}
    full = {"PATH": sandbox.SAFE_PATH, **how, **env}
    try:
        proc = subprocess.run(
            [str(BIN / exe), *argv], input=stdin, env=full, capture_output=True,
            timeout=CALL_TIMEOUT * 2, cwd=cwd, check=False,
        )
    except subprocess.TimeoutExpired:
        hint = "".join(
            f"; reads a FIFO via {k}" for k in _fifo_keys(stdin, os.path.join(cwd, "fifo"))
        )
        return -9, "", f"HANG: no answer within {CALL_TIMEOUT * 2:g}s (exec){hint}"
    return (proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
            proc.stderr.decode("utf-8", "surrogateescape"))


def _fifo_keys(stdin: bytes, fifo: str) -> list[str]:
    """Config keys (any depth) whose value is the case's FIFO: what an exec'd hang reads."""
    found: list[str] = []
    stack = [_json_or_none(stdin)]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            for k, v in obj.items():
                if v == fifo:
                    found.append(str(k))
                stack.append(v)
        elif isinstance(obj, list):
            stack.extend(obj)
    return sorted(set(found))


# --------------------------------------------------------------------------- the runner


class Runner:
    """Runs cases for one executable and collects what happened."""

    def __init__(self, exe: str, pods: list[str], root: Path, exec_every: int, limit: int) -> None:
        self.exe = exe
        self.limit = limit
        self.seen: set[bytes] = set()
        self.progress: Path | None = None  # the case being run, for a post-mortem
        self.pods = pods
        self.root = root
        self.exec_every = exec_every
        self.worker_dir: str | None = None  # set by main() for the plugins
        self.via_worker = False  # the current case's exec calls go through the worker
        self.exec_n = 0
        self.varlib = sandbox.DEFAULT_STATE_ROOT
        self.allowed_ns = {sandbox.ns_id("/proc/self/ns/net"), *(sandbox.ns_id(p) for p in pods)}
        from plugins.linux.netlink import import_iproute

        self.ipr = import_iproute().IPRoute()  # long-lived sockets: opening one costs ~15 ms
        self.pod_iprs = [nsstate.open_netns(p) for p in pods]
        self.pristine = nsstate.snapshot_here(ipr=self.ipr)
        self.counts: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.messages: dict[str, list[str]] = {}  # sample error messages per outcome
        self.findings: list[dict[str, Any]] = []
        self.n = 0

    # ---- materialising a case

    def _case_dir(self) -> Path:
        d = self.root / "w" / "x" / "y" / f"case{self.n}"  # deep: "{CASE}/../.." stays in root
        d.mkdir(parents=True)
        os.mkfifo(d / "fifo")
        return d

    def _subst(self, text: str, case_dir: Path) -> str:
        return (
            text.replace("{CASE}", str(case_dir))
            .replace("{POD0}", self.pods[0])
            .replace("{POD1}", self.pods[1])
            .replace("{BIN}", str(BIN))
            .replace("{FIFO}", str(case_dir / "fifo"))
        )

    def _contain_json(self, obj: Any, case_dir: Path) -> tuple[Any, bool]:
        """Paths under dataDir/subnetFile/resolvConf kept inside the root; long waits shortened."""
        changed = False
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if isinstance(k, str) and k.lower() in PATH_KEYS and isinstance(v, str):
                    nv = sandbox.contain_path(v, str(case_dir), str(self.root))
                    changed |= nv != v
                    out[k] = nv
                elif (
                    isinstance(k, str)
                    and k.lower() == "subnetfilewait"
                    and isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and 1 < v <= 600
                ):
                    out[k], changed = 1, True
                else:
                    out[k], c = self._contain_json(v, case_dir)
                    changed |= c
            return out, changed
        if isinstance(obj, list):
            items = [self._contain_json(v, case_dir) for v in obj]
            return [i for i, _ in items], any(c for _, c in items)
        return obj, False

    def _contain_bytes(self, data: bytes, case_dir: Path) -> bytes:
        text = data.decode("utf-8", "surrogateescape")
        data = self._subst(text, case_dir).encode("utf-8", "surrogateescape")
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return data
        obj, changed = self._contain_json(obj, case_dir)
        if changed:
            self.counts["sanitized paths"] += 1
            return json.dumps(obj).encode()
        return data

    def _netns_value(self, value: str, case_dir: Path) -> str:
        value = self._subst(value, case_dir)
        probe = value if value.startswith("/") else str(case_dir / value)
        if sandbox.is_foreign_netns(probe, self.allowed_ns):
            self.counts["sanitized netns"] += 1
            return ABSENT_NETNS
        return value

    def _cni_path(self, value: str, case_dir: Path) -> str:
        parts = []
        for p in self._subst(value, case_dir).split(":"):
            ok = (
                p == ""
                or p == str(BIN)
                or os.path.normpath(os.path.join(case_dir, p)).startswith(str(self.root) + "/")
            )
            parts.append(p if ok else str(self.root / "nobin"))
        return ":".join(parts)

    def materialise(self, case: Case, case_dir: Path) -> tuple[dict[str, str], bytes, list[str]]:
        """(env, stdin, argv) with placeholders filled in and every path contained."""
        env: dict[str, str] = {"CNI_PY_DEBUG": "1"}
        for k, v in case.env.items():
            if v is None:
                continue
            if k == "CNI_NETNS":
                env[k] = self._netns_value(v, case_dir)
            elif k == "CNI_PATH":
                env[k] = self._cni_path(v, case_dir)
            elif k in ("NETCONFPATH", "CNI_CACHE_DIR"):
                env[k] = sandbox.contain_path(
                    self._subst(v, case_dir), str(case_dir), str(self.root)
                )
            else:
                env[k] = self._subst(v, case_dir)
        argv = list(case.argv)
        if len(argv) >= 3:
            argv[2] = self._netns_value(argv[2], case_dir)
        for rel, content in case.files.items():
            path = case_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.is_dir():
                continue
            path.write_bytes(self._contain_bytes(content, case_dir))
        return env, self._contain_bytes(case.stdin, case_dir), argv

    # ---- pre-state

    def _pre_conf(self, case_dir: Path) -> dict[str, Any]:
        hl = {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": f"{case_dir}/networks"}
        if self.exe == "flannel":
            (case_dir / "pre-subnet.env").write_bytes(GOOD_SUBNET_ENV)
            return {
                "cniVersion": "1.0.0",
                "name": "fznet",
                "type": "flannel",
                "subnetFile": f"{case_dir}/pre-subnet.env",
                "dataDir": f"{case_dir}/flannel",
                "subnetFileWait": 0,
                "delegate": {"bridge": "fzbr0"},
                "ipam": {"dataDir": f"{case_dir}/networks"},
            }
        if self.exe == "portmap":
            return {
                "cniVersion": "1.0.0",
                "name": "fznet",
                "type": "portmap",
                "capabilities": {"portMappings": True},
                "runtimeConfig": {
                    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
                },
                "prevResult": {
                    "cniVersion": "1.0.0",
                    "interfaces": [{"name": "eth0", "sandbox": self.pods[1]}],
                    "ips": [{"address": f"{PRE_IP}/24", "interface": 0}],
                },
            }
        return {"cniVersion": "1.0.0", "name": "fznet", "type": "bridge", "bridge": "fzbr0",
                "isGateway": True, "ipMasq": True, "ipam": hl}

    def _pre_env(self, command: str) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": "fz-pre", "CNI_NETNS": self.pods[1],
                "CNI_IFNAME": "eth0", "CNI_PATH": str(BIN), "CNI_ARGS": "", "CNI_PY_DEBUG": "1"}

    def _setup_pre(
        self, case: Case, case_dir: Path, att: nsstate.Attachment
    ) -> dict[str, Any] | None:
        if case.pre == "link":
            self.ipr.link("add", ifname="fzbr0", kind="veth", peer="fzbr0p")
            return None
        if case.pre != "attachment":
            return None
        conf = self._pre_conf(case_dir)
        rc, out, err = _call_inproc(self.exe, self._pre_env("ADD"), json.dumps(conf).encode(), [])
        self.counts["plugin calls"] += 1
        att.ids.add("fz-pre")
        if rc != 0:
            self._finding(case, [f"pre-state ADD failed: {out[:300]} {err[-300:]}"])
            return None
        try:
            att.add_result_ips(json.loads(out))
        except ValueError:
            pass
        return conf

    def _teardown_pre(self, case: Case, conf: dict[str, Any] | None) -> list[str]:
        if conf is None:
            return []
        rc, out, err = _call_inproc(self.exe, self._pre_env("DEL"), json.dumps(conf).encode(), [])
        self.counts["plugin calls"] += 1
        return (
            []
            if rc == 0
            else [f"DEL of the pre-state attachment failed after the case: {out[:300]}"]
        )

    # ---- one case

    def _snapshot(self) -> nsstate.Snapshot:
        snap = nsstate.snapshot_here({"root": str(self.root), "varlib": self.varlib}, ipr=self.ipr)
        for i, pod in enumerate(self.pod_iprs):
            for k, v in nsstate.snapshot_netns(pod).items():
                snap[f"pod{i}-{k}"] = frozenset(("pod", i, *it) for it in v)
        return snap

    def _call(self, env: dict[str, str], stdin: bytes, argv: list[str], exec_mode: bool, cwd: Path):
        self.counts["plugin calls"] += 1
        if exec_mode:
            return _call_exec(
                self.exe, env, stdin, argv, str(cwd), self.worker_dir if self.via_worker else None
            )
        return _call_inproc(self.exe, env, stdin, argv)

    def _check(self, command: str, conf_version: str, rc: int, out: str, err: str) -> list[str]:
        if self.exe == "cnitool":
            probs = contract.check_cnitool(command, rc, out, err)
        else:
            probs = contract.check_plugin(command, conf_version, rc, out, err)
        if err.startswith("HANG"):
            probs = [err]
        return [f"{command}: {p}" for p in probs]

    def run_case(self, case: Case) -> None:
        """Run one case end to end and record its outcome and any problem.

        Hypothesis's mutator sometimes produces the very same case again: a repeat is skipped
        (and not counted), so `n` counts distinct cases. Once `limit` of them ran, the next call
        raises EnoughCases, which ends hypothesis's run (main() expects it).
        """
        if self.n >= self.limit:
            raise EnoughCases()
        key = hashlib.sha1(
            json.dumps(case.describe(), sort_keys=True, default=repr).encode()
        ).digest()
        if key in self.seen:
            self.counts["repeats skipped"] += 1
            return
        self.seen.add(key)
        self.n += 1
        if self.progress is not None:
            self.progress.write_text(
                json.dumps({"n": self.n, "case": case.describe()}, default=repr)
            )
        exec_mode = self.exec_every > 0 and self.n % self.exec_every == 0
        self.counts["cases exec" if exec_mode else "cases in-process"] += 1
        if exec_mode:
            self.exec_n += 1
        self.via_worker = exec_mode and self.worker_dir is not None and self.exec_n % 2 == 0
        if self.via_worker:
            self.counts["cases exec through the worker"] += 1
        case_dir = self._case_dir()
        prev_cwd = os.getcwd()
        os.chdir(case_dir)
        problems: list[str] = []
        outcome: list[str] = []
        retained = ""  # a container ID whose saved state a failed DEL may keep
        after: nsstate.Snapshot | None = None
        att = nsstate.Attachment(bridges={"fzbr0", "fzbr1", "cni0"})
        try:
            env, stdin, argv = self.materialise(case, case_dir)
            if case.pre == "attachment" and env.get("CNI_CONTAINERID") == "fz-pre" and \
                    env.get("CNI_COMMAND") == "ADD":
                # A second ADD of an existing attachment is a protocol violation (spec: the
                # runtime must DEL first); flannel even keys its saved file by container ID only.
                case = dataclasses.replace(case, pre="none")
                self.counts["duplicate ADDs run without their pre-state"] += 1
            pre = self._setup_pre(case, case_dir, att)
            before = self._snapshot()
            command = (
                (argv[0] if argv else "") if self.exe == "cnitool" else env.get("CNI_COMMAND", "")
            )
            conf = _json_or_none(stdin)
            conf_version = _conf_version(conf)
            _collect(att, conf, env, argv)
            for rel in case.files:
                if rel.endswith(".conflist"):
                    _collect(att, _json_or_none((case_dir / rel).read_bytes()), env, argv)
            rc, out, err = self._call(env, stdin, argv, exec_mode, case_dir)
            label = _outcome(command, rc, out)
            outcome = [label]
            self.outcomes[label] += 1
            if rc == 1 and len(self.messages.setdefault(label, [])) < 6:
                msg = _json_or_none(out.encode())
                text = msg.get("msg", "") if isinstance(msg, dict) else out
                if self.exe == "cnitool":
                    text = (err.strip().splitlines() or [""])[-1]
                if text not in self.messages[label]:
                    self.messages[label].append(text[:160])
            problems += self._check(command, conf_version, rc, out, err)
            if rc == 0 and out.strip():
                att.add_result_ips(_json_or_none(out.encode()))
            is_add = command in ("ADD", "add")
            # A plugin's failed ADD must leave nothing. cnitool is a runtime: like libcni's
            # AddNetworkList it leaves what the plugins before the failing one did to the DEL
            # that follows (checked below), so its failed `add` is judged after that DEL.
            if is_add and rc != 0 and self.exe != "cnitool":
                mid = nsstate.added(before, self._snapshot())
                cid = env.get("CNI_CONTAINERID", "")
                mid = [
                    it
                    for it in mid
                    if not (it[0] == "file" and cid and os.path.basename(it[2]) == cid)
                ]
                problems += [f"failed ADD left: {p}" for p in nsstate.leaks(mid, att, kernel=False)]
            if is_add:
                self.counts["adds ok" if rc == 0 else "adds failed"] += 1
                del_env, del_argv = dict(env), list(argv)
                if self.exe == "cnitool":
                    del_argv[0] = "del"
                else:
                    del_env["CNI_COMMAND"] = "DEL"
                drc, dout, derr = self._call(del_env, stdin, del_argv, exec_mode, case_dir)
                outcome.append(_outcome("DEL" if self.exe != "cnitool" else "del", drc, dout))
                if drc != 0:
                    said = (
                        (_json_or_none(dout.encode()) or {}).get("msg")
                        if self.exe != "cnitool"
                        else (derr.strip().splitlines() or [""])[-1]
                    )
                    outcome.append(f"DEL said: {str(said)[:300]}")
                code = (_json_or_none(dout.encode()) or {}).get("code") if drc == 1 else None
                if drc != 0 and code not in (6, 7):
                    # A DEL that fails keeps what its retry needs (flannel's saved configuration),
                    # unless no retry can ever succeed (the configuration itself is rejected).
                    # cnitool names the container after the netns path; its error has no code.
                    retained = env.get("CNI_CONTAINERID", "") if self.exe != "cnitool" else \
                        _cnitool_container_id(argv, env)
                problems += self._check(
                    "DEL" if self.exe != "cnitool" else "del", conf_version, drc, dout, derr
                )
                if rc == 0 and drc != 0:
                    problems.append(
                        f"DEL after a successful ADD failed: {dout[:300]} {derr[-300:]}"
                    )
            problems += self._teardown_pre(case, pre)
            after = self._snapshot()
            new_items = nsstate.added(before, after)
            if retained:
                new_items = [
                    it
                    for it in new_items
                    if not (it[0] == "file" and os.path.basename(it[2]) == retained)
                ]
            left = nsstate.leaks(new_items, att)
            problems += [f"left behind: {p}" for p in left]
        except CaseTimeout:
            problems.append("HANG: the harness itself timed out")
        finally:
            os.chdir(prev_cwd)
            self._reset(after, verify=bool(problems) or self.n % 25 == 0)
        if problems:
            self._finding(case, problems, "; ".join(outcome))

    def _finding(self, case: Case, problems: list[str], outcome: str = "") -> None:
        self.counts["cases with problems"] += 1
        if len(self.findings) < 400:
            self.findings.append(
                {"case": case.describe(), "problems": problems, "outcome": outcome, "n": self.n}
            )

    def _reset(self, current: nsstate.Snapshot | None, *, verify: bool) -> None:
        nsstate.reset_here(self.pristine, self.ipr, current)
        for pod in self.pod_iprs:
            nsstate.reset_pod(pod)
        for base in (self.root / "w", Path(self.varlib)):
            for child in base.iterdir() if base.is_dir() else ():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        for child in self.root.iterdir():
            if child.name != "w" and child.name != "summary.json":
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(
                    missing_ok=True
                )
        if not verify:
            return
        now = nsstate.snapshot_here(ipr=self.ipr)
        if {k: now[k] for k in ("links", "addresses", "routes", "rules", "firewall")} != {
            k: self.pristine[k] for k in ("links", "addresses", "routes", "rules", "firewall")
        }:
            drift = nsstate.added(self.pristine, now)
            self.counts["reset drift"] += 1
            if drift:
                self._finding(
                    Case(exe=self.exe, env={}, stdin=b""),
                    [f"reset could not restore the node: {drift[:5]}"],
                )


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _conf_version(conf: Any) -> str:
    from cni.errors import CNIError
    from cni.version import config_version

    if not isinstance(conf, dict):
        return ""
    try:
        return config_version(conf)
    except CNIError:
        return ""


def _collect(att: nsstate.Attachment, conf: Any, env: dict[str, str], argv: list[str]) -> None:
    """Container IDs, addresses and bridge names a case may leave traces of."""
    cid = env.get("CNI_CONTAINERID")
    if cid:
        att.ids.add(cid)
    if cnitool_cid := _cnitool_container_id(argv, env):
        att.ids.add(cnitool_cid)
    if conf is None:
        return
    att.add_result_ips(conf)
    stack = [conf]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            for k, v in obj.items():
                if isinstance(k, str) and k.lower() == "bridge" and isinstance(v, str):
                    att.bridges.add(v)
                    # as the plugin (and Go) decode a lone surrogate escape: U+FFFD
                    att.bridges.add(re.sub("[\ud800-\udfff]", "\ufffd", v))
                stack.append(v)
        elif isinstance(obj, list):
            stack.extend(obj)


def _cnitool_container_id(argv: list[str], env: dict[str, str]) -> str:
    """The container ID cnitool derives from its netns argument ("" when it has none)."""
    if len(argv) < 3:
        return ""
    from cni.libcni.cnitool import container_id_for, go_abs

    try:
        return container_id_for(go_abs(argv[2], env))
    except Exception:  # noqa: BLE001 - an argument cnitool itself refuses names no container
        return ""


def _outcome(command: str, rc: int, out: str) -> str:
    if command not in (
        "ADD",
        "DEL",
        "CHECK",
        "STATUS",
        "GC",
        "VERSION",
        "add",
        "del",
        "check",
        "status",
        "gc",
    ):
        command = "(other command)"
    if rc == 0:
        return f"{command} ok"
    if rc == 1:
        m = re.search(r'"code":\s*(\d+)', out)
        return f"{command} error {m.group(1)}" if m else f"{command} error"
    return f"{command} exit {rc}"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, prove isolation, run the cases, write the summary."""
    global CALL_TIMEOUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--cases", type=int, required=True)
    ap.add_argument("--exec-cases", type=int, default=0)
    ap.add_argument("--pods", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--outer-pid", type=int, required=True, help="a process in the root namespaces")
    ap.add_argument("--call-timeout", type=float, default=CALL_TIMEOUT,
                    help="seconds a plugin call may take before it counts as a hang")
    a = ap.parse_args(argv)
    CALL_TIMEOUT = a.call_timeout

    sandbox.check_isolated(a.outer_pid)
    sandbox.private_default_state(a.outer_pid)
    sandbox.limit_memory()
    os.environ["PATH"] = sandbox.SAFE_PATH
    signal.signal(signal.SIGALRM, _on_alarm)
    import faulthandler

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
    from plugins import multicall

    multicall.set_self(str(BIN / a.exe))  # our delegates then run in this interpreter

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    root = Path(a.root)
    (root / "w").mkdir(parents=True, exist_ok=True)
    runner = Runner(
        a.exe, a.pods.split(","), root, a.cases // a.exec_cases if a.exec_cases else 0, a.cases
    )
    runner.progress = Path(a.out + ".progress")
    seed = a.seed if a.seed is not None else random.randrange(2**32)

    @hseed(seed)
    @settings(max_examples=a.cases * 5, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case_strategy(a.exe))
    def loop(case: Case) -> None:
        runner.run_case(case)

    if a.exe != "cnitool" and a.exec_cases:  # cnitool runs its plugins in its own process
        import tempfile

        runner.worker_dir = tempfile.mkdtemp(
            prefix="fzw-", dir="/tmp"
        )  # short: a socket path's limit
    started = time.monotonic()
    try:
        loop()  # ends by EnoughCases, or on its own when hypothesis has nothing new
    except EnoughCases:
        pass
    finally:
        if runner.worker_dir is not None:
            from conformance.workers import stop_workers

            stop_workers(runner.worker_dir)
            log = Path(runner.worker_dir, "log")
            if log.exists() and log.read_text().strip():
                runner.findings.append(
                    {
                        "problems": ["worker traceback: " + log.read_text()[-3000:]],
                        "case": {"exe": a.exe, "worker log": True},
                        "outcome": "",
                        "n": runner.n,
                    }
                )
            shutil.rmtree(runner.worker_dir, ignore_errors=True)
    summary = {
        "exe": a.exe,
        "seed": seed,
        "cases": runner.n,
        "elapsed_s": round(time.monotonic() - started, 1),
        "counts": dict(runner.counts),
        "outcomes": dict(sorted(runner.outcomes.items())),
        "messages": runner.messages,
        "findings": runner.findings,
    }
    Path(a.out).write_text(json.dumps(summary, indent=1, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
