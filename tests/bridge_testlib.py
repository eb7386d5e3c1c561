"""Helpers for the bridge tests: configs, running ours or the reference in a node netns,
reading kernel state back. Plain functions over conformance/harness.py.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance import harness
from conformance.harness import Netns, PluginRun

OURS = harness.REPO_ROOT / "dist" / "bin" / "bridge"
REFERENCE = harness.REFERENCE_BIN / "bridge"
REF_HOST_LOCAL = harness.REFERENCE_BIN / "host-local"
OUR_HOST_LOCAL_MODULE = harness.REPO_ROOT / "ipam" / "host_local.py"


def ipam_dir(tmp: Path, which: str = "auto") -> str:
    """A CNI_PATH for the IPAM delegate.

    "ours": dist/bin (host-local runs in-process); "reference": a directory with a link to
    /usr/lib/cni/host-local; "auto": ours once ipam/host_local.py exists (override with
    BRIDGE_TEST_IPAM=reference|ours).
    """
    which = os.environ.get("BRIDGE_TEST_IPAM", which) if which == "auto" else which
    if which == "auto":
        which = "ours" if OUR_HOST_LOCAL_MODULE.exists() else "reference"
    if which == "ours":
        return str(OURS.parent)
    d = tmp / "ref-cni-path"
    d.mkdir(parents=True, exist_ok=True)
    link = d / "host-local"
    if not link.exists():
        link.symlink_to(REF_HOST_LOCAL)
    return str(d)


def l3_conf(
    data_dir: Path | str,
    *,
    name: str = "testnet",
    bridge: str = "testbr0",
    subnet: str | None = "10.250.1.0/24",
    ranges: list | None = None,
    routes: list | None = None,
    version: str = "1.0.0",
    ipam_extra: dict | None = None,
    **keys: Any,
) -> dict:
    """A bridge config with host-local IPAM whose dataDir is `data_dir`."""
    ipam: dict[str, Any] = {"type": "host-local", "dataDir": str(data_dir)}
    if ranges is not None:
        ipam["ranges"] = ranges
    elif subnet is not None:
        ipam["subnet"] = subnet
    if routes is not None:
        ipam["routes"] = routes
    ipam.update(ipam_extra or {})
    conf = {"cniVersion": version, "name": name, "type": "bridge", "bridge": bridge, "ipam": ipam}
    conf.update(keys)
    return conf


def l2_conf(
    *, name: str = "testnet", bridge: str = "testbr0", version: str = "1.0.0", **keys: Any
) -> dict:
    """A bridge config without IPAM (pure L2)."""
    conf = {"cniVersion": version, "name": name, "type": "bridge", "bridge": bridge}
    conf.update(keys)
    return conf


@dataclass
class Runner:
    """Runs one bridge executable in one node netns with a fixed CNI_PATH."""

    exe: Path
    node: Netns
    cni_path: str

    def __call__(
        self,
        command: str,
        conf: dict | bytes | str,
        pod: Netns | None = None,
        *,
        cid: str = "ctr1",
        ifname: str = "eth0",
        netns: str | None = None,
        args: str = "",
        extra_env: dict | None = None,
    ) -> PluginRun:
        if netns is None:
            netns = pod.path if pod is not None else ""
        env = {"CNI_PY_DEBUG": "1"}
        env.update(extra_env or {})
        return harness.run_plugin(
            self.exe, command, conf, containerid=cid, netns=netns, ifname=ifname,
            cni_path=self.cni_path, args=args, in_netns=self.node, extra_env=env,
        )

    def ok(self, command: str, conf: dict, pod: Netns | None = None, **kw: Any) -> Any:
        """Run and assert success; the parsed stdout (None for DEL/CHECK)."""
        r = self(command, conf, pod, **kw)
        assert r.returncode == 0, f"{command} failed: {r.stdout} {r.stderr}"
        return r.result

    def fail(self, command: str, conf: dict, pod: Netns | None = None, **kw: Any) -> dict:
        """Run and assert failure with a CNI error object; that object."""
        r = self(command, conf, pod, **kw)
        assert r.returncode == 1, (
            f"{command} unexpectedly gave {r.returncode}: {r.stdout} {r.stderr}"
        )
        assert isinstance(r.result, dict) and "code" in r.result, r.stdout
        assert "Traceback" not in r.stderr, r.stderr
        return r.result


def with_prev(conf: dict, result: dict) -> dict:
    """`conf` with `prevResult` = result (for CHECK)."""
    out = dict(conf)
    out["prevResult"] = result
    return out


# --------------------------------------------------------------------------- kernel state


def links(ns: Netns) -> dict[str, dict]:
    """`ip -d -j link` of the netns, by name."""
    out = ns.ip("-d", "-j", "link", "show").stdout
    return {entry["ifname"]: entry for entry in json.loads(out)}


def addrs(ns: Netns, dev: str) -> list[str]:
    """`addr/prefix` of a link's global addresses, in kernel order."""
    out = json.loads(ns.ip("-j", "addr", "show", "dev", dev).stdout)
    return [
        f"{a['local']}/{a['prefixlen']}"
        for entry in out
        for a in entry.get("addr_info", [])
        if a.get("scope") == "global"
    ]


