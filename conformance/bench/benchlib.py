"""Plumbing for bench_cni.py: timed process runs with their peak RSS, and a minimal runtime.

Standard library plus conformance/harness.py (namespaces) and cni.netns (entering one). Nothing here
judges a time: callers print figures.

Processes are started with posix_spawn from the calling thread, so they start in whatever
network namespace that thread is in (callers wrap runs in `cni.netns.in_netns(node)`). stdin,
stdout and stderr are memfds: no pipe can fill up, a burst of 64 children never blocks on
output, and the parent reads everything after the child exits. Each run's wall time is taken
around spawn + wait4; wait4's rusage gives the child's CPU time.

Peak RSS needs care: posix_spawn's vfork hands the parent's memory to the child until it execs,
and the kernel books that high-water mark into the child's ru_maxrss, so every child would
"peak" at the benchmark's own size. With `rss=True` the call goes through GNU time(1), whose
fork starts from its own small image, and its %M is the plugin's real peak (its waited-for
children, e.g. iptables-restore, included).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Our executables use the warm worker unless told otherwise; a call meant to be measured as a
# process of its own says so (the worker variants override it with PYCNI_WORKER=1).
IN_PROCESS = {"PYCNI_WORKER": "0"}


@dataclass
class Run:
    """One finished process: exit status, output, wall time (ms), peak RSS (KiB), CPU (ms)."""

    argv0: str
    command: str
    rc: int
    stdout: bytes
    stderr: bytes
    ms: float
    maxrss_kib: int
    cpu_ms: float = 0.0  # user + system CPU of the process (and its children it waited for)

    def result(self) -> Any:
        """stdout parsed as JSON (None when empty)."""
        return json.loads(self.stdout) if self.stdout.strip() else None

    def describe(self) -> str:
        """A one-paragraph account of a failed run."""
        out = self.stdout.decode(errors="replace").strip()
        err = self.stderr.decode(errors="replace").strip()
        return f"{self.argv0} {self.command} exited {self.rc}: {out} {err}".strip()


class BenchError(RuntimeError):
    """A plugin call failed during a benchmark (the figures would be meaningless)."""


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


TIME = "/usr/bin/time"
_RSS_MARK = "@@bench-maxrss="


@dataclass
class _Pending:
    argv0: str
    command: str
    pid: int
    t0: float
    fds: tuple[int, int, int]


def _spawn(
    argv: list[str], env: dict[str, str], stdin: bytes, label: str | None = None
) -> _Pending:
    fd_in = _memfd("stdin", stdin)
    fd_out = _memfd("stdout")
    fd_err = _memfd("stderr")
    actions = [
        (os.POSIX_SPAWN_DUP2, fd_in, 0),
        (os.POSIX_SPAWN_DUP2, fd_out, 1),
        (os.POSIX_SPAWN_DUP2, fd_err, 2),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    return _Pending(label or argv[0], env.get("CNI_COMMAND", ""), pid, t0, (fd_in, fd_out, fd_err))


def _reap(p: _Pending) -> Run:
    _, status, usage = os.wait4(p.pid, 0)
    ms = (time.perf_counter() - p.t0) * 1000
    fd_in, fd_out, fd_err = p.fds
    try:
        out, err = _read_all(fd_out), _read_all(fd_err)
    finally:
        for fd in p.fds:
            os.close(fd)
    cpu = (usage.ru_utime + usage.ru_stime) * 1000
    return Run(
        p.argv0, p.command, os.waitstatus_to_exitcode(status), out, err, ms, usage.ru_maxrss, cpu
    )


class CpuGroup:
    """A cgroup of our own whose CPU counter covers every process started in it, their
    descendants included, exited or not: a worker a plugin call spawned in the background is
    not a child anyone waits for, so wait4's rusage never sees it, but it is counted here.

    cgroup v1's cpuacct hierarchy (`cpuacct.usage`) when mounted, else cgroup v2 (`cpu.stat`
    usage_usec). `unavailable()` says why none can be used. A process joins by being spawned
    through `run(..., group=...)`: this process moves itself in for the posix_spawn only (so its
    own share is that call's), then back to the cgroup it came from.
    """

    def __init__(self, tag: str) -> None:
        base, own, self.counter = _cpu_hierarchy()
        self.origin = f"{base}{own}".rstrip("/") or base
        self.path = f"{self.origin}/pycni-bench-{tag}-{os.getpid()}"
        os.mkdir(self.path)
        self.seen: set[int] = set()

    @staticmethod
    def unavailable() -> str | None:
        """None when a CpuGroup can be made here, else the reason."""
        try:
            g = CpuGroup("probe")
        except (OSError, LookupError) as e:
            return f"no usable cgroup for CPU accounting ({e})"
        g.close()
        return None

    def usage_ms(self) -> float:
        """CPU (user + system) used so far by every process that ever ran in the group."""
        with open(f"{self.path}/{self.counter}") as f:
            text = f.read()
        if self.counter == "cpuacct.usage":
            return int(text) / 1e6
        for line in text.splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1000
        raise LookupError(f"{self.path}/cpu.stat has no usage_usec")

    def pids(self) -> list[int]:
        """Processes in the group now (also remembered in `seen`)."""
        with open(f"{self.path}/cgroup.procs") as f:
            pids = [int(x) for x in f.read().split()]
        self.seen.update(pids)
        return pids

    def enter(self) -> None:
        """Move this process into the group."""
        with open(f"{self.path}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def leave(self) -> None:
        """Move this process back to the cgroup it came from."""
        with open(f"{self.origin}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def settle(self, quiet_ms: float = 300.0, timeout: float = 15.0) -> float:
        """Wait until the group's CPU counter stops moving (background workers done starting):
        no growth above 1 ms over `quiet_ms`; the counter then (ms)."""
        deadline = time.monotonic() + timeout
        last = self.usage_ms()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            self.pids()
            now = self.usage_ms()
            if now - last > 1.0:
                last, quiet_since = now, time.monotonic()
            elif (time.monotonic() - quiet_since) * 1000 >= quiet_ms:
                break
        return self.usage_ms()

    def end_all(self, wait: float = 5.0) -> None:
        """SIGTERM, then SIGKILL, whatever still runs in the group (workers it started)."""
        import signal

        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not self.pids():
                return

    def close(self) -> None:
        """End what still runs in the group and remove it."""
        try:
            self.end_all()
        finally:
            os.rmdir(self.path)


def _cpu_hierarchy() -> tuple[str, str, str]:
    """(mount point, this process's cgroup in it, the counter file) of a CPU-accounting cgroup."""
    v1, v2 = "", ""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "cpuacct" in controllers.split(","):
                v1 = path
            elif controllers == "":
                v2 = path
    if v1 and os.path.exists(f"/sys/fs/cgroup/cpuacct{v1.rstrip('/')}/cpuacct.usage"):
        return "/sys/fs/cgroup/cpuacct", v1.rstrip("/"), "cpuacct.usage"
    for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if v2 and os.path.exists(f"{mount}{v2.rstrip('/')}/cgroup.procs") and os.path.exists(
            f"{mount}/cgroup.controllers"
        ):
            return mount, v2.rstrip("/"), "cpu.stat"
    raise LookupError("neither cgroup v1 cpuacct nor cgroup v2 is mounted")


def run(
    argv: list[str],
    env: dict[str, str],
    stdin: bytes = b"",
    rss: bool = False,
    group: CpuGroup | None = None,
) -> Run:
    """Run argv to completion; a Run (never raises for a non-zero exit).

    With `rss`, through GNU time so that maxrss_kib is the plugin's own peak (0 when
    /usr/bin/time is missing); the wall time then includes time(1)'s fork (about 1 ms).
    With `group`, the process (and whatever it starts) runs in that CpuGroup.
    """
    if group is not None:
        group.enter()
        try:
            pending = _spawn(argv, env, stdin)
        finally:
            group.leave()
        return _reap(pending)
    if not rss:
        return _reap(_spawn(argv, env, stdin))
    if not os.access(TIME, os.X_OK):
        r = _reap(_spawn(argv, env, stdin))
        r.maxrss_kib = 0
        return r
    r = _reap(_spawn([TIME, "-f", _RSS_MARK + "%M", "--", *argv], env, stdin, label=argv[0]))
    kept = []
    for line in r.stderr.decode(errors="replace").splitlines(keepends=True):
        if line.startswith(_RSS_MARK):
            r.maxrss_kib = int(line[len(_RSS_MARK):].strip() or 0)
        elif not line.startswith("Command exited with non-zero status"):
            kept.append(line)
    r.stderr = "".join(kept).encode()
    return r


def run_burst(jobs: list[tuple[list[str], dict[str, str], bytes]]) -> tuple[float, list[Run]]:
    """Start every job at once, then wait for all; (wall ms from first start to last exit, runs)."""
    t0 = time.perf_counter()
    pending = [_spawn(argv, env, stdin) for argv, env, stdin in jobs]
    runs = [_reap(p) for p in pending]
    return (time.perf_counter() - t0) * 1000, runs


def cni_env(
    command: str, container_id: str, netns: str, cni_path: str, ifname: str = "eth0"
) -> dict[str, str]:
    """The protocol environment a runtime gives a plugin (PATH and the CNI_* variables), plus
    PYCNI_WORKER=0 (IN_PROCESS)."""
    return {
        "PATH": SAFE_PATH,
        **IN_PROCESS,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": "",
        "CNI_PATH": cni_path,
    }


# --------------------------------------------------------------------------- minimal runtime


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


@dataclass
class NetList:
    """A network configuration list, executed the way libcni does (docs/spec-rules.md §2).

    `plugins` are the list's plugin objects; `runtime_config` holds capability arguments
    (e.g. portMappings), given to a plugin only when its `capabilities` asks for them.
    """

    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    runtime_config: dict[str, Any] = field(default_factory=dict)

    def plugin_conf(self, plugin: dict[str, Any], prev: Any) -> bytes:
        """The stdin of one plugin: its object plus name, cniVersion, runtimeConfig, prevResult."""
        conf = dict(plugin)
        conf["name"] = self.name
        conf["cniVersion"] = self.cni_version
        caps = plugin.get("capabilities") or {}
        rc = {k: v for k, v in self.runtime_config.items() if caps.get(k)}
        if rc:
            conf["runtimeConfig"] = rc
        if prev is not None:
            conf["prevResult"] = prev
        return json.dumps(conf).encode()


@dataclass
class ChainRun:
    """What one ADD or DEL of a whole list did: wall ms, the final result, every process."""

    ms: float
    result: Any
    runs: list[Run]

    @property
    def cpu_ms(self) -> float:
        """CPU time of every process of the list (user + system)."""
        return sum(r.cpu_ms for r in self.runs)


def chain(
    netlist: NetList,
    command: str,
    bindir: str,
    container_id: str,
    netns: str,
    cached: Any = None,
    rss: bool = False,
    extra_env: dict[str, str] | None = None,
    group: CpuGroup | None = None,
) -> ChainRun:
    """ADD (in order, chaining prevResult) or DEL (reverse order) of `netlist`.

    DEL passes `cached` (the ADD's final result) as prevResult from version 0.4.0 on, as
    libcni does with its result cache. Raises BenchError on the first failing plugin. With
    `group`, every process runs in that CpuGroup (`rss` is then ignored).
    """
    t0 = time.perf_counter()
    runs: list[Run] = []
    env = {**cni_env(command, container_id, netns, bindir), **(extra_env or {})}
    if command == "ADD":
        prev = None
        for plugin in netlist.plugins:
            r = run(
                [os.path.join(bindir, plugin["type"])],
                env,
                netlist.plugin_conf(plugin, prev),
                rss,
                group,
            )
            runs.append(r)
            if r.rc != 0:
                raise BenchError(r.describe())
            prev = r.result()
        return ChainRun((time.perf_counter() - t0) * 1000, prev, runs)
    prev = cached if _version_tuple(netlist.cni_version) >= (0, 4, 0) else None
    for plugin in reversed(netlist.plugins):
        r = run(
            [os.path.join(bindir, plugin["type"])],
            env,
            netlist.plugin_conf(plugin, prev),
            rss,
            group,
        )
        runs.append(r)
        if r.rc != 0:
            raise BenchError(r.describe())
    return ChainRun((time.perf_counter() - t0) * 1000, None, runs)


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    """What the figures came from: CPU, cores, memory, kernel, load, Python, iptables."""
    import platform
    import subprocess

    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cores"] = str(os.cpu_count())
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        info["memory"] = f"{kib / 1048576:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    info["kernel"] = platform.release()
    info["python"] = platform.python_version()
    try:
        proc = subprocess.run(
            ["iptables", "--version"], capture_output=True, text=True, env={"PATH": SAFE_PATH}
        )
        info["iptables"] = proc.stdout.strip()
    except OSError:
        pass
    return info


def loadavg() -> str:
    """The 1/5/15-minute load averages (other work on the machine skews every figure)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def describe_bindir(bindir: str) -> str:
    """What kind of executables `bindir` holds: a standalone build, dev launchers or Go."""
    info = os.path.join(bindir, "pycni-lib", "BUILD-INFO")
    if os.path.exists(info):
        try:
            with open(info) as f:
                data = json.load(f)
            fingerprint = data.get("fingerprint", "")[:12]
            return f"standalone PyInstaller build {data.get('version', '?')} ({fingerprint})"
        except (OSError, ValueError):
            return "standalone PyInstaller build"
    probe = os.path.join(bindir, "bridge")
    try:
        with open(probe, "rb") as f:
            head = f.read(64)
    except OSError:
        return "missing"
    if head.startswith(b"#!"):
        return "dev launchers (" + head.split(b"\n")[0][2:].decode(errors="replace") + ")"
    return "native executables"
