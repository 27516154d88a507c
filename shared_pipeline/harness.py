"""Runs one scenario through one engine adapter: prepare the run directory, run, write the record.

An adapter (one per wiring) runs a flow and reads task states back from its engine's own store.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import multiprocessing
import os
import platform
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.pipeline import Pipeline
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from shared_pipeline import ml, postgres, registry
from shared_pipeline.backfill import scheduled_runs
from shared_pipeline.context import RunContext, set_current_run
from shared_pipeline.data import drop_months, generate_month, load_months
from shared_pipeline.enrichment_api import EnrichmentAPI
from shared_pipeline.faults import init_attempt_log, mark_fixed, read_attempt_log
from shared_pipeline.faults_plan import FaultKind
from shared_pipeline.killer import Killer, the_step_process
from shared_pipeline.notifications import read_notifications
from shared_pipeline.records import (
    DATABASES,
    DEFAULT_BACKEND,
    AttemptLogEntry,
    EngineNotification,
    FlowRunRecord,
    GraphEdge,
    Limitation,
    RegistrySnapshot,
    RunRecord,
    TaskRecord,
    registry_effect,
    write_record,
)
from shared_pipeline.scenarios import Scenario, ScenarioError
from shared_pipeline.schedule import next_month
from shared_pipeline.settings import Settings
from shared_pipeline.vocabulary import FlowOutcome, StepState
from shared_pipeline.wiring import expectations
from shared_pipeline.workdirs import build_once

# Backends whose maintenance (a lock another session holds) faults.py can put in place.
LOCKABLE_BACKENDS = frozenset({"sqlite", "postgresql"})


class EngineRun(BaseModel):
    """What an adapter read back from its engine about one flow run."""

    model_config = ConfigDict(extra="forbid")

    native_state: str
    native_message: str | None = None
    outcome: FlowOutcome
    tasks: list[TaskRecord]
    graph_kind: str | None = None  # "declared" or "observed": see FlowRunRecord
    graph: list[GraphEdge] = Field(default_factory=list)
    engine_notifications: list[EngineNotification] = Field(default_factory=list)
    native_ended_at: datetime | None = None  # when the engine's store says the flow run ended
    native_started_at: datetime | None = None
    # A run of the monthly schedule: the month its engine's identity gives (the data interval,
    # the scheduled time) and that identity as stored.
    month: str | None = None
    native_schedule: dict[str, str] = Field(default_factory=dict)


class EngineAdapter(Protocol):
    """What the CLI and the harness need of a wiring's adapter (shared_pipeline/engine_table.py
    names each): made with the output directory, it runs flows and reads back what its engine
    stored; `close()` stops whatever it started.
    """

    name: str  # results/<name>/: python, prefect2, prefect3, ...
    version: str
    runtime: str  # RunRecord.runtime: "test mode" or "deployed: <what runs the flows>"
    limitations: list[Limitation]

    def __init__(self, out: Path) -> None: ...

    def run_flow(self, run_dir: str, flow: str, resume: bool) -> EngineRun:
        """Run `flow` on `run_dir`. `resume`: an earlier flow run of this run directory failed and
        its cause was fixed; the engine resumes it its own way (a cache, checkpoints, clearing
        the failed task instances) or, if it has none, just runs again.
        """
        ...

    def close(self) -> None: ...


class ScheduleAdapter(Protocol):
    """What a wiring's adapter adds for the scenarios of the monthly schedule (`flow="monthly"`):
    each returns the flow runs it made in month order, one month at a time, each with the month
    and the window (`native_started_at`, `native_ended_at`) its engine stored.
    """

    def backfill(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """Run the schedule for each of `months` (the months trained on), its engine's way."""
        ...

    def rerun(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """Run the failed runs of `months` again, and only those, its engine's way."""
        ...


@functools.lru_cache(maxsize=16)
def _month(month: str, n_trips: int, corrupt: bool) -> pd.DataFrame:
    return generate_month(month, n_trips, corrupt=corrupt)


def source_months(settings: Settings, scenario: Scenario) -> tuple[str, ...]:
    """The months the scenario's source database holds: production's, then what its runs train
    and validate on (a schedule's months and the month after its last).
    """
    if scenario.schedule:
        return (settings.production_month, *scenario.schedule, next_month(scenario.schedule[-1]))
    return (settings.production_month, settings.train_month, settings.valid_month)


def _sqlite_source(
    run_dir: Path,
    settings: Settings,
    months: tuple[str, ...],
    corrupt: tuple[str, ...],
    cache: Path,
) -> str:
    """The run's own SQLite file: a copy of a loaded template (loading 90k rows costs ~1 s)."""
    template = build_once(
        cache / f"trips-{settings.trips_per_month}-{'-'.join(months)}.db",
        lambda tmp: load_months(
            f"sqlite:///{tmp}", {m: _month(m, settings.trips_per_month, False) for m in months}
        ),
    )
    path = run_dir / "source" / "trips.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    db_url = f"sqlite:///{path}"
    load_months(db_url, {m: _month(m, settings.trips_per_month, True) for m in corrupt})
    return db_url


def _postgres_source(
    run_dir: Path,
    settings: Settings,
    months: tuple[str, ...],
    corrupt: tuple[str, ...],
    cache: Path,
) -> str:
    """The run's own database on this process's PostgreSQL server, copied from a loaded template
    (in the server's cached data directory: loading 90k rows costs ~1 s a process).
    """
    # Named by its first and last month and their count: PostgreSQL names take 63 bytes.
    template = f"trips_{settings.trips_per_month}_{months[0]}_{months[-1]}_{len(months)}"
    template = template.replace("-", "_")

    def load_template(server: URL) -> None:
        url = postgres.create_database(server, template)
        load_months(url, {m: _month(m, settings.trips_per_month, False) for m in months})

    runs_root = run_dir.parent.parent
    # A short name: the build's socket lives in that folder (unix sockets take 107 bytes).
    key = hashlib.sha256(template.encode()).hexdigest()[:8]
    seeded = postgres.seeded_data(runs_root, cache / f"pg-{postgres.VERSION}-{key}", load_template)
    server = postgres.server_url(runs_root, seeded)
    if not postgres.database_exists(server, template):  # a server started before, unseeded
        load_template(server)
    db_url = postgres.create_database(server, postgres.database_name(run_dir), template=template)
    load_months(db_url, {m: _month(m, settings.trips_per_month, True) for m in corrupt})
    return db_url


def _user_source(
    db_url: str, settings: Settings, months: tuple[str, ...], corrupt: tuple[str, ...]
) -> str:
    """A database the user runs: only the months' own tables are (re)loaded, nothing else."""
    try:
        load_months(db_url, {m: _month(m, settings.trips_per_month, m in corrupt) for m in months})
    except SQLAlchemyError as exc:  # e.g. a role that may read but not create tables
        lines = [line.strip() for line in str(getattr(exc, "orig", exc)).splitlines()]
        first = next((line for line in lines if line), type(exc).__name__)
        shown = make_url(db_url).render_as_string(hide_password=True)
        raise ScenarioError(f"cannot load the months' tables into {shown}: {first}") from exc
    return db_url


@functools.lru_cache(maxsize=4)
def _production_model(month: str, n_trips: int) -> Pipeline:
    """Production today: a model trained on an older month, without enrichment."""
    trips = ml.clean_trips(_month(month, n_trips, False))
    return ml.make_model({"model": "linear"}).fit(
        ml.feature_dicts(trips, None), trips["duration"].to_numpy()
    )


def _seed_production(run_dir: Path, settings: Settings) -> None:
    # The same model for every run of a process: fitted once, registered in each run's store.
    model = _production_model(settings.production_month, settings.trips_per_month)
    version = registry.log_and_register(
        run_dir, model, metrics={}, tags={"scenario": "seed", "month": settings.production_month}
    )
    registry.promote(run_dir, version)


OUT_PLACEHOLDER = "<out>"


def machine_summary() -> str:
    """One line about the machine a record came from: cores, memory, OS; nothing identifying."""
    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = ""
    try:
        system = platform.freedesktop_os_release()["PRETTY_NAME"]
    except (OSError, KeyError):
        system = platform.system()
    return f"{os.cpu_count()} cores{memory}, {system} ({platform.machine()})"


def _validate(scenario: Scenario, backend: str) -> None:
    locks = any(rule.kind is FaultKind.DB_LOCKED for rule in scenario.faults)
    if locks and backend not in LOCKABLE_BACKENDS:
        raise ScenarioError(
            f"scenario {scenario.id} takes the database for maintenance, which this suite can do"
            f" on {' and '.join(sorted(LOCKABLE_BACKENDS))}, not on {backend}"
        )


def _fill_unseen(
    tasks: list[TaskRecord], may_be_absent: tuple[str, ...], outcome: FlowOutcome
) -> None:
    """Tasks the engine never created, where its wiring says it may not: a successful run skipped
    them, a failed one never got there, a lost one may have done anything. A dynamic flow only
    creates the tasks it calls, so their absence is itself the engine's answer. Any other missing
    task stays missing (conformance reports it).
    """
    seen = {t.task for t in tasks}
    state = {
        FlowOutcome.FAILED: StepState.NOT_RUN_UPSTREAM_FAILED,
        FlowOutcome.LOST: StepState.LOST,  # a run whose process died: nothing says what it did
    }.get(outcome, StepState.SKIPPED)
    for task_id in may_be_absent:
        if task_id not in seen:
            tasks.append(
                TaskRecord.of(
                    task_id,
                    native_state=None,
                    state=state,
                    attempts=0,
                )
            )


def _killer(
    adapter: EngineAdapter, scenario: Scenario, run_dir: Path, run: int
) -> contextlib.AbstractContextManager[Killer | None]:
    """Who kills the process of a `killed` attempt (the adapter may name which process)."""
    if not any(rule.kind is FaultKind.KILLED for rule in scenario.faults):
        return contextlib.nullcontext()
    return Killer(run_dir, run, getattr(adapter, "kill_target", the_step_process))


def _run_flow(
    adapter: EngineAdapter, killer: Killer | None, run_dir: str, flow: str, resume: bool
) -> EngineRun:
    """`adapter.run_flow`; where a kill is planned and the adapter runs flows in its own process
    (`in_process`), in a child process, so that the kill ends the flow and not this one; what it
    left is then read back by `adapter.after_kill(run_dir, flow, status)`.
    """
    if killer is not None and hasattr(adapter, "run_flow_alone"):
        return adapter.run_flow_alone(run_dir, flow, resume)  # a runtime the kill may not share
    if killer is None or not getattr(adapter, "in_process", False):
        return adapter.run_flow(run_dir, flow, resume)
    context = multiprocessing.get_context("fork")  # the adapter as it is, engine imported
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(adapter, run_dir, flow, resume, writer))
    child.start()
    writer.close()
    try:
        answer = reader.recv()
    except EOFError:  # the child died before it could answer
        answer = None
    child.join()
    if answer is None:
        return adapter.after_kill(run_dir, flow, child.exitcode)
    return EngineRun.model_validate_json(answer)


