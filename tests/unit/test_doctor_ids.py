"""The doctor's check ids are a stable interface (the JSON report's keys): they are derived from
the group modules' function names, so renaming a check function must show up here."""

from __future__ import annotations

from plugins.doctor import cli
from tests.doctor_testlib import ALL_IDS


def test_check_ids_and_order_are_stable() -> None:
    """Every group's checks in report order, under the ids the report has always used."""
    assert [check_id for check_id, _ in cli.CHECKS] == ALL_IDS
    assert [check for _, check in cli.CHECKS] == [
        check for group in cli.GROUPS for check in group.CHECKS
    ]
