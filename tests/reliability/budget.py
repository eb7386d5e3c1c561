"""How many cases, trials and pods the reliability tests run: CI counts by default, full counts
with PYCNI_FULL=1, each overridable by its own variable.

| variable              | CI default | full (PYCNI_FULL=1) | meaning                               |
|-----------------------|-----------:|--------------------:|---------------------------------------|
| PYCNI_FUZZ_CASES      |         60 |               10000 | generated cases per executable        |
| PYCNI_FUZZ_EXEC_CASES |          6 |                 200 | of those, run through dist/bin        |
| PYCNI_CRASH_TRIALS    |         16 |                 200 | kill -9 trials (spread over 4 plugins)|
| PYCNI_CONCURRENCY     |         32 |                 128 | concurrent ADDs/DELs                  |
| PYCNI_FUZZ_SEED       |   20261126 |              random | hypothesis seed (printed on failure)  |
"""

from __future__ import annotations

import os

_DEFAULTS = {
    # name: (CI, full)
    "PYCNI_FUZZ_CASES": (60, 10000),
    "PYCNI_FUZZ_EXEC_CASES": (6, 200),
    "PYCNI_CRASH_TRIALS": (16, 200),
    "PYCNI_CONCURRENCY": (32, 128),
}


def full() -> bool:
    """True when PYCNI_FULL asks for the full counts (docs/reliability.md)."""
    return os.environ.get("PYCNI_FULL", "") not in ("", "0")


def count(name: str) -> int:
    """The count for `name`: its variable when set (a positive integer), else the CI or full
    default."""
    raw = os.environ.get(name, "")
    if raw:
        value = int(raw)
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, not {raw!r}")
        return value
    ci, whole = _DEFAULTS[name]
    return whole if full() else ci


CI_SEED = 20261126


def seed() -> int | None:
    """PYCNI_FUZZ_SEED as an integer; else CI_SEED at CI counts (the same cases every run, so CI
    is reproducible and never flaky), None (a fresh random seed) at full counts."""
    raw = os.environ.get("PYCNI_FUZZ_SEED", "")
    if raw:
        return int(raw)
    return None if full() else CI_SEED