def _child(adapter: EngineAdapter, run_dir: str, flow: str, resume: bool, answer: Any) -> None:
    answer.send(adapter.run_flow(run_dir, flow, resume).model_dump_json())


def flow_run_record(
    number: int,
    flow: str,
    result: EngineRun,
    expectation: Any,
    *,
    wall_s: float,
    notifications: list[dict],
    before: RegistrySnapshot,
    after: RegistrySnapshot,
    attempts: list[dict],
    **more: Any,
) -> FlowRunRecord:
    """One flow run's record: what the engine said (`result`), beside the steps' own attempts,
    the hooks' notifications and the registry before and after it.
    """
    tasks = list(result.tasks)
    if expectation is not None:
        _fill_unseen(tasks, expectation.may_be_absent, result.outcome)
    return FlowRunRecord(
        run=number,
        flow=flow,
        native_state=result.native_state,
        native_message=result.native_message,
        outcome=result.outcome,
        wall_seconds=round(wall_s, 3),
        tasks=tasks,
        notifications=[{**n, "run": number} for n in notifications],
        engine_notifications=result.engine_notifications,
        registry_before=before,
        registry_after=after,
        registry_effect=registry_effect(before, after),
        attempt_log=[AttemptLogEntry(**{**e, "run": number}) for e in attempts],
        graph_kind=result.graph_kind,
        graph=result.graph,
        native_started_at=result.native_started_at,
        native_ended_at=result.native_ended_at,
        **more,
    )


