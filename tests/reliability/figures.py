"""Markdown tables of the figures a PYCNI_FIGURES_DIR holds (for docs/reliability.md).

    .venv/bin/python -m tests.reliability.figures build/reliability
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXES = ("loopback", "host-local", "bridge", "portmap", "flannel", "cnitool")
CRASH = ("host-local", "bridge", "flannel", "portmap")


def fuzz_table(d: Path) -> list[str]:
    """One row per executable: cases, calls, outcomes, findings."""
    rows = [
        "| executable | cases tried (in-process + exec'd) | plugin calls | ADDs that succeeded "
        "(then DEL'd) | findings (cases) | of which known bugs | time |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    total = [0, 0, 0, 0]
    for exe in EXES:
        f = d / f"{exe}-fuzz.json"
        if not f.exists():
            continue
        s = json.loads(f.read_text())
        c = s["counts"]
        from tests.reliability.known_bugs import split_findings

        unknown, known = split_findings(exe, s["findings"])
        found = c.get("cases with problems", 0)
        known_txt = ", ".join(f"{k}: {v}" for k, v in sorted(known.items())) or "none"
        rows.append(
            f"| {exe} | {s['cases']:,} ({c.get('cases in-process', 0):,} + "
            f"{c.get('cases exec', 0)}) | "
            f"{c.get('plugin calls', 0):,} | {c.get('adds ok', 0):,} | {found} | {known_txt} | "
            f"{s['elapsed_s'] / 60:.0f} min |"
        )
        total[0] += s["cases"]
        total[1] += c.get("plugin calls", 0)
        total[2] += c.get("adds ok", 0)
        total[3] += found
    rows.append(
        f"| **total** | **{total[0]:,}** | **{total[1]:,}** | **{total[2]:,}** | **{total[3]}** | "
        f"| |"
    )
    return rows


def crash_table(d: Path) -> list[str]:
    """One row per plugin: trials, kills that landed mid-ADD, problems."""
    rows = [
        "| plugin | trials | killed mid-ADD | finished before the kill | typical ADD | left a temp "
        "file | problems (known bug lines) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in CRASH:
        f = d / f"{p}-crash.json"
        if not f.exists():
            continue
        s = json.loads(f.read_text())
        known = ", ".join(f"{k}: {v}" for k, v in s.get("known_bug_lines", {}).items())
        other = len(s["problems"]) - sum(s.get("known_bug_lines", {}).values())
        rows.append(
            f"| {p} | {s['trials']} | {s['killed_mid_add']} | {s['finished_before_kill']} | "
            f"{s['typical_add_ms']} ms | {s.get('interrupted_atomic_writes', 0)} | {other} "
            f"({known or 'none'}) |"
        )
    return rows


def concurrency_line(d: Path) -> list[str]:
    """The concurrency run in one sentence."""
    f = d / "concurrency.json"
    if not f.exists():
        return []
    s = json.loads(f.read_text())
    w = s["wall_s"]
    return [
        f"{s['concurrency']} concurrent calls per phase, {s['calls']} calls on {s['pods']} pods "
        f"(wall time: ADDs {w['adds']} s, mixed DELs/ADDs {w['mixed']} s, DELs {w['dels']} s); "
        f"leaks found: {len(s['leaks'])}."
    ]


def main(argv: list[str]) -> int:
    """Print the tables for the directory given."""
    d = Path(argv[1] if len(argv) > 1 else "build/reliability")
    print(
        "\n".join(
            [
                "**Fuzzing**",
                "",
                *fuzz_table(d),
                "",
                "**Crash consistency**",
                "",
                *crash_table(d),
                "",
                "**Concurrency**",
                "",
                *concurrency_line(d),
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
