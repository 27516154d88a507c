"""Runs a scenario of the monthly schedule: the engine backfills its schedule over the months,
a late month's data arrives, the engine re-runs the months that failed; then each flow run's
attempts, notifications and registry changes are told apart by the windows the engine stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shared_pipeline import ml, registry
from shared_pipeline.faults import read_attempt_log
from shared_pipeline.notifications import read_notifications
from shared_pipeline.records import (
    FlowRunRecord,
    RegistrySnapshot,
    ScheduledRun,
)
from shared_pipeline.scenarios import RunExpectation, Scenario
from shared_pipeline.schedule import next_month
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent

if TYPE_CHECKING:
    from shared_pipeline.harness import EngineRun, _Source


class ScheduleError(RuntimeError):
    """The engine's runs cannot be told apart: they overlap, or one has no window."""


def scheduled_runs(
    adapter: Any,
    scenario: Scenario,
    run_dir: Path,
    expected: list[RunExpectation],
    source: _Source,
    say: Callable[[str], None],
) -> list[FlowRunRecord]:
    from shared_pipeline.harness import flow_run_record

    months = list(scenario.schedule)
    say(f"backfilling the monthly schedule over {months[0]}..{months[-1]}")
    results = [(run, False) for run in adapter.backfill(str(run_dir), scenario.flow, months)]
    if scenario.late_months:
        say(f"the late data ({', '.join(scenario.late_months)}) arrives")
        source.arrive(scenario.late_months)
        failed = [r.month for r, _ in results if r.outcome is FlowOutcome.FAILED and r.month]
        say(f"re-running the failed months: {', '.join(failed) or 'none'}")
        if failed:
            results += [(run, True) for run in adapter.rerun(str(run_dir), scenario.flow, failed)]
    windows = _windows([run for run, _ in results])
    attempts = _split(read_attempt_log(run_dir), windows, "started")
    notes = _split_notifications(read_notifications(run_dir), windows, [r for r, _ in results])
    versions = registry.versions(run_dir)
    baseline = registry.load_version(run_dir, versions[0]["version"])
    records = []
    before = _registry_at(versions, windows[0][0])
    for number, ((result, again), window) in enumerate(zip(results, windows, strict=True), 1):
        after = _registry_at(versions, window[1])
        made = [
            v
            for v in versions
            if v["version"] not in before.versions and v["version"] in after.versions
        ]
        month = result.month or ""
        records.append(
            flow_run_record(
                number,
                scenario.flow,
                result,
                expected[number - 1] if number <= len(expected) else None,
                wall_s=(window[1] - window[0]).total_seconds(),
                notifications=notes[number - 1],
                before=before,
                after=after,
                attempts=attempts[number - 1],
                schedule=ScheduledRun(
                    month=month,
                    valid_month=next_month(month) if month else "",
                    native=result.native_schedule,
                    rerun=again,
                    rmse=made[-1]["rmse"] if made else None,
                    production_rmse=_float(made[-1]["tags"].get("production_rmse"))
                    if made
                    else None,
                    baseline_rmse=_baseline(run_dir, baseline, next_month(month)) if made else None,
                ),
            )
        )
        before = after
    return records


def _windows(runs: list[EngineRun]) -> list[tuple[datetime, datetime]]:
    """Each run's [start, end] as its engine stored them; one month at a time, so none overlap."""
    windows = []
    for run in runs:
        if run.native_started_at is None or run.native_ended_at is None:
            raise ScheduleError(
                f"the run for {run.month} has no start or end in its engine's store"
            )
        windows.append((_utc(run.native_started_at), _utc(run.native_ended_at)))
    ordered = sorted(windows)
    for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
        if start < end:
            raise ScheduleError(
                "two runs of the schedule overlapped: months must run one at a time"
            )
    return windows


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _index(when: datetime, windows: list[tuple[datetime, datetime]]) -> int:
    """The run whose window holds `when`, else the nearest one."""

    def distance(window: tuple[datetime, datetime]) -> float:
        start, end = window
        return max((start - when).total_seconds(), (when - end).total_seconds(), 0.0)

    return min(range(len(windows)), key=lambda i: distance(windows[i]))


def _split(
    entries: list[dict], windows: list[tuple[datetime, datetime]], key: str
) -> list[list[dict]]:
    split: list[list[dict]] = [[] for _ in windows]
    for entry in entries:
        split[_index(_utc(datetime.fromisoformat(str(entry[key]))), windows)].append(entry)
    return split


def _split_notifications(
    notes: list[dict], windows: list[tuple[datetime, datetime]], runs: list[EngineRun]
) -> list[list[dict]]:
    """A task's notification belongs to the run it came from (its window); a flow's to the failed
    runs in order, as they failed (a hook may run after its run's window has closed).
    """
    tasks = [n for n in notes if n["event"] != NotificationEvent.FLOW_FAILED]
    split = _split(tasks, windows, "at")
    failed = sorted(
        (
            i
            for i, run in enumerate(runs)
            if run.outcome is not FlowOutcome.COMPLETED and run.outcome is not FlowOutcome.DEGRADED
        ),
        key=lambda i: windows[i][1],
    )
    flows = sorted(
        (n for n in notes if n["event"] == NotificationEvent.FLOW_FAILED), key=lambda n: n["at"]
    )
    for n, note in enumerate(flows):
        split[
            failed[n]
            if n < len(failed)
            else _index(_utc(datetime.fromisoformat(note["at"])), windows)
        ].append(note)
    return split


def _registry_at(versions: list[dict], when: datetime) -> RegistrySnapshot:
    """The registry as it stood at `when`: the versions made by then and the last one promoted
    (its own tag says so; the first, the seeded production, has none).
    """
    made = [v for v in versions if v["created_ms"] <= when.timestamp() * 1000]
    promoted = [v["version"] for v in made if v["tags"].get("promoted", "true") == "true"]
    return RegistrySnapshot(
        versions=[v["version"] for v in made], production_version=promoted[-1] if promoted else None
    )


def _float(value: str | None) -> float | None:
    return None if value in (None, "None", "") else float(value)


def _baseline(run_dir: Path, model: Any, month: str) -> float | None:
    """The seeded production model's RMSE on `month`'s trips, as the run read them."""
    path = Path(run_dir) / "data" / f"clean_{month}.parquet"
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    return round(ml.rmse(model, ml.feature_dicts(frame, None), frame["duration"].to_numpy()), 4)