class _Source:
    """The scenario's source database, to load a late month into once it arrives."""

    def __init__(self, db_url: str, settings: Settings) -> None:
        self.db_url, self.settings = db_url, settings

    def arrive(self, months: tuple[str, ...]) -> None:
        n = self.settings.trips_per_month
        load_months(self.db_url, {m: _month(m, n, False) for m in months})


def run_scenario(
    adapter: EngineAdapter,
    scenario: Scenario,
    out: Path,
    *,
    base_settings: Settings | None = None,
    db: str = "sqlite",
    db_url: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> RunRecord:
    """Run `scenario` through `adapter` in a fresh run directory; write and return its record.

    The source database is the run's own SQLite file (`db="sqlite"`), its own database on this
    process's PostgreSQL server (`db="postgres"`), or the user's `db_url`.
    """
    started = time.perf_counter()
    settings = base_settings or Settings()
    runs_root = (out / "runs" / adapter.name).resolve()
    cache = (out / "runs" / ".cache").resolve()
    if db_url is not None:
        db_url = postgres.normalize_url(db_url)
        backend = make_url(db_url).get_backend_name()
    elif db in DATABASES:
        backend = DATABASES[db]
    else:
        raise ScenarioError(f"unknown database {db!r} (known: {', '.join(DATABASES)})")
    _validate(scenario, backend)
    say = on_progress or (lambda _msg: None)
    label = scenario.id if backend == DEFAULT_BACKEND else f"{scenario.id}.{backend}"
    # A new directory per run: libraries cache connections by path (MLflow's SQLAlchemy engines),
    # and Prefect's cache keys include it, so a path is never reused for another run.
    run_dir = runs_root / f"{label}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"

    corrupt = scenario.corrupt_months
    months = source_months(settings, scenario)
    if db_url is not None:
        say("loading the months into your database")
        db_url = _user_source(db_url, settings, months, corrupt)  # fails before anything is written
    for previous in runs_root.glob(f"{label}-*"):
        shutil.rmtree(previous)  # only the latest run of a scenario is kept, with its record
    run_dir.mkdir(parents=True)
    say(f"preparing data ({backend}) and registry")
    if db_url is None and backend == "postgresql":
        db_url = _postgres_source(run_dir, settings, months, corrupt, cache)
    elif db_url is None:
        db_url = _sqlite_source(run_dir, settings, months, corrupt, cache)
    drop_months(db_url, scenario.late_months)  # they arrive after the first pass
    registry.create_store(run_dir, template=cache / "mlflow-empty.db")
    _seed_production(run_dir, settings)
    init_attempt_log(run_dir)

    runs: list[FlowRunRecord] = []
    expected_runs = expectations(scenario, adapter.name)
    with EnrichmentAPI() as api:
        RunContext(
            run_dir=str(run_dir),
            scenario=scenario.id,
            engine=adapter.name,
            db_url=db_url,
            api_url=api.url,
            api_control_url=api.control_url,
            settings=settings,
            faults=scenario.faults,
        ).save()
        if scenario.schedule:
            runs = scheduled_runs(
                adapter, scenario, run_dir, expected_runs, _Source(db_url, settings), say
            )
        for number, expectation in enumerate([] if scenario.schedule else expected_runs, start=1):
            if number > 1:
                mark_fixed(run_dir)
            set_current_run(run_dir, number)
            say(f"flow run {number}/{len(scenario.runs)}")
            before = RegistrySnapshot(**registry.snapshot(run_dir))
            t0 = time.perf_counter()
            with _killer(adapter, scenario, run_dir, number) as killer:
                result = _run_flow(adapter, killer, str(run_dir), scenario.flow, number > 1)
            wall = time.perf_counter() - t0
            after = RegistrySnapshot(**registry.snapshot(run_dir))
            runs.append(
                flow_run_record(
                    number,
                    scenario.flow,
                    result,
                    expectation,
                    wall_s=wall,
                    notifications=read_notifications(run_dir, number),
                    before=before,
                    after=after,
                    attempts=read_attempt_log(run_dir, number),
                    kills=killer.kills if killer else [],
                )
            )
    record = RunRecord(
        engine=adapter.name,
        engine_version=adapter.version,
        python_version=platform.python_version(),
        scenario=scenario.id,
        created_at=datetime.now(UTC),
        machine=machine_summary(),
        # Relative, so committed records name no path of the machine that made them.
        run_dir=run_dir.relative_to(out.resolve()).as_posix(),
        runs=runs,
        wall_seconds=round(time.perf_counter() - started, 3),
        limitations=list(adapter.limitations),
        settings=settings.model_dump(),
        db_backend=backend,
        runner_pid=os.getpid(),
        runtime=adapter.runtime,
    )
    # Engines and drivers quote paths in their messages (a socket, a file): committed records
    # name no path of the machine that made them, so the output directory becomes OUT_PLACEHOLDER.
    scrubbed = record.model_dump_json().replace(str(out.resolve()), OUT_PLACEHOLDER)
    record = RunRecord.model_validate_json(scrubbed)
    write_record(record, out / "results")
    return record
