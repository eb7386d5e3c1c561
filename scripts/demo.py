#!/usr/bin/env python3
"""Live demonstration of the suite (`make demo`, README "The two commands"): two pods on a flannel
node, in a sandbox.

    python3 scripts/demo.py [--bin DIR]      (as root; DIR defaults to dist/bin of this repo)

What it does, printing every step:

  1. sandbox        a temp dir with an embedded subnet.env (10.244.0.0/16, node subnet
                    10.244.1.1/24, MTU 1450) and the kube-flannel conflist (every state path
                    pointed into the temp dir), a node namespace and two pod namespaces
  2. attach pod-a   `cnitool add cbr0` in the node namespace (flannel -> bridge -> host-local,
                    then portmap with hostPort 8080 -> 80)
  3. attach pod-b   the same without a port mapping
  4. the node       cni0, routes, the bridge ports, the firewall rules, the files on disk
  5. pod to pod     ping both ways, and a full 1450-byte packet with DF set
  6. hostPort       an HTTP server in pod-a reached from the node at 10.244.1.1:8080, and from
                    pod-a itself through the hairpin
  7. default path   the plugins run as a runtime runs them (a process per call, warm worker on,
                    the default), timed: the first call with no worker up (it runs in-process and
                    starts one in the background), calls a warm worker serves, and the same calls
                    with PYCNI_WORKER=0; a third pod (pod-c) attached and deleted each time, the
                    worker ended at the end
  8. delete         `cnitool del` for both pods, then every trace of them checked gone
  9. doctor         `cnitool doctor` on the node: every check of its configuration and state
 10. nothing left   servers stopped, workers ended, namespaces deleted, temp dir removed, the root
                    namespace and the system CNI directories unchanged

Everything happens inside namespaces this script creates: the host's root network namespace,
/opt/cni/bin, /etc/cni/net.d, /var/lib/cni and /run/flannel are never written. Cleanup runs
whatever happens (failure, Ctrl-C, SIGTERM); a server it started dies with it even on SIGKILL,
and namespaces left by a demo that was killed are removed by the next run.

Standard library only, so it runs with the system python3. Exit status: 0 when every step
passed, 1 when a step failed, 2 when a prerequisite is missing, 130/143 when interrupted.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import demo_worker

REPO = Path(__file__).resolve().parent.parent
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETNS_DIR = "/run/netns"
NS_PREFIX = "pycni-demo-"
NS_RE = re.compile(r"^pycni-demo-(node|pod-a|pod-b|pod-c)-(\d+)$")
TMP_RE = re.compile(r"^pycni-demo-(\d+)-[A-Za-z0-9_]+$")
EXECUTABLES = ("cnitool", "flannel", "bridge", "host-local", "portmap")
SYSTEM_DIRS = ("/opt/cni/bin", "/etc/cni/net.d", "/var/lib/cni", "/run/flannel")

NETWORK = "cbr0"
NODE_IP = "10.244.1.1"
POD_SUBNET = ipaddress.ip_network("10.244.1.0/24")
CLUSTER_NET = "10.244.0.0/16"
MTU = 1450
HOST_PORT, CONTAINER_PORT = 8080, 80

# What flanneld would have written to /run/flannel/subnet.env on this node.
SUBNET_ENV = (
    f"FLANNEL_NETWORK={CLUSTER_NET}\n"
    f"FLANNEL_SUBNET={NODE_IP}/24\n"
    f"FLANNEL_MTU={MTU}\n"
    "FLANNEL_IPMASQ=true\n"
)

# The conflist kube-flannel installs as /etc/cni/net.d/10-flannel.conflist.
KUBE_FLANNEL_CONFLIST = {
    "name": NETWORK,
    "cniVersion": "0.3.1",
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}

# A tiny HTTP client run inside a namespace: prints "<status> <body>" or exits 1.
HTTP_CLIENT = r"""
import http.client, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("GET", "/")
    r = c.getresponse()
    sys.stdout.write("%d %s %s" % (r.status, r.reason, r.read().decode(errors="replace").strip()))
except OSError as e:
    sys.stderr.write("%s\n" % (e.strerror or e))
    sys.exit(1)
"""


class StepFailed(Exception):
    """A demonstration step did not do what it should; the message says what."""


class MissingPrerequisite(Exception):
    """Something the demo needs is not on this machine (tool, build, privilege)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; cleanup runs, then the demo exits 128+signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --------------------------------------------------------------------------- output


def say(text: str = "") -> None:
    """Print one line of the demonstration."""
    print(text.rstrip(), flush=True)


def section(number: int, title: str) -> None:
    """A numbered section heading."""
    say()
    say(f"{number}. {title}")
    say("-" * (len(title) + 3))


def show(text: str, indent: str = "    ") -> None:
    """Command output, indented."""
    for line in text.rstrip("\n").splitlines():
        say(indent + line)


