"""The run-record schema, validated when written and when read: results/<engine>/<scenario>.json."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared_pipeline.vocabulary import FlowOutcome, RegistryEffect, StepState, split_task_id

SCHEMA_VERSION = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NativeState(_Strict):
    """One state an engine recorded for a task or flow, in its own words."""

    name: str
    type: str | None = None
    at: datetime | None = None
    message: str | None = None


class TaskRecord(_Strict):
    task: str  # shared task id: `extract[2024-02]`, `train[ridge]`, `gate`
    step: str
    key: str | None = None
    native_id: str | None = None  # the engine's own name for it (task run name, task_id+map_index)
    native_state: str | None  # None: the engine never created this task
    native_history: list[NativeState] = Field(default_factory=list)
    state: StepState
    attempts: int  # as the engine counts them (run_count, try_number)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @classmethod
    def of(cls, task: str, **fields: Any) -> TaskRecord:
        """The record of shared task id `task`, its step and key split out of it."""
        step, key = split_task_id(task)
        return cls(task=task, step=step, key=key, **fields)


class AttemptLogEntry(_Strict):
    """One attempt as the step itself logged it (independent of the engine)."""

    run: int
    step: str
    key: str | None
    attempt: int
    fault: str | None
    pid: int
    started: datetime
    ended: datetime | None
    outcome: str | None
    error: str | None
    # Where a step's clock guards only part of an attempt (the wait for a table lock, one HTTP
    # request), the longest such part in seconds; None where it guards the whole attempt.
    clocked: float | None = None

    @property
    def task(self) -> str:
        return f"{self.step}[{self.key}]" if self.key else self.step


class Notification(_Strict):
    run: int
    event: str
    task: str | None
    engine_state: str
    message: str
    at: datetime
    pid: int | None = None  # the process the hook ran in


class EngineNotification(_Strict):
    """What an engine's own notification mechanism (an automation, a notifier, a notification
    policy) delivered to the session's webhook sink about one flow run.
    """

    mechanism: str  # e.g. "automation: CallWebhook on prefect.flow-run.Failed"
    received_at: datetime
    sender_pid: int | None  # the process that sent it (the server's, a worker's, ...)
    sender: str | None = None  # which service that pid is, when it is one of the session's
    payload: dict[str, Any] | str


class RegistrySnapshot(_Strict):
    versions: list[int]
    production_version: int | None


class Limitation(_Strict):
    """Something the engine could not express as asked: the reason and the workaround used."""

    feature: str
    reason: str
    workaround: str
    doc: str | None = None


class GraphEdge(_Strict):
    """One dependency in the engine's own graph model: `upstream` feeds `downstream`."""

    upstream: str  # task names as the engine has them (native ids)
    downstream: str


class Kill(_Strict):
    """A kill -9 the `killed` fault sent: to which process, for which attempt, when."""

    task: str
    attempt: int
    step_pid: int  # the process the attempt log names
    pid: int  # the process killed: that one, or the one its runtime says runs it
    what: str  # "the process running the step", "its supervisor", ...
    at: datetime


class ScheduledRun(_Strict):
    """A flow run of the monthly schedule: which month, as the engine identified the run, and what
    its model scored (from the registry's own tags and metrics).
    """

    month: str  # trained on
    valid_month: str  # validated on
    # The run's identity as the engine stored it: its data interval, scheduled time, run id.
    native: dict[str, str]
    rerun: bool = False  # a failed month run again once its data had arrived
    rmse: float | None = None  # the model this run registered, on the validation month
    production_rmse: float | None = None  # the production model it was compared with, there
    # The first production model (trained on Settings.production_month), on the same month.
    baseline_rmse: float | None = None


class FlowRunRecord(_Strict):
    run: int
    flow: str
    native_state: str
    native_message: str | None = None
    outcome: FlowOutcome
    wall_seconds: float
    tasks: list[TaskRecord]
    notifications: list[Notification]
    # Deployed runtimes: what the engine's own mechanism delivered, beside what the hooks wrote.
    engine_notifications: list[EngineNotification] = Field(default_factory=list)
    registry_before: RegistrySnapshot
    registry_after: RegistrySnapshot
    registry_effect: RegistryEffect
    attempt_log: list[AttemptLogEntry]
    # The graph as the engine models it: "declared" before the run (a static DAG's edges) or
    # "observed" (rebuilt from what the run really did, e.g. task-run inputs); None if unknown.
    graph_kind: str | None = None
    graph: list[GraphEdge] = Field(default_factory=list)
    # The `killed` fault: what was killed, and when the engine's own store says the run ended
    # (None: it never did, or the engine keeps no such time).
    kills: list[Kill] = Field(default_factory=list)
    native_ended_at: datetime | None = None
    native_started_at: datetime | None = None
    schedule: ScheduledRun | None = None

    def task(self, task_id: str) -> TaskRecord | None:
        return next((t for t in self.tasks if t.task == task_id), None)


class RunRecord(_Strict):
    schema_version: int = SCHEMA_VERSION
    engine: str
    engine_version: str
    python_version: str
    scenario: str
    created_at: datetime
    machine: str | None = None  # one line: cores, memory, OS (no host name, no paths)
    run_dir: str  # relative to the output directory (OUT/runs/<engine>/<scenario>-<time>)
    runs: list[FlowRunRecord]
    wall_seconds: float
    limitations: list[Limitation] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)  # the Settings this run used
    db_backend: str = "sqlite"  # the source database's SQLAlchemy backend: sqlite, postgresql
    # The process that ran the engine (called flow.run(), dag.test(), ...): the attempt log's
    # pids say whether the tasks ran in it or elsewhere.
    runner_pid: int | None = None
    # How the engine ran the flows: its local test mode or as deployed (servers, workers).
    runtime: str = "test mode"


def registry_effect(before: RegistrySnapshot, after: RegistrySnapshot) -> RegistryEffect:
    if after.production_version != before.production_version:
        return RegistryEffect.PROMOTED
    if after.versions != before.versions:
        return RegistryEffect.REGISTERED_NOT_PROMOTED
    return RegistryEffect.UNCHANGED


DEFAULT_BACKEND = "sqlite"
# The source databases a run may use (the CLI's --db), and the SQLAlchemy backend each names.
DATABASES = {"sqlite": "sqlite", "postgres": "postgresql"}


def record_path(
    results_dir: Path, engine: str, scenario: str, backend: str = DEFAULT_BACKEND
) -> Path:
    """results/<engine>/<scenario>.json; runs on another database beside it in a folder of its own:
    results/<engine>/postgresql/<scenario>.json.
    """
    folder = results_dir / engine
    return (folder if backend == DEFAULT_BACKEND else folder / backend) / f"{scenario}.json"


def write_record(record: RunRecord | dict[str, Any], results_dir: Path) -> Path:
    """Validate, then write atomically: a reader never sees half a record."""
    record = RunRecord.model_validate(record if isinstance(record, dict) else record.model_dump())
    path = record_path(results_dir, record.engine, record.scenario, record.db_backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def read_record(path: Path) -> RunRecord:
    return RunRecord.model_validate_json(path.read_text())
