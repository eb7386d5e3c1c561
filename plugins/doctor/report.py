"""A doctor report: checks with a status, one sentence each, a fix, and their rendering."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

OK, WARN, FAIL = "ok", "warn", "fail"
_LABEL = {OK: "ok", WARN: "warn", FAIL: "FAIL"}
ID_WIDTH = 20


@dataclass
class Repair:
    """One provably safe repair: what it does (a sentence) and the function that does it.

    `run()` returns the sentences of what it actually changed (empty: nothing to do any more);
    `phase` orders repairs across checks (attachments first, leases and the bridge last).
    """

    description: str
    run: Callable[[], list[str]]
    phase: int = 50


@dataclass
class Check:
    """The outcome of one check: stable `id`, `status` (ok/warn/fail), one sentence naming the
    object and the value found, the `fix` for a non-ok status, the objects concerned, and the
    repairs `--fix` may apply."""

    id: str
    status: str
    message: str
    fix: str | None = None
    objects: list[str] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)


def ok(check_id: str, message: str, objects: Sequence[str] = ()) -> Check:
    """An ok check."""
    return Check(check_id, OK, message, None, list(objects))


def summary(checks: Sequence[Check]) -> dict[str, int]:
    """How many checks are ok, warn and fail."""
    out = {OK: 0, WARN: 0, FAIL: 0}
    for c in checks:
        out[c.status] += 1
    return out


def render_text(checks: Sequence[Check]) -> str:
    """One line per check (`ok`/`warn`/`FAIL`, id, sentence); a `fix:` line under each non-ok."""
    lines = []
    for c in checks:
        lines.append(f"{_LABEL[c.status]:<4} {c.id:<{ID_WIDTH}} {c.message}")
        if c.status != OK and c.fix:
            lines.append(f"     fix: {c.fix}")
    s = summary(checks)
    lines.append(f"{s[OK]} ok, {s[WARN]} warn, {s[FAIL]} fail")
    return "\n".join(lines) + "\n"


def to_json(checks: Sequence[Check], actions: Sequence[str] | None = None) -> str:
    """`{"checks": [{id, status, message, fix, objects}], "summary": {ok, warn, fail}}`, plus
    `actions` (what --fix changed) when given."""
    doc: dict = {
        "checks": [
            {
                "id": c.id,
                "status": c.status,
                "message": c.message,
                "fix": c.fix if c.status != OK else None,
                "objects": list(c.objects),
            }
            for c in checks
        ],
        "summary": summary(checks),
    }
    if actions is not None:
        doc["actions"] = list(actions)
    return json.dumps(doc, indent=2) + "\n"


def exit_status(checks: Sequence[Check]) -> int:
    """0 when nothing fails, 1 when a check fails."""
    return 1 if any(c.status == FAIL for c in checks) else 0
