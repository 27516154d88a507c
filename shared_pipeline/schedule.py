"""The monthly schedule in shared words: which months a run trains and validates on, and when
each month's run is due (the first of the month after it, as a monthly cron fires).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Only the standard library: the report reads the schedule too, with no pandas installed.
_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_month(month: str) -> tuple[int, int]:
    match = _MONTH_RE.match(month)
    if match is None:
        raise ValueError(f"month must look like 'YYYY-MM', got {month!r}")
    return int(match.group(1)), int(match.group(2))


def month_of(when: datetime) -> str:
    return f"{when.year:04d}-{when.month:02d}"


def next_month(month: str) -> str:
    year, mon = parse_month(month)
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def due_at(month: str) -> datetime:
    """When the run for `month` is due: midnight UTC on the first of the month after it (where
    Airflow's data interval for `month` ends, and a `0 0 1 * *` cron fires).
    """
    year, mon = parse_month(next_month(month))
    return datetime(year, mon, 1, tzinfo=UTC)


def run_months(due: datetime | str | None, default: tuple[str, str]) -> tuple[str, str]:
    """The months a run trains and validates on: for a run of the schedule due at `due`, the month
    that just ended and the one after it (in a backfill both have happened); for a run started by
    hand (`due` None), `default`.
    """
    if due is None:
        return default
    if isinstance(due, str):
        due = datetime.fromisoformat(due)
    year, mon = (due.year, due.month - 1) if due.month > 1 else (due.year - 1, 12)
    train = f"{year:04d}-{mon:02d}"
    return train, next_month(train)
