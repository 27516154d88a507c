"""Runs one scenario through one engine adapter: prepare the run directory, run, write the record.

An adapter (one per wiring) runs a flow and reads task states back from its engine's own store.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.pipeline import Pipeline
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared_pipeline import ml, registry
from shared_pipeline.context import RunContext, set_current_run
from shared_pipeline.data import generate_month, load_months
from shared_pipeline.enrichment_api import EnrichmentAPI
from shared_pipeline.faults import init_attempt_log, mark_fixed, read_attempt_log
from shared_pipeline.faults_plan import FaultKind
from shared_pipeline.notifications import read_notifications
from shared_pipeline.records import (
    AttemptLogEntry,
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
from shared_pipeline.settings import Settings
from shared_pipeline.vocabulary import FlowOutcome, StepState


class EngineRun(BaseModel):
    """What an adapter read back from its engine about one flow run."""

    model_config = ConfigDict(extra="forbid")

    native_state: str
    native_message: str | None = None
    outcome: FlowOutcome
    tasks: list[TaskRecord]
    graph_kind: str | None = None  # "declared" or "observed": see FlowRunRecord
    graph: list[GraphEdge] = Field(default_factory=list)


class EngineAdapter(Protocol):
    name: str  # results/<name>/: python, prefect2, prefect3, ...
    version: str
    limitations: list[Limitation]

    def run_flow(self, run_dir: str, flow: str) -> EngineRun: ...

    def close(self) -> None: ...


def check_database(db_url: str) -> None:
    """Fail early and clearly when a user-given database URL cannot be reached."""
    try:
        engine = create_engine(db_url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver's error: the message is what the user needs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(f"cannot reach database {db_url!r}: {first}") from exc


@functools.lru_cache(maxsize=16)
def _month(month: str, n_trips: int, corrupt: bool) -> pd.DataFrame:
    return generate_month(month, n_trips, corrupt=corrupt)


def _prepare_source(
    db_url: str, settings: Settings, corrupt: tuple[str, ...], cache: Path, own_file: bool
) -> None:
    """Load the months into the source database (replacing only their tables)."""
    months = (settings.production_month, settings.train_month, settings.valid_month)
    url = make_url(db_url)
    if own_file:
        # Loading 90k rows costs ~1 s; a copy of a loaded template costs nothing.
        template = cache / f"trips-{settings.trips_per_month}-{'-'.join(months)}.db"
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            tmp = template.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            load_months(
                f"sqlite:///{tmp}", {m: _month(m, settings.trips_per_month, False) for m in months}
            )
            tmp.replace(template)
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, url.database)
        frames = {m: _month(m, settings.trips_per_month, True) for m in corrupt}
    else:
        frames = {m: _month(m, settings.trips_per_month, m in corrupt) for m in months}
    if frames:
        load_months(db_url, frames)


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


def _validate(scenario: Scenario, db_url: str) -> None:
    needs_sqlite = any(rule.kind is FaultKind.DB_LOCKED for rule in scenario.faults)
    if needs_sqlite and make_url(db_url).get_backend_name() != "sqlite":
        raise ScenarioError(
            f"scenario {scenario.id} locks the database with SQLite's BEGIN EXCLUSIVE;"
            f" it needs a SQLite --db-url"
        )


def _fill_unseen(tasks: list[TaskRecord], expected: list[str], outcome: FlowOutcome) -> None:
    """Tasks the engine never created: a successful run skipped them, a failed one never got there.

    Dynamic flows only create the tasks they call, so absence is itself the engine's answer.
    """
    seen = {t.task for t in tasks}
    state = (
        StepState.NOT_RUN_UPSTREAM_FAILED if outcome is FlowOutcome.FAILED else StepState.SKIPPED
    )
    for task_id in expected:
        if task_id not in seen:
            step, _, key = task_id.partition("[")
            tasks.append(
                TaskRecord(
                    task=task_id,
                    step=step,
                    key=key.rstrip("]") or None,
                    native_state=None,
                    state=state,
                    attempts=0,
                )
            )


def run_scenario(
    adapter: EngineAdapter,
    scenario: Scenario,
    out: Path,
    *,
    base_settings: Settings | None = None,
    db_url: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> RunRecord:
    """Run `scenario` through `adapter` in a fresh run directory; write and return its record."""
    started = time.perf_counter()
    settings = base_settings or Settings()
    runs_root = (out / "runs" / adapter.name).resolve()
    # A new directory per run: libraries cache connections by path (MLflow's SQLAlchemy engines),
    # and Prefect's cache keys include it, so a path is never reused for another run.
    run_dir = runs_root / f"{scenario.id}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    cache = (out / "runs" / ".cache").resolve()
    own_file = db_url is None  # the run's own SQLite file; a user's database is never replaced
    db_url = db_url or f"sqlite:///{run_dir / 'source' / 'trips.db'}"
    _validate(scenario, db_url)
    say = on_progress or (lambda _msg: None)

    for previous in runs_root.glob(f"{scenario.id}-*"):
        shutil.rmtree(previous)  # only the latest run of a scenario is kept, with its record
    run_dir.mkdir(parents=True)
    say("preparing data and registry")
    _prepare_source(db_url, settings, scenario.corrupt_months, cache, own_file)
    registry.create_store(run_dir, template=cache / "mlflow-empty.db")
    _seed_production(run_dir, settings)
    init_attempt_log(run_dir)

    runs: list[FlowRunRecord] = []
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
        for number, expectation in enumerate(scenario.runs, start=1):
            if number > 1:
                mark_fixed(run_dir)
            set_current_run(run_dir, number)
            say(f"flow run {number}/{len(scenario.runs)}")
            before = RegistrySnapshot(**registry.snapshot(run_dir))
            t0 = time.perf_counter()
            result = adapter.run_flow(str(run_dir), scenario.flow)
            wall = time.perf_counter() - t0
            after = RegistrySnapshot(**registry.snapshot(run_dir))
            tasks = list(result.tasks)
            _fill_unseen(tasks, list(expectation.steps), result.outcome)
            runs.append(
                FlowRunRecord(
                    run=number,
                    flow=scenario.flow,
                    native_state=result.native_state,
                    native_message=result.native_message,
                    outcome=result.outcome,
                    wall_seconds=round(wall, 3),
                    tasks=tasks,
                    notifications=read_notifications(run_dir, number),
                    registry_before=before,
                    registry_after=after,
                    registry_effect=registry_effect(before, after),
                    attempt_log=[AttemptLogEntry(**e) for e in read_attempt_log(run_dir, number)],
                    graph_kind=result.graph_kind,
                    graph=result.graph,
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
    )
    write_record(record, out / "results")
    return record
