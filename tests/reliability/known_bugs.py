"""Plugin bugs the reliability tests found and that are reported but not fixed yet.

Each entry names the module that owns the bug and a pattern matching the problem lines the
fuzz runner reports for it. A fuzz finding whose every problem matches a known bug of its
executable is counted as "known" instead of failing the test; each bug also has a small
deterministic reproducer marked `xfail(strict=True)` (tests/test_fuzz.py,
tests/test_path_safety.py), so the day it is fixed that test XPASSes, fails, and this entry and
the marker are removed together. Anything not listed here fails the fuzz test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownBug:
    """One reported bug: who owns it, what it is, and how to recognise its fuzz findings.

    A finding (problems, call outcomes, case) is this bug when `evidence` matches the finding's
    text and every one of its problem lines matches `lines`.
    """

    key: str
    owner: str
    summary: str
    exes: frozenset[str]
    evidence: re.Pattern[str] | None = None  # None: the fuzzer does not meet this bug
    lines: re.Pattern[str] | None = None
    crash_lines: re.Pattern[str] | None = None  # crash-test problem lines this bug explains

    def explains(self, exe: str, finding: dict) -> bool:
        """True when `finding` (of a run of `exe`) is an instance of this bug."""
        if exe not in self.exes or not finding.get("problems") or self.evidence is None or self.lines is None:
            return False
        text = json.dumps(finding, default=repr)
        return bool(self.evidence.search(text)) and all(self.lines.search(p) for p in finding["problems"])


KNOWN: tuple[KnownBug, ...] = (
    KnownBug(
        key="lease-temp-left-after-crash",
        owner="ipam/store.py (host-local)",
        summary=(
            "a host-local killed between writing its lease temp file and linking it leaves "
            "<network>/.pycni-index/.lease.tmp-<pid> for good: later calls only ever remove their "
            "own pid's temp file, so DEL after the kill does not clean up completely"
        ),
        exes=frozenset({"host-local", "bridge", "flannel"}),
        evidence=re.compile(r"\.lease\.tmp-"),
        lines=re.compile(r"\.pycni-index/\.lease\.tmp-"),
        crash_lines=re.compile(r"\.pycni-index/\.lease\.tmp-\d+"),
    ),
    KnownBug(
        key="resolvconf-unbounded-read",
        owner="ipam/dns.py (host-local)",
        summary=(
            "ipam.resolvConf is read whole with no size limit and opened blocking: /dev/zero "
            "exhausts memory (MemoryError under a memory cap, the OOM killer without one), a FIFO "
            "blocks ADD forever"
        ),
        exes=frozenset({"host-local", "bridge", "flannel", "cnitool"}),
        evidence=re.compile(r"ipam/dns\.py|reads a FIFO via resolvConf"),
        lines=re.compile(r"MemoryError|HANG"),
    ),
    KnownBug(
        key="subnetfile-unbounded-read",
        owner="plugins/flannel_subnet.py (flannel)",
        summary=(
            "subnetFile is read whole with no size limit and opened blocking: /dev/zero exhausts "
            "memory, a FIFO blocks ADD, DEL, STATUS and GC forever"
        ),
        exes=frozenset({"flannel", "cnitool"}),
        evidence=re.compile(r"flannel_subnet\.py|reads a FIFO via subnetFile"),
        lines=re.compile(r"MemoryError|HANG"),
    ),
    KnownBug(
        key="portmap-multiline-error",
        owner="plugins/portmap_config.py (portmap)",
        summary=(
            "an invalid portMappings protocol or hostIP is echoed raw into the error message, so a "
            "value with a newline gives a multi-line `msg` (the house rule: one line naming the value)"
        ),
        exes=frozenset({"portmap", "flannel", "cnitool"}),
        evidence=re.compile(r"Invalid (protocol|host IP)"),
        lines=re.compile(r"error message is not one line: .*Invalid (protocol|host IP)"),
    ),
)


PATH_BUGS: tuple[KnownBug, ...] = (
    KnownBug(
        key="host-local-datadir-escape",
        owner="ipam/config.py, ipam/store.py (host-local)",
        summary=(
            "ipam.dataDir with a `..` component (absolute or relative) is used as given, so leases "
            "are written outside the intended tree"
        ),
        exes=frozenset({"host-local", "bridge", "flannel"}),
    ),
    KnownBug(
        key="flannel-datadir-escape",
        owner="plugins/flannel_config.py, plugins/flannel_delegate.py (flannel)",
        summary=(
            "dataDir with a `..` component is used as given (the saved configuration lands outside)"
        ),
        exes=frozenset({"flannel"}),
    ),
    KnownBug(
        key="flannel-subnetfile-escape",
        owner="plugins/flannel_config.py (flannel)",
        summary="subnetFile with a `..` component is read and used as given",
        exes=frozenset({"flannel"}),
    ),
    KnownBug(
        key="cnitool-cache-after-add",
        owner="cni/runtime.py, cni/cache.py (cnitool / runtime)",
        summary=(
            "CNI_CACHE_DIR with a `..` component is used as given; a cache file that cannot be "
            "written (a component over 255 bytes, a path over PATH_MAX, a network name that makes "
            "the file name too long) is only found after the plugins configured the pod, and the "
            "ADD then fails with the pod left configured (veth, address, lease)"
        ),
        exes=frozenset({"cnitool"}),
    ),
)


def path_bug(key: str):
    """`pytest.mark.xfail(strict=True)` naming the path-safety (or other) known bug `key`."""
    import pytest

    bug = next(b for b in (*KNOWN, *PATH_BUGS) if b.key == key)
    return pytest.mark.xfail(strict=True, reason=f"BUG ({bug.owner}): {bug.summary}")


def split_crash_problems(plugin: str, problems: list[str]) -> tuple[list[str], dict[str, int]]:
    """(crash-test problem lines not explained by known bugs, {bug key: lines it explains})."""
    unknown: list[str] = []
    known: dict[str, int] = {}
    for line in problems:
        bug = next((b for b in KNOWN if plugin in b.exes and b.crash_lines is not None
                    and b.crash_lines.search(line)), None)
        if bug is None:
            unknown.append(line)
        else:
            known[bug.key] = known.get(bug.key, 0) + 1
    return unknown, known


def split_findings(exe: str, findings: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """(findings not explained by known bugs, {bug key: number of findings it explains})."""
    unknown: list[dict] = []
    known: dict[str, int] = {}
    for finding in findings:
        bug = next((b for b in KNOWN if b.explains(exe, finding)), None)
        if bug is None:
            unknown.append(finding)
        else:
            known[bug.key] = known.get(bug.key, 0) + 1
    return unknown, known
