"""Runs the Prefect flows for the harness and reads every task run back from Prefect's API."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect2.compat import MAJOR, VERSION, ApiServer, drain_events, flow_run_settings
from shared_pipeline.harness import EngineRun
from shared_pipeline.records import GraphEdge, Limitation, NativeState, TaskRecord
from shared_pipeline.vocabulary import FlowOutcome, StepState
from shared_pipeline.vocabulary import task_state as shared_task_state
from shared_pipeline.workdirs import database_from_cli, engine_home

# Prefect's state names (type/name) onto the shared vocabulary.
TASK_STATES = {
    "Completed": StepState.COMPLETED,
    "Cached": StepState.CACHED,
    "Failed": StepState.FAILED,
    "Crashed": StepState.FAILED,
    "TimedOut": StepState.TIMED_OUT,
    "NotReady": StepState.NOT_RUN_UPSTREAM_FAILED,
    "Pending": StepState.NOT_RUN_UPSTREAM_FAILED,
}
FINAL_TYPES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def task_state(name: str, run_count: int) -> StepState:
    return shared_task_state(TASK_STATES, name, run_count, "shared state for Prefect task state")


def flow_outcome(state_type: str, state_name: str) -> FlowOutcome:
    if state_type == "COMPLETED":
        return FlowOutcome.DEGRADED if state_name == "Degraded" else FlowOutcome.COMPLETED
    return FlowOutcome.FAILED


PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
}


def migrated_database(cache: Path) -> Path:
    """An empty, migrated Prefect database for this version, made once (about 9 s).

    Copying it saves every later session the migrations (4-6 s) at its first flow run.
    """
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return database_from_cli(
        cache / f"prefect-{VERSION}.db",
        # The CLI beside this interpreter: Prefect 2.x has no `python -m prefect`.
        [str(Path(sys.executable).with_name("prefect")), "server", "database", "upgrade", "-y"],
        lambda home: {**env, **PREFECT_ENV, "PREFECT_HOME": str(home)},
        "prefect.db",
    )


def prefect_env(home: Path) -> dict[str, str]:
    """A home whose database comes migrated (`migrated_database`): the API need not check it
    again each time it starts (2.x's in-process app starts again whenever no client is open,
    about once per flow run: 0.06 s each).
    """
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
        **PREFECT_ENV,
    }


def test_mode_env(home: Path) -> dict[str, str]:
    """The test mode's home: as any, and its API registers no block types (0.8 s at each start,
    measured on 3.x's server): its flows save no blocks.
    """
    return {**prefect_env(home), "PREFECT_API_BLOCKS_REGISTER_ON_START": "false"}


class PrefectAdapter:
    """One per process: one API (an in-process app on 2.x, one server subprocess on 3.x)."""

    limitations: list[Limitation] = []
    runtime = "test mode"

    def __init__(self, out: Path) -> None:
        self.name = f"prefect{MAJOR}"
        self.version = VERSION
        os.environ.pop("PREFECT_API_URL", None)  # never report to somebody's real server
        # A fresh state store per process (no stale cache keys; `pytest -n 2` runs two).
        self.home = engine_home(
            (out / "runs" / self.name / ".prefect-home").resolve(),
            ("prefect",),
            test_mode_env,
            (migrated_database((out / "runs" / ".cache").resolve()), "prefect.db"),
        )
        from prefect2.flows import FLOWS

        self._flows = FLOWS
        self.server = ApiServer()

    def close(self) -> None:
        self.server.stop()

    def run_flow(self, run_dir: str, flow: str, resume: bool = False) -> EngineRun:
        # A resumed run needs nothing else: the cache keys find the results the last one left.
        self.server.start()
        with flow_run_settings():
            state = self._flows[flow](run_dir, return_state=True)
        drain_events()
        # 2.x writes every state before the flow returns; 3.x records task runs from events.
        return read_engine_run(state.state_details.flow_run_id, settle_s=0.0 if MAJOR == 2 else 0.3)


def read_engine_run(
    flow_run_id: Any, settle_s: float = 0.3, since: datetime | None = None
) -> EngineRun:
    """What Prefect's API stored about a flow run: its state, its task runs, their graph (with
    `since`, the task runs that moved from then on: a retried flow run keeps its earlier ones).
    """
    flow_run, task_runs = read_flow_run(flow_run_id, settle_s=settle_s)
    started = flow_run.start_time
    if since is not None:
        # 3.x's retry makes new task runs; 2.x's re-run of the flow run moves its old ones on.
        task_runs = [(run, h) for run, h in task_runs if h and h[-1].timestamp > since]
        started = min(
            (next(s.timestamp for s in h if s.timestamp > since) for _, h in task_runs),
            default=since,
        )
    origins = cache_origins([run for run, _ in task_runs])
    return EngineRun(
        native_state=flow_run.state_name,
        native_message=flow_run.state.message,
        outcome=flow_outcome(flow_run.state_type.value, flow_run.state_name),
        tasks=[
            _task_record(run, history, origins, flow_run.state_type.value == "CRASHED")
            for run, history in task_runs
        ],
        graph_kind="observed",
        graph=observed_graph([run for run, _ in task_runs], origins),
        native_ended_at=flow_run.end_time or flow_run.state.timestamp,
        native_started_at=started,
    )


def observed_graph(task_runs: list[Any], origins: dict[Any, str]) -> list[GraphEdge]:
    """The run's graph as Prefect recorded it: each task run's `task_inputs` that came from
    another task run (a future, a state, or a result Prefect traced back to its task run).

    A dynamic flow has no graph before it runs; this is the one its run actually drew.
    """
    names = {run.id: origins.get(run.id, run.name) for run in task_runs}
    edges = set()
    for run in task_runs:
        for inputs in (run.task_inputs or {}).values():
            for item in inputs:
                upstream = names.get(getattr(item, "id", None))
                if getattr(item, "input_type", None) == "task_run" and upstream is not None:
                    edges.add((upstream, names[run.id]))
    return [GraphEdge(upstream=u, downstream=d) for u, d in sorted(edges)]


def cache_origins(task_runs: list[Any]) -> dict[Any, str]:
    """Names of the earlier task runs whose results cached task runs reused, by cache key.

    Prefect 2.x renders `task_run_name` only when a task run starts running, so a run that is
    Cached straight away keeps its default name ("extract-0"); the earlier run it reused has the
    rendered one. The shared cache key in both states is Prefect's own link between them.
    """
    from prefect import get_client

    wanted = {
        run.state.state_details.cache_key: run.id
        for run in task_runs
        if run.state_name == "Cached"
        and "[" not in run.name
        and run.name.rpartition("-")[2].isdigit()
    }
    if not wanted:
        return {}
    origins: dict[Any, str] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while page := client.read_task_runs(limit=200, offset=offset):
            for run in page:
                key = run.state.state_details.cache_key if run.state else None
                if key in wanted and run.state_name == "Completed":
                    origins[wanted[key]] = run.name
            offset += len(page)
    return origins


def _task_record(
    task_run: Any, history: list[Any], origins: dict[Any, str], crashed: bool = False
) -> TaskRecord:
    name = origins.get(task_run.id, task_run.name)
    if crashed and task_run.state_type.value == "RUNNING":
        # Its flow run's process died: nobody will end this task run, it stays Running.
        state = StepState.LOST
    else:
        state = task_state(task_run.state_name, task_run.run_count)
    return TaskRecord.of(
        name,
        native_id=task_run.name if name == task_run.name else f"{task_run.name} (reuses {name})",
        native_state=task_run.state_name,
        native_history=[
            NativeState(name=s.name, type=s.type.value, at=s.timestamp, message=s.message)
            for s in history
        ],
        state=state,
        attempts=task_run.run_count,
        started_at=task_run.start_time,
        ended_at=task_run.end_time,
    )


def read_flow_run(
    flow_run_id: Any, settle_s: float = 0.3, limit_s: float = 30.0, min_tasks: int = 0
):
    """The flow run and all its task runs with their state histories, from the API.

    3.x writes task runs from events after the flow returns, so poll until there are at least
    `min_tasks`, every one is in a final state, its history agrees with it, and nothing has
    changed for `settle_s`. Settling took at most 0.95 s beside a busy core: `limit_s` is over 30
    times that.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    task_filter = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
    deadline = time.monotonic() + limit_s
    previous, stable_since = None, time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(task_run_filter=task_filter, limit=200)
            histories = {
                run.id: sorted(client.read_task_run_states(run.id), key=lambda s: s.timestamp)
                for run in runs
            }
            snapshot = sorted(
                (str(r.id), r.state_name, r.run_count, len(histories[r.id])) for r in runs
            )
            now = time.monotonic()
            if snapshot != previous:
                previous, stable_since = snapshot, now
            # A flow run that crashed leaves the task runs its process was running as they were.
            crashed = client.read_flow_run(flow_run_id).state_type.value == "CRASHED"
            settled = len(runs) >= min_tasks and all(
                (r.state_type.value in FINAL_TYPES or r.state_name == "NotReady" or crashed)
                and histories[r.id]
                and histories[r.id][-1].name == r.state_name
                for r in runs
            )
            if settled and now - stable_since >= settle_s:
                break
            if now > deadline:
                raise TimeoutError(f"task runs of flow run {flow_run_id} never settled")
            time.sleep(0.05)
        flow_run = client.read_flow_run(flow_run_id)
    ordered = sorted(runs, key=lambda r: r.start_time or r.expected_start_time or r.created)
    return flow_run, [(run, histories[run.id]) for run in ordered]
