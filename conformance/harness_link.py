"""The shared test harness, `tests/harness.py`, made importable as `conformance.harness_link.harness`.

The harness is plain standard-library code shared by tests/ and conformance/ (namespaces,
running an executable through the protocol, snapshots, the root-namespace leak audit); this
module only puts tests/ on sys.path so the one copy is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import harness  # noqa: E402

PluginRun = harness.PluginRun
run_plugin = harness.run_plugin

__all__ = ["TESTS_DIR", "PluginRun", "harness", "run_plugin"]