def ok(text: str) -> None:
    """A check that passed."""
    say(f"  ok   {text}")


def check(condition: bool, text: str, detail: str = "") -> None:
    """Print `ok text` or raise StepFailed(text: detail)."""
    if not condition:
        raise StepFailed(f"{text}" + (f": {detail}" if detail else ""))
    ok(text)


# --------------------------------------------------------------------------- commands


def tool(name: str) -> str:
    """Absolute path of a system tool, or MissingPrerequisite."""
    found = shutil.which(name, path=SAFE_PATH)
    if not found:
        raise MissingPrerequisite(f"`{name}` not found (run: sh scripts/install-deps.sh)")
    return found


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    must: bool = True,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess:
    """Run a command with a minimal environment; StepFailed when `must` and it exits non-zero."""
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env if env is not None else {"PATH": SAFE_PATH},
        timeout=timeout,
        check=False,
    )
    if must and proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise StepFailed(f"`{' '.join(argv)}` exited {proc.returncode}: {msg}")
    return proc


def _die_with_parent() -> None:
    """In a child before exec: get SIGKILL when the demo process dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; cleanup() still kills it normally
        pass


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """The node and pod namespaces, the temp dir, and the servers of one demo run."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.pid = os.getpid()
        self.node = f"{NS_PREFIX}node-{self.pid}"
        self.pods = {pod: f"{NS_PREFIX}{pod}-{self.pid}" for pod in ("pod-a", "pod-b", "pod-c")}
        self.made_ns: list[str] = []
        self.servers: list[subprocess.Popen] = []
        self.tmp: Path | None = None

    # paths inside the temp dir
    @property
    def subnet_env(self) -> Path:
        return self.tmp / "run-flannel" / "subnet.env"

    @property
    def flannel_dir(self) -> Path:
        return self.tmp / "flannel"

    @property
    def networks_dir(self) -> Path:
        return self.tmp / "networks"

    @property
    def cache_dir(self) -> Path:
        return self.tmp / "cache"

    @property
    def netconf_dir(self) -> Path:
        return self.tmp / "net.d"

    @property
    def worker_dir(self) -> Path:
        return self.tmp / "workers"  # the warm workers' private directory (step 7)

    def conflist(self) -> dict:
        """The kube-flannel conflist with every state path pointed into the temp dir."""
        conf = json.loads(json.dumps(KUBE_FLANNEL_CONFLIST))
        flannel = conf["plugins"][0]
        flannel["subnetFile"] = str(self.subnet_env)
        flannel["dataDir"] = str(self.flannel_dir)
        flannel["ipam"] = {"dataDir": str(self.networks_dir)}  # merged into the delegate's ipam
        return conf

    def cnitool_env(self) -> dict[str, str]:
        """The environment cnitool runs with (no CAP_ARGS)."""
        return {
            "PATH": SAFE_PATH,
            # cnitool runs our plugins in its own process; should one be executed as a separate
            # file, it must not start a warm worker that outlives the demo (and holds its node
            # namespace) by 30 s: `make demo` leaves nothing behind
            "PYCNI_WORKER": "0",
            "NETCONFPATH": str(self.netconf_dir),
            "CNI_PATH": str(self.bin_dir),
            "CNI_CACHE_DIR": str(self.cache_dir),
        }

    def create(self) -> None:
        """Make the temp dir, its files, and the three namespaces (node with lo up)."""
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{NS_PREFIX}{self.pid}-"))
        for d in (self.subnet_env.parent, self.flannel_dir, self.networks_dir, self.cache_dir,
                  self.netconf_dir, self.tmp / "www"):
            d.mkdir(parents=True, exist_ok=True)
        self.subnet_env.write_text(SUBNET_ENV)
        (self.netconf_dir / "10-flannel.conflist").write_text(
            json.dumps(self.conflist(), indent=2) + "\n"
        )
        (self.tmp / "www" / "index.html").write_text("hello from pod-a\n")
        for name in (self.node, *self.pods.values()):
            run([tool("ip"), "netns", "add", name])
            self.made_ns.append(name)
        run([tool("ip"), "-n", self.node, "link", "set", "lo", "up"])

    def ns_path(self, pod: str) -> str:
        return f"{NETNS_DIR}/{self.pods[pod]}"

    def in_ns(self, ns: str, *argv: str, must: bool = True, env: dict[str, str] | None = None,
              timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run argv inside namespace `ns` (ip netns exec)."""
        return run([tool("ip"), "netns", "exec", ns, *argv], must=must, env=env, timeout=timeout)

    def ip(self, ns: str, *args: str) -> str:
        """`ip -n ns args` output."""
        return run([tool("ip"), "-n", ns, *args]).stdout

    def cnitool(
        self, command: str, pod: str, cap_args: dict | None = None
    ) -> tuple[subprocess.CompletedProcess, float]:
        """cnitool <command> cbr0 <pod netns>, run inside the node namespace; (process, seconds)."""
        env = self.cnitool_env()
        if cap_args is not None:
            env["CAP_ARGS"] = json.dumps(cap_args)
        start = time.monotonic()
        proc = self.in_ns(
            self.node,
            str(self.bin_dir / "cnitool"),
            command,
            NETWORK,
            self.ns_path(pod),
            env=env,
            must=False,
            timeout=120,
        )
        return proc, time.monotonic() - start

    def start_server(self, pod: str) -> str:
        """An HTTP server on port 80 inside `pod` serving www/; returns what it is."""
        www = str(self.tmp / "www")
        busybox = shutil.which("busybox", path=SAFE_PATH)
        if busybox and "httpd" in run([busybox, "--list"], must=False).stdout.split():
            argv, what = (
                [busybox, "httpd", "-f", "-p", str(CONTAINER_PORT), "-h", www],
                "busybox httpd",
            )
        else:
            argv = [
                sys.executable,
                "-m",
                "http.server",
                str(CONTAINER_PORT),
                "--bind",
                "0.0.0.0",
                "--directory",
                www,
            ]
            what = "python3 -m http.server"
        proc = subprocess.Popen(
            [tool("ip"), "netns", "exec", self.pods[pod], *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={"PATH": SAFE_PATH}, start_new_session=True, preexec_fn=_die_with_parent,
        )
        self.servers.append(proc)
        return what

    def http_get(
        self, ns: str, host: str, port: int, timeout: float = 3.0
    ) -> subprocess.CompletedProcess:
        """GET http://host:port/ from inside `ns`."""
        return self.in_ns(ns, sys.executable, "-c", HTTP_CLIENT, host, str(port), str(timeout),
                          must=False, timeout=timeout + 30)

    def stop_servers(self) -> None:
        """Kill the servers this run started (by process group id) and reap them."""
        while self.servers:
            proc = self.servers.pop()
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def destroy(self) -> list[str]:
        """Stop servers, delete our namespaces, remove the temp dir; returns problems (empty =
        clean)."""
        problems = []
        self.stop_servers()
        if self.tmp is not None:
            demo_worker.end_workers(self.worker_dir)
        ip = shutil.which("ip", path=SAFE_PATH)
        for name in reversed(self.made_ns):
            if ip and os.path.exists(f"{NETNS_DIR}/{name}"):
                proc = subprocess.run([ip, "netns", "del", name], capture_output=True, text=True,
                                      env={"PATH": SAFE_PATH}, check=False, timeout=60)
                if proc.returncode != 0:
                    problems.append(f"ip netns del {name}: {proc.stderr.strip()}")
        self.made_ns = [n for n in self.made_ns if os.path.exists(f"{NETNS_DIR}/{n}")]
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.tmp.exists():
                problems.append(f"could not remove {self.tmp}")
            else:
                self.tmp = None
        return problems


# --------------------------------------------------------------------------- inspection helpers


def list_netns() -> list[str]:
    """Names from `ip netns list`."""
    out = run([tool("ip"), "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_names(text: str) -> list[str]:
    """Interface names from `ip -o link` / `ip -br link` output."""
    names = []
    for line in text.splitlines():
        if not line.strip():
            continue
        field = line.split(":", 2)[1] if re.match(r"^\d+:", line) else line.split()[0]
        names.append(field.strip().split("@")[0])
    return names


def firewall_backend() -> str:
    """What portmap will use here: iptables when iptables-save/restore exist, else nftables."""
    if shutil.which("iptables-save", path=SAFE_PATH) and shutil.which(
        "iptables-restore", path=SAFE_PATH
    ):
        return "iptables"
    return "nftables"


def cni_firewall(sb: Sandbox, ns: str) -> list[str]:
    """The CNI-related NAT rules inside `ns`: iptables-save -t nat lines, or the nft cni tables."""
    if firewall_backend() == "iptables":
        out = sb.in_ns(ns, tool("iptables-save"), "-t", "nat").stdout
        lines = [re.sub(r" \[\d+:\d+\]$", "", ln) for ln in out.splitlines()]
        return [ln for ln in lines if ln.startswith((":CNI-", "-A")) and "CNI-" in ln]
    out = sb.in_ns(ns, tool("nft"), "list", "ruleset").stdout
    keep, lines = False, []
    for ln in out.splitlines():
        if ln.startswith("table "):
            keep = "cni" in ln
        if keep:
            lines.append(ln)
    return lines


def leases(sb: Sandbox) -> list[str]:
    """host-local's reservation files (addresses), without its lock and last-reserved files."""
    d = sb.networks_dir / NETWORK
    if not d.exists():
        return []
    return sorted(
        n for n in os.listdir(d) if n != "lock" and not n.startswith(("last_reserved_ip", "."))
    )


def listing(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


def root_inventory() -> dict[str, object]:
    """Read-only view of what the demo must not change outside its sandbox."""
    inv: dict[str, object] = {
        "root links": sorted(link_names(run([tool("ip"), "-o", "link", "show"]).stdout)),
    }
    if shutil.which("iptables-save", path=SAFE_PATH):
        out = run([tool("iptables-save")], must=False).stdout
        inv["root CNI iptables rules"] = sorted(
            re.sub(r" \[\d+:\d+\]$", "", ln) for ln in out.splitlines() if "CNI-" in ln
        )
    if shutil.which("nft", path=SAFE_PATH):
        out = run([tool("nft"), "list", "tables"], must=False).stdout
        inv["root nft tables"] = sorted(ln.strip() for ln in out.splitlines() if ln.strip())
    for d in SYSTEM_DIRS:
        p = Path(d)
        inv[d] = (p.exists(), listing(p) if p.is_dir() else [])
    return inv


def _dead(pid: str) -> bool:
    return int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}")


def remove_stale() -> list[str]:
    """Delete the namespaces and temp dirs of demo runs whose process is gone (killed by SIGKILL).

    Only names this script makes (pycni-demo-<role>-<pid>, <tmp>/pycni-demo-<pid>-*) whose pid
    no longer exists are touched.
    """
    removed = []
    for name in list_netns():
        m = NS_RE.match(name)
        if m and _dead(m.group(2)):
            run([tool("ip"), "netns", "del", name], must=False)
            removed.append(name)
    tmp = Path(tempfile.gettempdir())
    for entry in sorted(tmp.glob(f"{NS_PREFIX}*")):
        m = TMP_RE.match(entry.name)
        if m and _dead(m.group(1)) and entry.is_dir() and not entry.is_symlink():
            demo_worker.end_workers(entry / "workers")  # a worker of a killed demo stays resident
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed


def preflight(bin_dir: Path) -> None:
    """MissingPrerequisite unless root, the tools and the built executables are all there."""
    if sys.platform != "linux":
        raise MissingPrerequisite("the demo needs Linux network namespaces")
    if os.geteuid() != 0:
        raise MissingPrerequisite("run as root: the demo creates network namespaces")
    for name in ("ip", "ping"):
        tool(name)
    if firewall_backend() == "nftables":
        tool("nft")
    missing = [n for n in EXECUTABLES if not os.access(bin_dir / n, os.X_OK)]
    if missing:
        raise MissingPrerequisite(f"{bin_dir} lacks {', '.join(missing)} (run: make build)")


# --------------------------------------------------------------------------- the steps


def describe_build(bin_dir: Path) -> str:
    info = bin_dir / "pycni-lib" / "BUILD-INFO"
    try:
        data = json.loads(info.read_text())
        return (
            f"standalone build {data.get('version', '?')} (Python {data.get('python', '?')} inside)"
        )
    except (OSError, ValueError):
        return "executables (not a standalone build)"


def step_sandbox(sb: Sandbox) -> None:
    section(1, "sandbox")
    stale = remove_stale()
    if stale:
        say(f"  removed what a killed demo left: {', '.join(stale)}")
    sb.create()
    say(f"  executables   {sb.bin_dir}: {describe_build(sb.bin_dir)}")
    say(f"  temp dir      {sb.tmp}")
    say(
        f"  node netns    {sb.node}   (cnitool and the plugins run here: its cni0, routes, "
        f"firewall)"
    )
    for pod, name in sb.pods.items():
        say(f"  {pod} netns   {name}")
    say(f"  subnet.env    {sb.subnet_env}   (what flanneld would have written)")
    show(SUBNET_ENV, "      ")
    say(
        f"  conflist      {sb.netconf_dir / '10-flannel.conflist'}   (kube-flannel's, state paths "
        f"in the temp dir)"
    )
    show((sb.netconf_dir / "10-flannel.conflist").read_text(), "      ")
    say("  cnitool environment:")
    for k, v in sb.cnitool_env().items():
        if k != "PATH":
            say(f"      {k}={v}")
    say(f"  firewall      portmap will use {firewall_backend()}")


def step_attach(number: int, sb: Sandbox, pod: str, cap_args: dict | None) -> str:
    section(number, f"attach {pod}")
    extra = f"CAP_ARGS='{json.dumps(cap_args)}' " if cap_args else ""
    say(f"  $ {extra}cnitool add {NETWORK} {sb.ns_path(pod)}")
    proc, secs = sb.cnitool("add", pod, cap_args)
    if proc.returncode != 0:
        raise StepFailed(f"cnitool add for {pod} exited {proc.returncode}: {proc.stderr.strip()}")
    result = json.loads(proc.stdout)
    say(f"  result (cniVersion {result.get('cniVersion')}, {secs * 1000:.0f} ms):")
    ifaces = result.get("interfaces", [])
    for iface in ifaces:
        where = f"in {iface['sandbox']}" if iface.get("sandbox") else "on the node"
        say(f"      interface {iface['name']:<16} {iface.get('mac', ''):<18} {where}")
    for ipc in result.get("ips", []):
        say(f"      ip        {ipc['address']:<16} gateway {ipc.get('gateway', '-')}")
    for route in result.get("routes", []):
        say(f"      route     {route['dst']:<16} via {route.get('gw') or 'the gateway'}")
    check(len(result.get("ips", [])) == 1, "one IPv4 address allocated", proc.stdout)
    addr = ipaddress.ip_interface(result["ips"][0]["address"])
    check(addr.ip in POD_SUBNET, f"{addr} is in the node subnet {POD_SUBNET}")
    pod_ip = str(addr.ip)

    say(f"  inside {pod}:")
    show(sb.ip(sb.pods[pod], "-br", "addr", "show", "dev", "eth0"), "      $ ip -br addr: ")
    link = sb.ip(sb.pods[pod], "link", "show", "dev", "eth0")
    show(link.splitlines()[0], "      $ ip link:     ")
    routes = sb.ip(sb.pods[pod], "route", "show")
    say("      $ ip route:")
    show(routes, "          ")
    check(
        f"{addr.ip}/{addr.network.prefixlen}"
        in sb.ip(sb.pods[pod], "-o", "addr", "show", "dev", "eth0"),
        f"eth0 has {addr}",
    )
    check(f"mtu {MTU} " in link, f"eth0 MTU is {MTU} (FLANNEL_MTU)")
    check(
        f"default via {NODE_IP} dev eth0" in routes,
        f"default route via {NODE_IP} (isDefaultGateway)",
    )
    check(
        f"{CLUSTER_NET} via {NODE_IP} dev eth0" in routes,
        f"cluster network {CLUSTER_NET} via {NODE_IP}",
    )
    return pod_ip


def step_node(sb: Sandbox, ips: dict[str, str]) -> None:
    section(4, "the node")
    say("  $ ip -br addr")
    show(sb.ip(sb.node, "-br", "addr", "show"), "      ")
    say("  $ ip route")
    show(sb.ip(sb.node, "route", "show"), "      ")
    cni0 = sb.ip(sb.node, "-d", "link", "show", "cni0")
    check(f"mtu {MTU} " in cni0 and "bridge" in cni0, f"cni0 is a bridge with MTU {MTU}")
    check(f"{NODE_IP}/24" in sb.ip(sb.node, "-o", "addr", "show", "dev", "cni0"),
          f"cni0 holds the gateway {NODE_IP}/24")
    ports = (
        run([tool("bridge"), "-n", sb.node, "-d", "link", "show"]).stdout
        if shutil.which("bridge", path=SAFE_PATH)
        else ""
    )
    if ports:
        say("  $ bridge link   (veth ports of cni0)")
        for line in ports.splitlines():
            if re.match(r"^\d+:", line):
                say("      " + re.sub(r"<[^>]*> ", "", line))
            elif "hairpin" in line:
                say("          " + " ".join(re.findall(r"hairpin \S+", line)))
        check(ports.count("hairpin on") == 2, "both veth ports have hairpin mode on (hairpinMode)")
    veths = link_names(sb.ip(sb.node, "-o", "link", "show", "type", "veth"))
    check(len(veths) == 2, f"two veths on the node: {', '.join(veths)}")
    shown = ("iptables-save -t nat | grep CNI-" if firewall_backend() == "iptables"
             else "nft list ruleset (cni tables)")
    say(f"  $ {shown}")
    rules = cni_firewall(sb, sb.node)
    show("\n".join(rules), "      ")
    dnat = f"{ips['pod-a']}:{CONTAINER_PORT}"
    check(any(dnat in r for r in rules), f"hostPort {HOST_PORT} is DNATed to {dnat} (portmap)")
    check(not any(ips["pod-b"] in r for r in rules), "pod-b (no port mappings) has no rules")
    say("  state on disk (all in the temp dir):")
    say(f"      host-local leases   {sb.networks_dir / NETWORK}: {', '.join(leases(sb))}")
    saved = listing(sb.flannel_dir)
    say(f"      flannel saved conf  {sb.flannel_dir}: {', '.join(saved)}")
    if saved:
        show((sb.flannel_dir / saved[0]).read_text(), "          ")
    cached = listing(sb.cache_dir / "results")
    say(f"      result cache        {sb.cache_dir / 'results'}: {', '.join(cached)}")
    check(leases(sb) == sorted([ips["pod-a"], ips["pod-b"]]), "one lease per pod")
    check(
        len(saved) == 2 and len(cached) == 2,
        "one saved delegate config and one cache entry per pod",
    )


def ping(
    sb: Sandbox, ns: str, target: str, *extra: str, count: int = 3
) -> subprocess.CompletedProcess:
    return sb.in_ns(
        ns, tool("ping"), "-4", "-c", str(count), "-i", "0.2", "-W", "2", *extra, target, must=False
    )


def ping_summary(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "packets transmitted" in ln or ln.startswith("rtt")]
    return "; ".join(lines) if lines else (text.strip().splitlines() or ["no output"])[-1]


def step_ping(sb: Sandbox, ips: dict[str, str]) -> None:
    section(5, "pod to pod")
    for src, dst in (("pod-a", "pod-b"), ("pod-b", "pod-a")):
        proc = ping(sb, sb.pods[src], ips[dst])
        say(f"  $ ping {ips[dst]}   (from {src} to {dst})")
        show(ping_summary(proc.stdout), "      ")
        check(proc.returncode == 0, f"{src} reaches {dst}", proc.stderr.strip())
    proc = ping(sb, sb.node, ips["pod-a"])
    say(f"  $ ping {ips['pod-a']}   (from the node)")
    show(ping_summary(proc.stdout), "      ")
    check(proc.returncode == 0, "the node reaches pod-a", proc.stderr.strip())
    size = MTU - 28
    proc = ping(sb, sb.pods["pod-a"], ips["pod-b"], "-M", "do", "-s", str(size), count=1)
    say(f"  $ ping -M do -s {size} {ips['pod-b']}   (a {MTU}-byte packet, do not fragment)")
    show(ping_summary(proc.stdout), "      ")
    check(proc.returncode == 0, f"a full {MTU}-byte packet passes", proc.stderr.strip())
    proc = ping(sb, sb.pods["pod-a"], ips["pod-b"], "-M", "do", "-s", str(size + 1), count=1)
    say(f"  $ ping -M do -s {size + 1} {ips['pod-b']}")
    show((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1], "      ")
    check(proc.returncode != 0, f"one byte more does not fit the pod MTU {MTU}")


def step_hostport(sb: Sandbox, ips: dict[str, str]) -> None:
    section(6, "hostPort")
    what = sb.start_server("pod-a")
    say(f"  started {what} on port {CONTAINER_PORT} inside pod-a")
    deadline = time.monotonic() + 10
    while True:
        proc = sb.http_get(sb.node, ips["pod-a"], CONTAINER_PORT, timeout=1)
        if proc.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(
        proc.returncode == 0,
        f"the server answers at {ips['pod-a']}:{CONTAINER_PORT}",
        proc.stderr.strip(),
    )
    say(f"  $ GET http://{NODE_IP}:{HOST_PORT}/   (from the node, to its own address)")
    proc = sb.http_get(sb.node, NODE_IP, HOST_PORT)
    show(proc.stdout or proc.stderr, "      ")
    check(proc.returncode == 0 and "200" in proc.stdout and "hello from pod-a" in proc.stdout,
          f"node:{HOST_PORT} reaches pod-a:{CONTAINER_PORT}", proc.stderr.strip())
    say(
        f"  $ GET http://{NODE_IP}:{HOST_PORT}/   (from pod-a itself: out to the node and back, "
        f"hairpin)"
    )
    proc = sb.http_get(sb.pods["pod-a"], NODE_IP, HOST_PORT)
    show(proc.stdout or proc.stderr, "      ")
    check(proc.returncode == 0 and "hello from pod-a" in proc.stdout,
          "hairpin: pod-a reaches its own hostPort", proc.stderr.strip())


# Step 7: how long the plugin calls take when a runtime runs them (not through cnitool, which
# runs the plugins inside its own process)
TIMED_CYCLES = 3


def _flannel_calls(sb: Sandbox, command: str, cid: str, extra_env: dict[str, str]) -> dict:
    """One flannel call for pod-c, as a runtime makes it: the executable, its env, its stdin."""
    conf = dict(
        sb.conflist()["plugins"][0], name=NETWORK, cniVersion=KUBE_FLANNEL_CONFLIST["cniVersion"]
    )
    env = {
        "PATH": SAFE_PATH,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": sb.ns_path("pod-c"),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(sb.bin_dir),
        "PYCNI_WORKER_DIR": str(sb.worker_dir),
        "PYCNI_WORKER_DEBUG": "1",
        **extra_env,
    }
    return {"exe": str(sb.bin_dir / "flannel"), "env": env, "stdin": json.dumps(conf)}


def _cycles(sb: Sandbox, tag: str, count: int, extra_env: dict[str, str]) -> list[dict]:
    """`count` ADD+DEL cycles of pod-c; every call's figures (StepFailed when one fails)."""
    calls = []
    for i in range(count):
        calls += [_flannel_calls(sb, "ADD", f"demo-{tag}-{i}", extra_env),
                  _flannel_calls(sb, "DEL", f"demo-{tag}-{i}", extra_env)]
    try:
        runs = demo_worker.timed_calls(
            [tool("ip"), "netns", "exec", sb.node], sys.executable, calls
        )
    except RuntimeError as e:
        raise StepFailed(str(e)) from None
    for call, r in zip(calls, runs, strict=True):
        if r["rc"] != 0:
            raise StepFailed(
                f"flannel {call['env']['CNI_COMMAND']} exited {r['rc']}: {r['stdout'].strip()}"
            )
    return runs


def _route(run: dict) -> str:
    """Which way the call went, from the client's PYCNI_WORKER_DEBUG=1 line."""
    for line in run["stderr"].splitlines():
        if line.startswith("pycni worker:"):
            return line[len("pycni worker:"):].strip()
    return "?"


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def step_default_path(sb: Sandbox) -> None:
    section(7, "the default path: a process per call, served by a warm worker")
    say(
        "  pod-c attached and deleted by running flannel (-> bridge -> host-local) as a runtime "
        "runs it,"
    )
    say(f"  inside the node namespace; PYCNI_WORKER_DIR={sb.worker_dir} (empty at first),")
    say(
        "  PYCNI_WORKER_DEBUG=1 makes each call say which way it went. ms: wall / CPU of the "
        "process"
    )
    os.makedirs(sb.worker_dir, mode=0o700)
    cold = _cycles(sb, "cold", 1, {})
    started = demo_worker.workers_of(sb.worker_dir)
    say(f"  cold ADD   {cold[0]['ms']:6.0f} / {cold[0]['cpu']:4.0f}   {_route(cold[0])}")
    say(f"  cold DEL   {cold[1]['ms']:6.0f} / {cold[1]['cpu']:4.0f}   {_route(cold[1])}")
    check(len(started) >= 1, f"the first call started a worker in the background (pids {started})")
    deadline = time.monotonic() + 20
    while not demo_worker.accepting(sb.worker_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    warm = _cycles(sb, "warm", TIMED_CYCLES, {})
    served = sum(1 for r in warm if _route(r) == "served")
    for name, runs in (("warm ADD", warm[0::2]), ("warm DEL", warm[1::2])):
        say(
            f"  {name}   {_median([r['ms'] for r in runs]):6.0f} / "
            f"{_median([r['cpu'] for r in runs]):4.0f}"
            f"   median of {len(runs)}, {_route(runs[-1])}"
        )
    check(
        served == len(warm),
        f"every warm call was served by the worker ({served} of {len(warm)})",
        "; ".join(_route(r) for r in warm),
    )
    off = _cycles(sb, "off", TIMED_CYCLES, {"PYCNI_WORKER": "0"})
    for name, runs in (("PYCNI_WORKER=0 ADD", off[0::2]), ("PYCNI_WORKER=0 DEL", off[1::2])):
        say(
            f"  {name} {_median([r['ms'] for r in runs]):6.0f} / "
            f"{_median([r['cpu'] for r in runs]):4.0f}"
            f"   median of {len(runs)}, every call in its own interpreter"
        )
    off_add = _median([r["ms"] for r in off[0::2]])
    warm_add = _median([r["ms"] for r in warm[0::2]])
    say(
        f"  the cold ADD took {cold[0]['ms'] / off_add:.2f}x a PYCNI_WORKER=0 ADD (it works "
        f"in-process and"
        f" starts {len(started)} worker(s) beside it);"
    )
    say(f"  a warm ADD took {warm_add / off_add:.2f}x ({warm_add:.0f} ms against {off_add:.0f}).")
    ended = demo_worker.end_workers(sb.worker_dir)
    check(demo_worker.workers_of(sb.worker_dir) == [], f"worker(s) ended: pids {ended}")
    check(
        "eth0" not in link_names(sb.ip(sb.pods["pod-c"], "-o", "link", "show")), "pod-c has no eth0"
    )


def step_delete(sb: Sandbox, ips: dict[str, str]) -> None:
    section(8, "delete")
    for pod in ("pod-b", "pod-a"):
        say(
            f"  $ cnitool del {NETWORK} {sb.ns_path(pod)}"
            + ("   (CAP_ARGS from the result cache)" if pod == "pod-a" else "")
        )
        proc, secs = sb.cnitool("del", pod)
        if proc.returncode != 0:
            raise StepFailed(
                f"cnitool del for {pod} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        ok(f"{pod} deleted ({secs * 1000:.0f} ms)")
    for pod in ("pod-a", "pod-b"):
        check(
            "eth0" not in link_names(sb.ip(sb.pods[pod], "-o", "link", "show")),
            f"{pod} has no eth0",
        )
    veths = link_names(sb.ip(sb.node, "-o", "link", "show", "type", "veth"))
    check(veths == [], "no veth left on the node", ", ".join(veths))
    check(leases(sb) == [], "no host-local leases", ", ".join(leases(sb)))
    check(
        listing(sb.flannel_dir) == [],
        "no saved flannel delegate config",
        ", ".join(listing(sb.flannel_dir)),
    )
    check(
        listing(sb.cache_dir / "results") == [],
        "result cache empty",
        ", ".join(listing(sb.cache_dir / "results")),
    )
    rules = cni_firewall(sb, sb.node)
    per_pod = [r for r in rules if "CNI-DN-" in r or ips["pod-a"] in r or ips["pod-b"] in r]
    check(per_pod == [], "no per-pod firewall chain or rule", "; ".join(per_pod))
    proc = sb.http_get(sb.node, NODE_IP, HOST_PORT, timeout=2)
    check(
        proc.returncode != 0,
        f"hostPort {HOST_PORT} no longer answers ({proc.stderr.strip() or proc.stdout.strip()})",
    )
    shared = [r.split()[0].lstrip(":") if r.startswith(":") else r.strip() for r in rules
              if r.startswith((":", "table"))]
    say("  kept on the node for the next pod, as the reference keeps them: cni0"
        + (f" and {', '.join(shared)}" if shared else "") + " (they go with the node namespace)")


def step_nothing_left(sb: Sandbox, before: dict[str, object]) -> None:
    section(10, "nothing left")
    names = list(sb.made_ns)
    tmp = sb.tmp
    problems = sb.destroy()
    if problems:
        raise StepFailed("; ".join(problems))
    ok("servers stopped")
    left = [n for n in list_netns() if n in names]
    check(left == [], f"namespaces deleted: {', '.join(names)}", ", ".join(left))
    check(tmp is not None and not tmp.exists(), f"temp dir removed: {tmp}")
    after = root_inventory()
    for key in before:
        check(after.get(key) == before[key], f"{key}: unchanged",
              f"before {before[key]!r}, after {after.get(key)!r}")


def step_doctor(sb: Sandbox) -> None:
    """`cnitool doctor` on the node the pods left: every check passes (exit status 0)."""
    section(9, "doctor")
    say(
        "  $ cnitool doctor   (in the node namespace; NETCONFPATH, CNI_PATH, CNI_CACHE_DIR as "
        "above)"
    )
    proc = sb.in_ns(
        sb.node, str(sb.bin_dir / "cnitool"), "doctor", env=sb.cnitool_env(), must=False
    )
    show(proc.stdout or proc.stderr, "      ")
    check(proc.returncode == 0, "cnitool doctor finds nothing failing on the node",
          f"exit status {proc.returncode}")


# --------------------------------------------------------------------------- main


def run_demo(sb: Sandbox) -> None:
    """Every step in order; StepFailed on the first one that does not hold."""
    before = root_inventory()
    step_sandbox(sb)
    cap = {
        "portMappings": [
            {"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
        ]
    }
    ips = {"pod-a": step_attach(2, sb, "pod-a", cap)}
    ips["pod-b"] = step_attach(3, sb, "pod-b", None)
    step_node(sb, ips)
    step_ping(sb, ips)
    step_hostport(sb, ips)
    step_default_path(sb)
    step_delete(sb, ips)
    step_doctor(sb)
    step_nothing_left(sb, before)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Live two-pod demonstration of the CNI suite, in a sandbox (root)."
    )
    p.add_argument(
        "--bin",
        default=str(REPO / "dist" / "bin"),
        help="directory with cnitool, flannel, bridge, host-local, portmap (default: %(default)s)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration; the exit status (0 passed, 1 failed, 2 prerequisite, 128+sig)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bin_dir = Path(args.bin).resolve()
    say(
        "pycni live demo: two pods on a flannel node (flannel -> bridge -> host-local, portmap), "
        "via cnitool"
    )
    try:
        preflight(bin_dir)
    except MissingPrerequisite as e:
        say(f"cannot run the demo: {e}")
        return 2

    def on_signal(signum, _frame):
        raise Interrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    sb = Sandbox(bin_dir)
    rc = 0
    try:
        run_demo(sb)
    except StepFailed as e:
        say(f"\nFAILED: {e}")
        rc = 1
    except MissingPrerequisite as e:
        say(f"\ncannot run the demo: {e}")
        rc = 2
    except Interrupted as e:
        say(f"\ninterrupted by signal {e.signum}")
        rc = 128 + e.signum
    except subprocess.TimeoutExpired as e:
        say(f"\nFAILED: timed out: {' '.join(map(str, e.cmd))}")
        rc = 1
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)  # let cleanup finish
        problems = sb.destroy()
        for s, h in old.items():
            signal.signal(s, h)
    if problems:
        say("cleanup problems: " + "; ".join(problems))
        rc = rc or 1
    if rc == 0:
        say("\ndemo passed: every step above was checked; nothing was left behind.")
    elif rc != 2:
        say("cleaned up: namespaces deleted, servers stopped, temp dir removed.")
    return rc


if __name__ == "__main__":
    sys.exit(main())
