"""When a timeout was declared (the engine's state history) against when the work really stopped
(the steps' own attempt log): "interrupted", or "labelled late by N s".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared_pipeline.faults_plan import HANG_FAULTS
from shared_pipeline.records import AttemptLogEntry, FlowRunRecord, RunRecord, TaskRecord
from shared_pipeline.settings import Settings

# Under this, a declaration counts as on time (engines poll and write states asynchronously).
ON_TIME_S = 0.5


@dataclass(frozen=True)
class TimeoutVerdict:
    task: str
    budget_s: float
    work_s: float  # how long the step's attempt really ran (attempt log)
    declared_s: float | None  # when the engine ended the task, from the attempt's start
    interrupted: bool  # the work stopped before the hang ran to its cap

    @property
    def label(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.declared_s is None:
            return "never declared"
        late = self.declared_s - self.budget_s
        if late > ON_TIME_S:
            return f"labelled late by {late:.1f} s"
        return f"declared on time, work ran {self.work_s - self.declared_s:.1f} s on"


def _declared_at(task: TaskRecord | None) -> datetime | None:
    """The moment the engine put the task in its final state: its last native state, or end."""
    if task is None:
        return None
    stamped = [s.at for s in task.native_history if s.at is not None]
    return stamped[-1] if stamped else task.ended_at


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds()


def run_verdicts(run: FlowRunRecord, budget_s: float) -> list[TimeoutVerdict]:
    """One verdict per attempt that met a planned hang (the last attempt of each task)."""
    last: dict[str, AttemptLogEntry] = {}
    for entry in run.attempt_log:
        if entry.fault in HANG_FAULTS:
            last[entry.task] = entry
    verdicts = []
    for task_id, entry in last.items():
        work = _seconds(entry.started, entry.ended)
        verdicts.append(
            TimeoutVerdict(
                task=task_id,
                budget_s=budget_s,
                work_s=work if work is not None else float("nan"),
                declared_s=_seconds(entry.started, _declared_at(run.task(task_id))),
                interrupted=entry.outcome != "hang_cap_reached",
            )
        )
    return verdicts


def record_verdicts(record: RunRecord) -> list[list[TimeoutVerdict]]:
    """Per flow run of `record`, the verdicts against the training timeout it ran with."""
    budget = record.settings.get("train_timeout_s", Settings().train_timeout_s)
    return [run_verdicts(run, budget) for run in record.runs]


def summary(verdicts: list[TimeoutVerdict]) -> str:
    """'interrupted ×3', or the worst lateness when some ran on: one short line for a table."""
    if not verdicts:
        return ""
    if all(v.interrupted for v in verdicts):
        return f"interrupted ×{len(verdicts)}"
    worst = max(
        (v for v in verdicts if not v.interrupted),
        key=lambda v: v.declared_s if v.declared_s is not None else float("inf"),
    )
    return f"{worst.label} (×{sum(not v.interrupted for v in verdicts)})"
