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
        if (
            exe not in self.exes
            or not finding.get("problems")
            or self.evidence is None
            or self.lines is None
        ):
            return False
        text = json.dumps(finding, default=repr)
        return bool(self.evidence.search(text)) and all(
            self.lines.search(p) for p in finding["problems"]
        )


KNOWN: tuple[KnownBug, ...] = (
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
