"""A real container runtime: containerd attaches a container through our flannel conflist with
the directory under test on its plugin path, the address is checked from inside the
container, and after `ctr run --rm` nothing is left behind (see conformance/runtime.py).

Gated: runs with `--runtime` (or CONFORMANCE_RUNTIME=1) on a machine with containerd, runc and
busybox-static; skips with the reason otherwise. Needs flannel, so it skips on the reference.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from conformance import harness, runtime
from conformance.bindir import CniDir
from conformance.checks import require
from conformance.sandbox import Sandbox

pytestmark = pytest.mark.runtime

CONTAINER_CMD = ("ip -o -4 addr show dev eth0; echo MTU=$(cat /sys/class/net/eth0/mtu); "
                 "ip route; ping -c 1 -W 2 10.244.1.1 >/dev/null && echo PING-OK")


HOST_PATHS = ("/etc/cni", "/opt/cni", "/var/lib/cni", "/var/lib/containerd", "/run/containerd",
              "/run/flannel", "/var/lib/cni/flannel")


@pytest.fixture
def runtime_enabled(request: pytest.FixtureRequest) -> None:
    if not (request.config.getoption("--runtime") or os.environ.get("CONFORMANCE_RUNTIME") == "1"):
        pytest.skip("real-runtime scenario not requested (--runtime or CONFORMANCE_RUNTIME=1)")
    reason = runtime.unavailable_reason()
    if reason:
        pytest.skip(f"containerd scenario unavailable: {reason}")


def _our_processes(marker: str) -> list[int]:
    """Pids whose command line mentions `marker` (our temp dir): containerd, shims, ctr."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def test_containerd_attach_detach(cni: CniDir, sb: Sandbox, runtime_enabled: None) -> None:
    """`ctr run --cni --rm` through flannel + portmap: the container sees 10.244.1.2/24 on eth0
    with MTU 1450 and reaches its gateway; afterwards the flannel scratch file, the lease,
    libcni's cache entry and the host veth are gone, no runtime process survives, and the
    root namespace is unchanged."""
    require(cni, "flannel", "bridge", "host-local", "portmap")
    node = sb.netns("node")
    tmp = sb.dir("c")
    env = sb.dir("run-flannel") / "subnet.env"
    env.write_text("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"
                   "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    fdata, ipam = sb.tmp / "flannel", sb.dir("networks")
    conflist = {"name": "cbr0", "cniVersion": "1.0.0", "plugins": [
        {"type": "flannel", "subnetFile": str(env), "dataDir": str(fdata),
         "ipam": {"dataDir": str(ipam)},
         "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    runtime.build_image(tmp / "image.tar")
    (tmp / "containerd.toml").write_text(runtime.containerd_config(tmp))
    script = runtime.session_script(tmp, cni.path, json.dumps(conflist, indent=2), CONTAINER_CMD)
    before = harness.root_state()
    host_paths = {p: Path(p).exists() for p in HOST_PATHS}
    try:
        proc = harness.ns_exec(node, "sh", "-c", script, check=False, timeout=240)
    finally:
        leftovers = _our_processes(str(tmp))
        for pid in leftovers:  # only processes started from our temp dir
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    out = proc.stdout
    log = (tmp / "containerd.log").read_text()[-3000:] if (tmp / "containerd.log").exists() else ""
    ctx = f"\n--- stdout:\n{out}\n--- stderr:\n{proc.stderr[-3000:]}\n--- containerd.log:\n{log}"
    assert proc.returncode == 0, f"session exited {proc.returncode}{ctx}"
    assert "CTR-RC=0" in out, ctx
    assert re.search(r"eth0\s+inet 10\.244\.1\.2/24 ", out), ctx
    assert "MTU=1450" in out, ctx
    assert "default via 10.244.1.1 dev eth0" in out, ctx
    assert "PING-OK" in out, ctx
    assert not leftovers, f"runtime processes survived: {leftovers}{ctx}"
    assert not fdata.exists() or list(fdata.iterdir()) == [], list(fdata.iterdir())
    leases = [p.name for p in (ipam / "cbr0").iterdir() if p.name.startswith("10.")]
    assert leases == [], leases
    cache = tmp / "ov" / "varlib.u" / "cni" / "results"
    assert not cache.exists() or list(cache.iterdir()) == [], list(cache.iterdir())
    links = json.loads(node.ip("-j", "link", "show").stdout)
    assert [li["ifname"] for li in links if li.get("master") == "cni0"] == [], links
    assert "cni0" in [li["ifname"] for li in links]  # the bridge stays, as with the reference
    assert {p: Path(p).exists() for p in HOST_PATHS} == host_paths, "host paths touched"
    after = harness.root_state()
    # namespaces are audited after the module (the node namespace is still ours here)
    problems = harness.audit_diff({k: v for k, v in before.items() if k != "netns"},
                                  {k: v for k, v in after.items() if k != "netns"})
    assert not problems, problems