def routes(ns: Netns, family: str = "-4") -> list[str]:
    """`ip route` lines of the main table."""
    return [ln.strip() for ln in ns.ip(family, "route", "show").stdout.splitlines() if ln.strip()]


def sysctl(ns: Netns, name: str) -> str:
    """A sysctl read inside the netns (slash notation); "<absent>" when it does not exist."""
    return sysctls(ns, [name])[name]


def sysctls(ns: Netns, names: list[str]) -> dict[str, str]:
    """Several sysctls read in-process from inside the netns (no process per value)."""
    from cni.netns import in_netns

    out = {}
    with in_netns(ns.path):
        for name in names:
            try:
                with open(f"/proc/sys/{name}") as f:
                    out[name] = f.read().strip()
            except OSError:
                out[name] = "<absent>"
    return out


def nat_rules(ns: Netns, ipv6: bool = False) -> list[str]:
    """iptables-save -t nat lines mentioning CNI- (chains and rules)."""
    tool = "ip6tables-save" if ipv6 else "iptables-save"
    out = ns.exec(tool, "-t", "nat").stdout
    return [ln for ln in out.splitlines() if "CNI-" in ln]


def nft_ruleset(ns: Netns) -> str:
    """`nft list ruleset` of the netns."""
    return ns.exec("nft", "list", "ruleset").stdout


def ping(pod: Netns, ip: str) -> bool:
    """An ICMP echo from inside `pod` answered within 5 s (echoes every 0.2 s until one is:
    a fresh IPv6 address on the host side is tentative for a second or two)."""
    cmd = ["ping", "-6" if ":" in ip else "-4", "-c", "1", "-i", "0.2", "-w", "5", ip]
    return pod.exec(*cmd, check=False).returncode == 0


def lease_files(data_dir: Path, network: str) -> list[str]:
    """Lease file names in host-local's dir for `network` (no lock/last_reserved)."""
    d = Path(data_dir) / network
    if not d.is_dir():
        return []
    return sorted(
        p.name
        for p in d.iterdir()
        if p.name != "lock" and not p.name.startswith(("last_reserved", "."))
    )


_VETH_RE = re.compile(r"^veth[0-9a-f]{8}$")


def is_veth_name(name: str) -> bool:
    """The reference's host-end naming: veth + 8 lowercase hex digits."""
    return bool(_VETH_RE.match(name))


def vlan_filtering_supported() -> bool:
    """Probe once in a throwaway netns whether the kernel accepts bridge VLAN filtering."""
    global _VLAN_SUPPORT
    if _VLAN_SUPPORT is None:
        ns = harness.create_netns("vlanprobe")
        try:
            r = ns.ip(
                "link", "add", "probebr", "type", "bridge", "vlan_filtering", "1", check=False
            )
            _VLAN_SUPPORT = r.returncode == 0
        finally:
            harness.delete_netns(ns)
    return _VLAN_SUPPORT


_VLAN_SUPPORT: bool | None = None
