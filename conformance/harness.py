"""Test harness: throwaway network namespaces, running CNI executables, leak checks.

Plain functions on the standard library (no pytest import), so both `tests/` (through
the fixtures in conformance/fixtures.py) and `conformance/` can use them.

House rule, enforced here as far as a harness can: nothing is ever created in the
machine's root network namespace. Plugins run inside a namespace created by the tests
(`run_plugin(..., in_netns=node.path)`); without `in_netns` they run in a private
throwaway namespace, never in the root one. Every namespace made here is named
``cnitest-<role>-<pid>-<hex>`` so leftovers can be attributed and removed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_BIN = Path("/usr/lib/cni")
NETNS_RUN_DIR = "/run/netns"
NETNS_PREFIX = "cnitest-"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TIMEOUT = 60.0
# The warm worker is on by default (plugins/worker/server.py); tests run every call in-process
# unless a session or a test asks for the worker (`conformance --worker`,
# tests/integration/test_worker.py), so a test's call never starts a worker in the machine's
# /run/pycni. Every environment a test builds from scratch for our executables starts from this one.
IN_PROCESS_ENV = {"PYCNI_WORKER": "0"}
WORKER_DEFAULT_DIR = "/run/pycni"

# The reason text of a skip caused by a package the tests drive that is missing on this machine
# (`make test` installs them: scripts/install-deps.sh test). tests/conftest.py lists such skips
# in the run's summary and fails the run unless PYCNI_ALLOW_SKIPS=1.
MISSING_PREFIX = "missing on this machine: "


def missing_reason(what: str, package: str) -> str:
    """The skip reason for `what` (a command or file) absent here, provided by Debian `package`."""
    return f"{MISSING_PREFIX}{what} (Debian package {package})"


_NAME_RE = re.compile(r"^cnitest-(?P<role>[a-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+$")
_ROLE_RE = re.compile(r"^[a-z0-9]{1,10}$")
_DEMO_NAME_RE = re.compile(r"^pycni-demo-(node|pod-a|pod-b|pod-c)-(?P<pid>\d+)$")  # scripts/demo.py


class HarnessError(RuntimeError):
    """A harness operation failed (a namespace could not be made or removed, ...)."""


# --------------------------------------------------------------------------- environment


def is_root() -> bool:
    """True when the effective uid is 0."""
    return os.geteuid() == 0


def _tool(name: str) -> str:
    """Absolute path of a system tool on SAFE_PATH; HarnessError when absent."""
    found = shutil.which(name, path=SAFE_PATH)
    if not found:
        raise HarnessError(f"{name!r} not found on {SAFE_PATH}")
    return found


def netns_unavailable_reason() -> str | None:
    """Why namespace tests cannot run here (not root, no `ip`), or None when they can."""
    if not is_root():
        return "needs root: creates network namespaces (run the suite as root)"
    if shutil.which("ip", path=SAFE_PATH) is None:
        return "needs iproute2's `ip` to create network namespaces"
    return None


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run argv with a minimal environment (PATH and IN_PROCESS_ENV unless `env` is given),
    capture text output; HarnessError if check fails."""
    data = input.decode() if isinstance(input, bytes) else input
    proc = subprocess.run(
        list(argv),
        input=data,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else {"PATH": SAFE_PATH, **IN_PROCESS_ENV},
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise HarnessError(
            f"{' '.join(argv)} exited {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


# --------------------------------------------------------------------------- namespaces


@dataclass(frozen=True)
class Netns:
    """A named network namespace made by the harness (bind-mounted at /run/netns/<name>)."""

    name: str

    @property
    def path(self) -> str:
        """/run/netns/<name>: what CNI_NETNS or `in_netns` take."""
        return f"{NETNS_RUN_DIR}/{self.name}"

    def exec(self, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`ns_exec(self.name, *argv, **kwargs)`."""
        return ns_exec(self.name, *argv, **kwargs)

    def ip(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`ns_ip(self.name, *args, **kwargs)`."""
        return ns_ip(self.name, *args, **kwargs)


def unique_netns_name(role: str = "node") -> str:
    """A fresh name ``cnitest-<role>-<pid>-<8 hex>``; role is 1-10 of [a-z0-9]."""
    if not _ROLE_RE.match(role):
        raise ValueError(f"bad netns role {role!r}: 1-10 characters of [a-z0-9]")
    return f"{NETNS_PREFIX}{role}-{os.getpid()}-{secrets.token_hex(4)}"


def netns_owner_pid(name: str) -> int | None:
    """The pid encoded in a harness namespace name, or None for any other name."""
    m = _NAME_RE.match(name)
    return int(m.group("pid")) if m else None


def list_netns() -> list[str]:
    """Names from `ip netns list` (the /run/netns entries), in its order."""
    out = _run([_tool("ip"), "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create_netns(role: str = "node", *, lo_up: bool = True) -> Netns:
    """Create a uniquely named network namespace and return it.

    `lo` is set up when lo_up (the default); a runtime-made pod netns has it down, so pass
    lo_up=False for those. On any failure nothing is left behind and HarnessError is raised.
    The caller owns the namespace: remove it with `delete_netns`.
    """
    reason = netns_unavailable_reason()
    if reason:
        raise HarnessError(reason)
    ns = Netns(unique_netns_name(role))
    _run([_tool("ip"), "netns", "add", ns.name])
    try:
        if lo_up:
            ns_ip(ns.name, "link", "set", "lo", "up")
    except BaseException:
        delete_netns(ns)
        raise
    return ns


def delete_netns(ns: Netns | str) -> None:
    """Remove a namespace by name; idempotent (an absent name is fine).

    Raises HarnessError if the name is still listed afterwards. Links inside the
    namespace (and the host ends of veth pairs leading into it) go with it.
    """
    name = ns.name if isinstance(ns, Netns) else ns
    _check_name(name)
    if name not in list_netns():
        return
    proc = _run([_tool("ip"), "netns", "delete", name], check=False)
    if name in list_netns():
        raise HarnessError(f"could not delete netns {name}: {proc.stderr.strip()}")


def stale_netns() -> list[str]:
    """Names ``cnitest-<role>-<pid>-<hex>`` whose pid no longer exists (a crashed run)."""
    return [
        name
        for name in list_netns()
        if (pid := netns_owner_pid(name)) is not None and pid != os.getpid() and not _pid_alive(pid)
    ]


def sweep_stale_netns() -> list[str]:
    """Delete the namespaces `stale_netns()` lists; return their names.

    Only harness-style names whose creating pid is gone are touched, so concurrent
    test runs are left alone. Not called automatically.
    """
    removed = []
    for name in stale_netns():
        delete_netns(name)
        removed.append(name)
    return removed


def delete_own_netns(pid: int | None = None) -> list[str]:
    """Delete every harness namespace created by `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    removed = []
    for name in list_netns():
        if netns_owner_pid(name) == pid:
            delete_netns(name)
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _check_name(name: str) -> None:
    """Refuse names that would make `ip netns exec` act outside a test namespace."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a netns name: {name!r}")


def netns_name_of(ns: Netns | str) -> str:
    """The name for a Netns, a bare name, or a /run/netns/<name> (or /var/run/...) path."""
    if isinstance(ns, Netns):
        return ns.name
    for prefix in (NETNS_RUN_DIR + "/", "/var" + NETNS_RUN_DIR + "/"):
        if ns.startswith(prefix):
            ns = ns[len(prefix) :]
            break
    else:
        if "/" in ns:
            raise ValueError(f"{ns!r} is not under {NETNS_RUN_DIR}; cannot `ip netns exec` it")
    _check_name(ns)
    return ns


def ns_exec(
    ns: Netns | str,
    *argv: str,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run argv inside namespace `ns` (name, /run/netns path or Netns) via `ip netns exec`.

    `ip netns exec` also gives the command a private mount namespace with /sys
    remounted, so /sys/class/net shows the namespace's own links. The environment is
    exactly `env` (default: PATH and IN_PROCESS_ENV). Text output is captured; with check=True a
    non-zero exit raises HarnessError.
    """
    if not argv:
        raise ValueError("ns_exec needs a command")
    name = netns_name_of(ns)
    return _run(
        [_tool("ip"), "netns", "exec", name, *argv],
        check=check,
        input=input,
        env=env,
        timeout=timeout,
    )


def ns_ip(ns: Netns | str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`ip -n <name> <args>`: an iproute2 command against namespace `ns` (no exec needed)."""
    name = netns_name_of(ns)
    return _run([_tool("ip"), "-n", name, *args], **kwargs)


@dataclass(frozen=True)
class StateDirs:
    """Private stand-ins for every on-disk state location a plugin or runtime uses.

    All directories exist; `subnet_env` is only a path (the file is not created).
    """

    root: Path  # the temporary directory holding everything below
    networks: Path  # host-local `dataDir` (instead of /var/lib/cni/networks)
    flannel: Path  # flannel `dataDir` (instead of /var/lib/cni/flannel)
    cache: Path  # libcni result cache dir (instead of /var/lib/cni), has results/
    netconf: Path  # network config dir for cnitool's NETCONFPATH (instead of /etc/cni/net.d)
    subnet_env: Path  # flannel `subnetFile` (instead of /run/flannel/subnet.env)


def make_state_dirs(root: str | os.PathLike[str]) -> StateDirs:
    """Create the StateDirs layout under `root` (which may already exist) and return it."""
    base = Path(root)
    dirs = StateDirs(
        root=base,
        networks=base / "networks",
        flannel=base / "flannel",
        cache=base / "cache",
        netconf=base / "net.d",
        subnet_env=base / "run-flannel" / "subnet.env",
    )
    for d in (
        dirs.networks,
        dirs.flannel,
        dirs.cache / "results",
        dirs.netconf,
        dirs.subnet_env.parent,
    ):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


# --------------------------------------------------------------------------- plugins


class PluginRun(NamedTuple):
    """What one plugin execution produced. Unpacks as (rc, result, stdout, stderr)."""

    returncode: int
    result: Any  # stdout parsed as JSON, or None when empty / not JSON
    stdout: str
    stderr: str


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()
"""Default for `run_plugin(cni_path=...)`: the directory holding the executable."""


def format_cni_args(args: str | Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """CNI_ARGS text: a string as is, pairs joined as ``K=V;K2=V2`` (docs/spec-rules.md §7.2)."""
    if isinstance(args, str):
        return args
    items = args.items() if isinstance(args, Mapping) else args
    return ";".join(f"{k}={v}" for k, v in items)


# `python -m conformance --worker` runs every plugin call of a session through the warm worker:
# it exports these two variables to the session (plugins.worker.client's debug line is taken out of
# each call's stderr and tallied in the file).
SESSION_PLUGIN_ENV = "CNITEST_PLUGIN_ENV"
WORKER_TALLY = "CNITEST_WORKER_TALLY"
_WORKER_LINE = "pycni worker: "


def plugin_env(
    command: str | None,
    *,
    containerid: str | None = "cnitest-container",
    netns: str | None = "",
    ifname: str | None = "eth0",
    cni_path: str | None = "",
    args: str | Mapping[str, str] | Iterable[tuple[str, str]] | None = "",
    extra_env: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The complete environment for a plugin: PATH, PYCNI_WORKER=0 (IN_PROCESS_ENV) and the
    six CNI_* variables.

    A CNI_* parameter given as None is left out entirely (to test "missing"); an empty
    string is exported empty, as libcni does. `extra_env` is applied last; a None value
    there removes the variable.
    """
    env: dict[str, str] = {"PATH": SAFE_PATH, **IN_PROCESS_ENV}
    values = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": containerid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": None if args is None else format_cni_args(args),
        "CNI_PATH": cni_path,
    }
    for key, value in values.items():
        if value is not None:
            env[key] = value
    if os.environ.get(SESSION_PLUGIN_ENV):  # variables a whole session adds to every call
        env.update(json.loads(os.environ[SESSION_PLUGIN_ENV]))
    for key, value in (extra_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _tally_worker_lines(stderr: str) -> str:
    """`stderr` without the worker client's debug lines, which go to the WORKER_TALLY file."""
    path = os.environ.get(WORKER_TALLY)
    if not path or _WORKER_LINE not in stderr:
        return stderr
    lines = stderr.splitlines(keepends=True)
    kept = [ln for ln in lines if not ln.startswith(_WORKER_LINE)]
    with open(path, "a") as f:
        f.writelines(ln[len(_WORKER_LINE):] for ln in lines if ln.startswith(_WORKER_LINE))
    return "".join(kept)


def _stdin_bytes(conf: Mapping[str, Any] | bytes | str | None) -> bytes:
    if conf is None:
        return b""
    if isinstance(conf, bytes):
        return conf
    if isinstance(conf, str):
        return conf.encode()
    return json.dumps(conf).encode()


def run_plugin(
    exe: str | os.PathLike[str],
    command: str | None,
    conf: Mapping[str, Any] | bytes | str | None = None,
    *,
    containerid: str | None = "cnitest-container",
    netns: str | None = "",
    ifname: str | None = "eth0",
    cni_path: str | None = AUTO,
    args: str | Mapping[str, str] | Iterable[tuple[str, str]] | None = "",
    extra_env: Mapping[str, str | None] | None = None,
    in_netns: Netns | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> PluginRun:
    """Execute a CNI plugin once through the protocol and collect what it did.

    * `conf` goes to stdin: a dict is JSON-encoded, bytes/str are sent verbatim, None
      sends nothing.
    * The environment is exactly `plugin_env(...)`: PATH and the CNI_* variables (None
      omits one; `cni_path` defaults to the executable's directory), plus `extra_env`.
      Nothing of the test process's environment leaks in.
    * `in_netns` (a Netns, a name or a /run/netns/<name> path) is where the plugin
      runs, i.e. its "host". Without it, as root, the plugin runs in a private throwaway
      namespace created and deleted around the call, never in the root namespace; not
      as root it runs directly (it then lacks the privilege to change any namespace).
    * Returns PluginRun(returncode, stdout parsed as JSON or None, stdout, stderr).
      A plugin still running after `timeout` seconds is killed (TimeoutExpired raised).
    """
    exe = os.path.abspath(os.fspath(exe))
    if cni_path is AUTO:
        cni_path = os.path.dirname(exe)
    env = plugin_env(
        command,
        containerid=containerid,
        netns=netns,
        ifname=ifname,
        cni_path=cni_path,
        args=args,
        extra_env=extra_env,
    )
    sandbox: Netns | None = None
    if in_netns is None and is_root():
        sandbox = create_netns("run", lo_up=True)
        in_netns = sandbox
    argv = (
        [exe] if in_netns is None else [_tool("ip"), "netns", "exec", netns_name_of(in_netns), exe]
    )
    try:
        proc = subprocess.run(
            argv,
            input=_stdin_bytes(conf),
            capture_output=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    finally:
        if sandbox is not None:
            delete_netns(sandbox)
    stdout = proc.stdout.decode(errors="surrogateescape")
    stderr = _tally_worker_lines(proc.stderr.decode(errors="surrogateescape"))
    result = None
    if stdout.strip():
        try:
            result = json.loads(stdout)
        except ValueError:
            result = None
    return PluginRun(proc.returncode, result, stdout, stderr)


# --------------------------------------------------------------------------- snapshots

_COUNTERS_RE = re.compile(r"\[\d+:\d+\]")
_NFT_COUNTER_RE = re.compile(r"counter packets \d+ bytes \d+")


def _normalise_xtables(text: str) -> str:
    """iptables-save output without its dated comments and with counters zeroed."""
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(_COUNTERS_RE.sub("[0:0]", line) for line in lines)


def snapshot_ns(ns: Netns | str) -> dict[str, str]:
    """Kernel networking state inside `ns`, normalised so equal state compares equal.

    Keys: links (`ip -d -o link`), addresses (`ip -o addr`), routes / routes6 (all
    tables), rules / rules6 (`ip rule`), iptables / ip6tables (iptables-save, dates and
    counters removed), nft (`nft list ruleset`, counters removed). A tool that fails
    gives ``<error: ...>`` for its key. Read-only: none of these commands create
    tables or chains.
    """
    name = netns_name_of(ns)
    ip_cmds = {
        "links": ["-d", "-o", "link", "show"],
        "addresses": ["-o", "addr", "show"],
        "routes": ["-4", "route", "show", "table", "all"],
        "routes6": ["-6", "route", "show", "table", "all"],
        "rules": ["-4", "rule", "show"],
        "rules6": ["-6", "rule", "show"],
    }
    snap: dict[str, str] = {}
    for key, cmd in ip_cmds.items():
        proc = ns_ip(name, *cmd, check=False)
        snap[key] = (
            proc.stdout.strip() if proc.returncode == 0 else f"<error: {proc.stderr.strip()}>"
        )
    for key, tool in (("iptables", "iptables-save"), ("ip6tables", "ip6tables-save")):
        proc = ns_exec(name, tool, check=False)
        snap[key] = (
            _normalise_xtables(proc.stdout)
            if proc.returncode == 0
            else f"<error: {proc.stderr.strip()}>"
        )
    proc = ns_exec(name, "nft", "list", "ruleset", check=False)
    snap["nft"] = (
        _NFT_COUNTER_RE.sub("counter", proc.stdout.strip())
        if proc.returncode == 0
        else f"<error: {proc.stderr.strip()}>"
    )
    return snap


def snapshot_diff(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """For each key whose text changed, a unified diff (before -> after)."""
    import difflib

    out = {}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, ""), after.get(key, "")
        if a != b:
            out[key] = "\n".join(
                difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "after", lineterm="")
            )
    return out


# --------------------------------------------------------------------------- leak audit

UNAVAILABLE = "<unavailable>"


def _xtables_cni_items(text: str) -> set[str]:
    """`table:chain` for chains named CNI-*, and `table:rule` for rules mentioning CNI-."""
    items: set[str] = set()
    table = "?"
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":CNI-"):
            items.add(f"{table}:chain {line[1:].split()[0]}")
        elif line.startswith("-A ") and "CNI-" in line:
            items.add(f"{table}:rule {line}")
    return items


# Where the plugins and cnitool keep state when a configuration does not say otherwise; no test
# may leave anything there (tests point every state path into a temp dir).
DEFAULT_STATE_PATHS = ("/var/lib/cni", "/etc/cni", "/run/flannel")
_EXPIRES_RE = re.compile(r"\s+expires \S+")


def _ip_lines(*args: str) -> frozenset[str] | None:
    """`ip -o <args>` lines (whitespace squeezed, lifetimes dropped), or None when it fails."""
    ip = shutil.which("ip", path=SAFE_PATH)
    proc = _run([ip, "-o", *args], check=False) if ip else None
    if proc is None or proc.returncode != 0:
        return None
    lines = set()
    for line in proc.stdout.splitlines():
        line = _EXPIRES_RE.sub("", line)
        line = re.sub(r"\s+valid_lft .*$", "", line)  # address lifetimes change by themselves
        line = " ".join(line.replace("\\", " ").split())
        if line:
            lines.add(line)
    return frozenset(lines)


def state_files(paths: Iterable[str] = DEFAULT_STATE_PATHS, limit: int = 20000) -> frozenset[str]:
    """Every path under the default state locations (at most `limit`), for the leak audit."""
    found: set[str] = set()
    for top in paths:
        if not os.path.lexists(top):
            continue
        found.add(top)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                found.add(os.path.join(dirpath, name))
                if len(found) >= limit:
                    return frozenset(found)
    return frozenset(found)


def host_state() -> dict[str, frozenset[str]]:
    """Read-only inventory beyond `root_state()`, for the leak audit (docs/reliability.md).

    Keys: addresses, routes / routes6 (all tables) and rules / rules6 of the root
    namespace as `ip -o` lines (lifetimes dropped), state_files: every path under
    DEFAULT_STATE_PATHS, and workers: live warm workers in /run/pycni. A category that cannot be
    read is {"<unavailable>"}.
    """
    state: dict[str, frozenset[str]] = {}
    for key, args in (
        ("addresses", ("addr", "show")),
        ("routes", ("route", "show", "table", "all")),
        ("routes6", ("-6", "route", "show", "table", "all")),
        ("rules", ("rule", "show")),
        ("rules6", ("-6", "rule", "show")),
    ):
        lines = _ip_lines(*args)
        state[key] = lines if lines is not None else frozenset({UNAVAILABLE})
    state["state_files"] = state_files()
    state["workers"] = default_dir_workers()
    return state


def default_dir_workers(directory: str = WORKER_DEFAULT_DIR) -> frozenset[str]:
    """Live warm workers in the machine's default worker directory, as "<socket> pid <pid>"
    (for the leak audit: a test's plugin call without IN_PROCESS_ENV would start one there).
    Reads the lock files itself, like conformance.workers.worker_pids: this module stays on the
    standard library."""
    found = set()
    for lock in Path(directory).glob("*.sock.lock"):
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid > 0 and _pid_alive(pid) and Path(f"/proc/{pid}/environ").exists():
            found.add(f"{lock.name[:-5]} pid {pid}")
    return frozenset(found)


def root_state() -> dict[str, frozenset[str]]:
    """Read-only inventory of the root namespace, for the leak audit.

    Keys: links (names), netns (`ip netns list`), iptables / ip6tables (CNI-* chains
    and rules jumping to them), nft_tables (`nft list tables`). A category that cannot
    be read (e.g. iptables-save when not root) is {"<unavailable>"}.
    """
    state: dict[str, frozenset[str]] = {}
    ip = shutil.which("ip", path=SAFE_PATH)
    proc = _run([ip, "-o", "link", "show"], check=False) if ip else None
    if proc is not None and proc.returncode == 0:
        names = {line.split(":", 2)[1].strip().split("@")[0] for line in proc.stdout.splitlines()}
        state["links"] = frozenset(names)
    else:
        state["links"] = frozenset({UNAVAILABLE})
    try:
        state["netns"] = frozenset(list_netns())
    except (HarnessError, OSError):
        state["netns"] = frozenset({UNAVAILABLE})
    for key, tool in (("iptables", "iptables-save"), ("ip6tables", "ip6tables-save")):
        exe = shutil.which(tool, path=SAFE_PATH)
        proc = _run([exe], check=False) if exe and is_root() else None
        if proc is not None and proc.returncode == 0:
            state[key] = frozenset(_xtables_cni_items(proc.stdout))
        else:
            state[key] = frozenset({UNAVAILABLE})
    exe = shutil.which("nft", path=SAFE_PATH)
    proc = _run([exe, "list", "tables"], check=False) if exe and is_root() else None
    if proc is not None and proc.returncode == 0:
        state["nft_tables"] = frozenset(ln.strip() for ln in proc.stdout.splitlines() if ln.strip())
    else:
        state["nft_tables"] = frozenset({UNAVAILABLE})
    return state


def audit_diff(
    before: Mapping[str, Iterable[str]],
    after: Mapping[str, Iterable[str]],
    *,
    own_pid: int | None = None,
) -> list[str]:
    """Problems found by comparing two `root_state()` inventories; empty means clean.

    Anything present after but not before is a leak, except harness namespaces that
    belong to another *live* process (a concurrent test run). Harness namespaces of
    `own_pid` (default: this process) still present afterwards are always reported,
    even if they already existed before.
    """
    own_pid = os.getpid() if own_pid is None else own_pid
    problems: list[str] = []
    for key in sorted(after):
        new = set(after[key]) - set(before.get(key, ()))
        new.discard(UNAVAILABLE)
        for item in sorted(new):
            if key == "netns":
                pid = netns_owner_pid(item)
                if pid is None and (m := _DEMO_NAME_RE.match(item)):
                    pid = int(m.group("pid"))  # scripts/demo.py's, e.g. a concurrent `make test`'s
                if pid is not None and pid != own_pid and _pid_alive(pid):
                    continue
            problems.append(f"root namespace: new {key} entry {item!r}")
    for item in sorted(set(after.get("netns", ())) & set(before.get("netns", ()))):
        if netns_owner_pid(item) == own_pid:
            problems.append(f"test namespace {item!r} of this run still exists")
    return problems
