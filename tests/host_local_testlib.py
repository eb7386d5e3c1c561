"""Helpers for the host-local integration tests (tests/integration/test_host_local*.py).

Ours and the reference are executed through the CNI protocol (conformance/harness.run_plugin) inside
a throwaway node namespace; host-local never enters CNI_NETNS, so a path that does not exist
is passed. Data directories are temp dirs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance import harness
from conformance.deviations import exhaustion_counts
from ipam.addr import parse

REPO = Path(__file__).resolve().parents[1]
OURS = str(REPO / "dist" / "bin" / "host-local")
REF = "/usr/lib/cni/host-local"
DUMMY_NETNS = "/var/run/netns/cnitest-hostlocal-none"
NET = "hlnet"

HAVE_REF = os.access(REF, os.X_OK)
reference = pytest.mark.skipif(
    not HAVE_REF, reason=harness.missing_reason(str(REF), "containernetworking-plugins")
)


def need_ours() -> None:
    """Skip when the executable has not been built."""
    if not os.access(OURS, os.X_OK):
        pytest.skip(f"{OURS} missing: run `make build`")


def node_namespace() -> Iterator[harness.Netns]:
    """One node namespace for a whole module (host-local needs no pod namespace); use as
    ``node = pytest.fixture(scope="module")(...)`` body: ``yield from node_namespace()``."""
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    need_ours()
    ns = harness.create_netns("hlnode", lo_up=True)
    try:
        yield ns
    finally:
        harness.delete_netns(ns)


def netconf(data_dir: Path | str, ipam: dict[str, Any] | None = None, version: str | None = "1.0.0",
            **top: Any) -> dict[str, Any]:
    """A network config for host-local with `dataDir` pointing at `data_dir`."""
    conf: dict[str, Any] = {"name": NET}
    if version is not None:
        conf["cniVersion"] = version
    conf["ipam"] = {"type": "host-local", "dataDir": str(data_dir), **(ipam or {})}
    conf.update(top)
    return conf


def call(exe: str, node: harness.Netns, command: str, conf: Any, cid: str | None = "ctr1",
         ifname: str | None = "eth0", args: str = "", **kw: Any) -> harness.PluginRun:
    """Run one command of `exe` through the protocol inside `node`."""
    return harness.run_plugin(
        exe,
        command,
        conf,
        containerid=cid,
        netns=DUMMY_NETNS if command in ("ADD", "CHECK", "DEL") else "",
        ifname=ifname,
        args=args,
        cni_path=os.path.dirname(exe),
        in_netns=node,
        **kw,
    )


def files(netdir: Path | str) -> dict[str, bytes]:
    """Every file of a network directory (our .pycni-index excluded) with its content."""
    out: dict[str, bytes] = {}
    d = Path(netdir)
    if not d.is_dir():
        return out
    for p in sorted(d.iterdir()):
        if p.name.startswith("."):
            continue
        out[p.name] = p.read_bytes() if p.is_file() else b"<dir>"
    return out


def leases(netdir: Path | str) -> dict[str, bytes]:
    """Only the lease files (names that are IP addresses)."""
    return {k: v for k, v in files(netdir).items() if parse(k) is not None}


def exhaustion_hint(held: int, dead: int, unknown: int, network: str = NET) -> str:
    """What our host-local adds after the reference's exhaustion message."""
    return exhaustion_counts(held, dead, unknown, network)


def write_leases(netdir: Path | str, leases_: dict[str, str], last: str | None = None) -> None:
    """Put lease files (name -> owner content) and last_reserved_ip.0 in place directly."""
    d = Path(netdir)
    d.mkdir(parents=True, exist_ok=True)
    for name, content in leases_.items():
        (d / name).write_bytes(content.encode())
    if last is not None:
        (d / "last_reserved_ip.0").write_text(last)

