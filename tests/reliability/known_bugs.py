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
        key="flannel-temp-left-after-crash",
        owner="plugins/flannel.py, cni/fileutil.py (flannel)",
        summary=(
            "a flannel killed while saving its delegate configuration leaves "
            "<dataDir>/.<containerID>.tmp-<pid>-<hex>; the DEL that follows does not remove it "
            "(only GC does, after 300 s), so DEL after the kill does not clean up completely"
        ),
        exes=frozenset({"flannel"}),
        crash_lines=re.compile(r"flannel/\.[^/ ]+\.tmp-\d+-[0-9a-f]+"),
    ),
    KnownBug(
        key="portmap-del-refuses-malformed-mappings",
        owner="plugins/portmap.py, plugins/portmap_config.py (portmap)",
        summary=(
            "DEL fails (code 6) when runtimeConfig.portMappings is not a list of mapping objects "
            "(e.g. a string), although it needs no mapping to remove the container's rules; in a "
            "list (cnitool, a runtime) that DEL runs first and stops the DEL of every plugin "
            "before it, so a flannel/bridge attachment whose ADD failed at portmap can never be "
            "deleted with the same capability arguments"
        ),
        exes=frozenset({"cnitool"}),
        evidence=re.compile(r"DEL said: .*invalid runtimeConfig\.portMappings"),
        lines=re.compile(r"^left behind: "),
    ),
    KnownBug(
        key="cnitool-cache-dir-unusable",
        owner="cni/runtime.py (cnitool / runtime)",
        summary=(
            "a CNI_CACHE_DIR that exists but cannot hold the cache (a regular file, say) is only "
            "found when the result is cached, after the plugins ran: `cnitool add` then fails and "
            "leaves the attachment configured (lease, veth) until a `del`"
        ),
        exes=frozenset({"cnitool"}),  # the fuzzer judges cnitool's failed add after its del
    ),
)


PATH_BUGS: tuple[KnownBug, ...] = (
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
