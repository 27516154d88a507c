"""The monthly schedule's shared words: which months a run is for, and when each is due."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared_pipeline import schedule
from shared_pipeline.scenarios import SCENARIOS
from shared_pipeline.settings import Settings

BY_HAND = ("2024-02", "2024-03")


@pytest.mark.parametrize(
    ("due", "months"),
    [
        (datetime(2024, 3, 1, tzinfo=UTC), ("2024-02", "2024-03")),
        ("2024-08-01T00:00:00+00:00", ("2024-07", "2024-08")),
        (datetime(2025, 1, 1, tzinfo=UTC), ("2024-12", "2025-01")),
        (None, BY_HAND),
    ],
)
def test_a_run_of_the_schedule_trains_on_the_month_that_just_ended(due, months) -> None:
    assert schedule.run_months(due, BY_HAND) == months


def test_each_month_is_due_where_its_data_interval_ends() -> None:
    assert schedule.due_at("2024-02") == datetime(2024, 3, 1, tzinfo=UTC)
    assert schedule.due_at("2024-12") == datetime(2025, 1, 1, tzinfo=UTC)
    for month in Settings().schedule_months:
        assert schedule.run_months(schedule.due_at(month), BY_HAND)[0] == month


def test_the_late_month_fails_the_runs_that_need_it_and_they_alone_run_again() -> None:
    late = SCENARIOS["late_month"]
    (missing,) = late.late_months
    first = [r for r in late.runs if not r.rerun]
    again = [r for r in late.runs if r.rerun]
    assert [r.month for r in first] == list(late.schedule)  # one run per month, in order
    failed = [r.month for r in first if r.outcome.value == "failed"]
    assert failed == [m for m in late.schedule if missing in (m, schedule.next_month(m))]
    assert [r.month for r in again] == failed
    assert all(r.registry.value == "unchanged" for r in first if r.month in failed)
