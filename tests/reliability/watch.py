"""Watching a call for *any* change: netlink and nftables events, files, escape targets.

"Rejected before any file or kernel change" is checked literally: `ip monitor` in the node and
pod namespaces and `nft monitor` in the node run around the call, so a veth created and rolled
back again still shows; a marker event before and after brackets the call, so nothing is lost to
a monitor that was not listening yet or had not caught up. Files are compared before and after
(with digests), and named escape targets must not exist afterwards.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import harness
from conformance.harness import Netns
from tests.reliability import nsstate

_MARK_NET = "127.1."  # marker addresses 127.1.x.y/32 on lo, one per marker
_MARK_TABLE = "pycni_watch_marker"


def _mark_ip(n: int) -> str:
    return f"127.1.{n // 250}.{n % 250 + 1}"


@dataclass
class Watched:
    """What happened while a call ran."""

    result: Any
    events: list[str] = field(default_factory=list)  # kernel events (netlink, nft), markers removed
    files: list[str] = field(default_factory=list)  # created, changed or removed paths
    escaped: list[str] = field(default_factory=list)  # escape targets that exist afterwards
    persisting: list[str] = field(default_factory=list)  # kernel objects present after, not before
    followup: Any = None  # what `then` returned

    @property
    def changed(self) -> bool:
        """True when anything at all changed, even if it was undone before the call returned."""
        return bool(self.events or self.files or self.escaped)

    @property
    def left_changed(self) -> bool:
        """True when the call left something changed (kernel objects, files, escape targets)."""
        return bool(self.persisting or self.files or self.escaped)

    def describe(self) -> str:
        """The changes, readably."""
        return "; ".join(
            [f"kernel: {e[:200]}" for e in self.events[:6]]
            + [f"left: {p}" for p in self.persisting[:6]]
            + [f"file: {f[:200]}" for f in self.files[:6]]
            + [f"escaped to: {e}" for e in self.escaped]
        )


class _Monitor:
    """One monitor process, read until a marker line shows up."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={"PATH": harness.SAFE_PATH})
        self.lines: list[str] = []
        self._buf = b""

    def read_until(self, needle: str, timeout: float = 10.0) -> bool:
        """Collect lines until one containing `needle` (True) or the timeout (False)."""
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while time.monotonic() < end:
            if any(needle in ln for ln in self.lines):
                return True
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._buf += chunk
                *done, self._buf = self._buf.split(b"\n")
                self.lines += [d.decode(errors="replace") for d in done]
        return any(needle in ln for ln in self.lines)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _mark(node: Netns, pods: Iterable[Netns], n: int) -> None:
    """Marker `n` everywhere: add and remove an address on lo, a table in the node."""
    for ns in (node, *pods):
        ns.ip("addr", "add", f"{_mark_ip(n)}/32", "dev", "lo")
        ns.ip("addr", "del", f"{_mark_ip(n)}/32", "dev", "lo")
    node.exec("nft", f"add table ip {_MARK_TABLE}{n}")
    node.exec("nft", f"delete table ip {_MARK_TABLE}{n}")


def _needle(mon_is_nft: bool, n: int) -> str:
    return f"{_MARK_TABLE}{n}" if mon_is_nft else f"{_mark_ip(n)}/"


def watch(node: Netns, pods: list[Netns], roots: dict[str, Path], escapes: list[Path],
          call: Callable[[], Any], then: Callable[[Any], Any] | None = None) -> Watched:
    """Run `call()` while watching the node, the pods, the file trees `roots` and `escapes`.

    Events are the call's own; `then(result)` (a runtime's DEL after a failed ADD, say) runs
    after them, before the end state (`files`, `persisting`, `escaped`) is read.
    """
    mons = [
        _Monitor(
            ["ip", "-o", "-n", ns.name, "monitor", "link", "address", "route", "rule", "neigh"]
        )
        for ns in (node, *pods)
    ]
    mons.append(_Monitor(["ip", "netns", "exec", node.name, "nft", "monitor"]))
    try:
        before = nsstate.file_items({k: str(v) for k, v in roots.items()})
        kernel_before = _kernel(node, pods)
        # Listening only counts once the first marker is seen by every monitor.
        for attempt in range(50):
            _mark(node, pods, attempt)
            if all(m.read_until(_needle(m is mons[-1], attempt), 0.2) for m in mons):
                break
        else:
            raise RuntimeError("ip/nft monitors never saw the marker events")
        for m in mons:  # everything up to the last start marker's removal is not the call's
            m.read_until("\0never", 0.1)
        start = [len(m.lines) for m in mons]
        result = call()
        _mark(node, pods, 999)
        for m in mons:
            if not m.read_until(_needle(m is mons[-1], 999), 10.0):
                raise RuntimeError("a monitor did not catch up with the end marker")
        followup = then(result) if then is not None else None
        after = nsstate.file_items({k: str(v) for k, v in roots.items()})
        kernel_after = _kernel(node, pods)
    finally:
        for m in mons:
            m.stop()
    events = []
    for m, s in zip(mons, start, strict=True):
        for ln in m.lines[s:]:
            if _MARK_NET in ln or _MARK_TABLE in ln or not ln.strip() or ln.startswith("# "):
                continue
            events.append(ln.strip())
    files = sorted({f"{it[1]}:{it[2]}" for it in (before ^ after)})
    persisting = [repr(it) for it in nsstate.added(kernel_before, kernel_after)]
    return Watched(
        result, events, files, [str(e) for e in escapes if os.path.lexists(e)], persisting, followup
    )


def _kernel(node: Netns, pods: list[Netns]) -> nsstate.Snapshot:
    """Read-only: the node's links, addresses, routes, rules and ruleset, and the pods' links."""
    from cni.netns import in_netns

    with in_netns(node.path):
        snap = nsstate.snapshot_here()
    snap.pop("files", None)
    for i, pod in enumerate(pods):
        ipr = nsstate.open_netns(pod.path)
        try:
            for k, v in nsstate.snapshot_netns(ipr).items():
                snap[f"pod{i}-{k}"] = v
        finally:
            ipr.close()
    return snap
