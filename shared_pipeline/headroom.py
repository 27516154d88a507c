"""The rule for every clock healthy work runs under (at least `MIN_HEADROOM` times its slowest
healthy duration on a busy machine), and each step clock's headroom as the records measured it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shared_pipeline.records import AttemptLogEntry, RunRecord
from shared_pipeline.settings import Settings

# A healthy step must never race a clock: a second test worker, a PostgreSQL start or another
# busy process easily slows work 3x on 2 cores, so a clock gets 10 times the slowest healthy run.
MIN_HEADROOM = 10.0


def over(slowest_healthy_s: float) -> float:
    """A clock for work whose slowest healthy run, measured on a busy machine, took this long."""
    return MIN_HEADROOM * slowest_healthy_s


@dataclass(frozen=True)
class Clock:
    step: str
    setting: str  # the Settings field that sets it
    guards: str  # what the clock times: the whole attempt, or the part the step logs as clocked


CLOCKS = (
    Clock("extract", "db_busy_timeout_s", "the wait for the month's table (busy or lock timeout)"),
    Clock("enrich", "api_timeout_s", "each request to the enrichment API (client timeout)"),
    Clock("train", "train_timeout_s", "the whole attempt (the engine's task timeout)"),
)


def healthy_seconds(entry: AttemptLogEntry) -> float | None:
    """How long the clocked part of a healthy attempt took (None: a fault, a failure, unended)."""
    if entry.fault is not None or entry.outcome != "completed" or entry.ended is None:
        return None
    if entry.clocked is not None:
        return entry.clocked
    return (entry.ended - entry.started).total_seconds()


@dataclass(frozen=True)
class Headroom:
    clock: Clock
    limit_s: float
    slowest_s: float
    where: str  # engine and scenario of the slowest attempt

    @property
    def ratio(self) -> float:
        return self.limit_s / max(self.slowest_s, 1e-6)

    @property
    def enough(self) -> bool:
        return self.ratio >= MIN_HEADROOM

    def line(self) -> str:
        return (
            f"{self.clock.step}: slowest healthy attempt {self.slowest_s:.3f} s ({self.where}),"
            f" {self.clock.setting} {self.limit_s:g} s, headroom {self.ratio:.0f}×"
        )


def _attempts(records: Iterable[RunRecord], clock: Clock) -> Iterator[tuple[float, float, str]]:
    for record in records:
        limit = float(record.settings.get(clock.setting, getattr(Settings(), clock.setting)))
        for run in record.runs:
            for entry in run.attempt_log:
                seconds = healthy_seconds(entry) if entry.step == clock.step else None
                if seconds is not None:
                    where = f"{record.engine}, {record.scenario}"
                    if record.db_backend != "sqlite":
                        where += f" on {record.db_backend}"
                    yield seconds, limit, where


def headrooms(records: Iterable[RunRecord]) -> list[Headroom]:
    """Per step clock, its least headroom over any healthy attempt in `records`."""
    records = list(records)
    found = []
    for clock in CLOCKS:
        attempts = list(_attempts(records, clock))
        if attempts:
            slowest, limit, where = min(attempts, key=lambda a: a[1] / max(a[0], 1e-6))
            found.append(Headroom(clock, limit, slowest, where))
    return found
