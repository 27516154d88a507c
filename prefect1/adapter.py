"""Runs the Prefect 1 flows with `flow.run()` on the main thread and reads every task's state
from the flow-run state Prefect returns (plus the changes its state handlers saw, for history).

Two engines: `prefect1` (the default local executor) and `prefect1-dask` (DaskExecutor against
one LocalCluster of 2 worker processes, started once per session and closed by its starter).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared_pipeline import schedule, steps
from shared_pipeline.context import current_run, load_context
from shared_pipeline.faults import read_attempt_log
from shared_pipeline.harness import EngineRun
from shared_pipeline.processes import alive, exit_on_sigterm
from shared_pipeline.records import GraphEdge, Limitation, NativeState, TaskRecord
from shared_pipeline.vocabulary import FlowOutcome, StepState, map_native
from shared_pipeline.vocabulary import task_state as shared_task_state
from shared_pipeline.workdirs import SharedService, engine_home

VERSION = version("prefect")
MONTH_ROLES = ("train_month", "valid_month")  # the monthly flow's tasks named by role
SOURCE = f"https://github.com/PrefectHQ/prefect/blob/{VERSION}/src/prefect"
DOCS = f"https://github.com/PrefectHQ/prefect/blob/{VERSION}/docs/core"

# Prefect 1's final task states onto the shared vocabulary. Anything else (Running, Pending,
# Retrying, Looped, ...) is not a final state: refuse it rather than guess.
TASK_STATES = {
    "Success": StepState.COMPLETED,
    "Mapped": StepState.COMPLETED,  # a mapped parent: it spawned its children (a Success)
    "Cached": StepState.CACHED,
    "Failed": StepState.FAILED,
    "TimedOut": StepState.TIMED_OUT,
    "TriggerFailed": StepState.NOT_RUN_UPSTREAM_FAILED,
    "Skipped": StepState.SKIPPED,
}
FLOW_STATES = {
    "Success": FlowOutcome.COMPLETED,
    "Degraded": FlowOutcome.DEGRADED,  # prefect1.flows.Degraded, from the terminal_state_handler
    "Failed": FlowOutcome.FAILED,
}


def task_state(name: str, attempts: int) -> StepState:
    return shared_task_state(TASK_STATES, name, attempts, "shared state for Prefect 1 task state")


def flow_outcome(name: str) -> FlowOutcome:
    return map_native(FLOW_STATES, name, "shared outcome for Prefect 1 flow state")


def prefect1_env(home: Path) -> dict[str, str]:
    """Prefect 1's (and Dask's) settings for a process's own home: Prefect 1 reads them once,
    at `import prefect`.
    """
    return dict(
        PREFECT__HOME_DIR=str(home),  # default LocalResult dir (home/results) and any state
        PREFECT__USER_CONFIG_PATH=str(home / "config.toml"),  # not a user's ~/.prefect config
        PREFECT__BACKEND="server",  # never Prefect Cloud (flow.run() talks to no backend)
        # report: begin resume
        PREFECT__FLOWS__CHECKPOINTING="true",  # without it, flow.run() writes no result
        # report: end resume
        PREFECT__LOGGING__LEVEL=os.environ.get("PREFECT__LOGGING__LEVEL", "WARNING"),
        DASK_CONFIG=str(home / "dask-config"),  # not ~/.config/dask
        DASK_TEMPORARY_DIRECTORY=str(home / "dask-scratch"),  # not the temp directory
    )


class LocalAdapter:
    """`prefect1`: flow.run() with the default LocalExecutor: tasks one by one, main thread."""

    name = "prefect1"
    in_process = True  # flow.run() runs the tasks in this process: a kill of them is of this
    # Prefect 1's deployed runtime is its server, a Docker stack (limitations say why not here).
    runtime = "test mode"
    version = VERSION
    limitations = [
        Limitation(
            feature="deployed",
            reason="Prefect 1's server (`prefect server start`) is a docker-compose stack of "
            "images (PostgreSQL, Hasura, GraphQL, Apollo, the UI), and this machine has a Docker "
            "client but no Docker daemon to run them",
            workaround="flow.run() in the test process; on the Dask executor the tasks run on "
            "a cluster's worker processes, as in production",
            doc="https://docs-v1.prefect.io/orchestration/server/deploy-local.html",
        ),
        Limitation(
            feature="loop",
            reason="LOOP re-runs one task; a loop of two tasks (train, then evaluate) cannot "
            "be declared, and the final state does not count the iterations",
            workaround="one looping task trains and evaluates a round per iteration; the rounds "
            "are the Looped changes its state handlers saw",
            doc=f"{DOCS}/advanced_tutorials/task-looping.md",
        ),
        Limitation(
            feature="fanout",
            reason="the graph is declared before the run: a list known only at run time is a "
            "mapped task, whose parent is a task of its own (state Mapped) beside its children",
            workaround="`.map` over the result of a planning task; FilterTask joins the children",
            doc=f"{DOCS}/concepts/mapping.md",
        ),
    ]

    def __init__(self, out: Path) -> None:
        # A fresh home per process (`pytest -n 2` runs two): results, Dask scratch.
        self.home = engine_home(
            (out / "runs" / self.name / ".prefect-home").resolve(),
            ("prefect", "distributed"),
            prefect1_env,
        )
        from prefect1.flows import FLOWS

        for flow in FLOWS.values():
            # State-handler changes are matched to tasks by name (Dask workers get copies).
            names = [task.name for task in flow.tasks]
            if len(names) != len(set(names)):
                raise ValueError(f"flow {flow.name} has tasks with the same name: {names}")
        self._flows = FLOWS

    def executor(self) -> Any:
        from prefect.executors import LocalExecutor

        return LocalExecutor()

    def close(self) -> None:
        """Nothing runs between flow runs."""

    def run_flow(
        self, run_dir: str, flow: str, resume: bool = False, executor: Any = None, **context: Any
    ) -> EngineRun:
        # A resumed run needs nothing else: every run's targets find the results the last left.
        from prefect1.transitions import read_transitions, record_transition

        prefect_flow = self._flows[flow]
        started = datetime.now(UTC)
        state = prefect_flow.run(
            parameters={"run_dir": run_dir},
            executor=executor or self.executor(),
            task_runner_state_handlers=[record_transition],
            run_on_schedule=False,  # run now, whatever the Flow's schedule says
            context=context,
        )
        if not isinstance(state.result, dict):
            raise RuntimeError(f"flow run ended without task states: {state!r}")
        wait_for_bodies(run_dir)
        history = defaultdict(list)
        for change in read_transitions(run_dir, current_run(run_dir)):
            if (
                datetime.fromisoformat(change["at"]) >= started
            ):  # this flow run's, not a month's before
                history[change["task"], change["map_index"]].append(change)
        labels = {}
        if "date" in context:
            labels = dict(
                zip(
                    MONTH_ROLES,
                    steps.run_months(run_dir, context["date"]),
                    strict=True,
                )
            )
        return EngineRun(
            native_state=type(state).__name__,
            native_message=state.message,
            outcome=flow_outcome(type(state).__name__),
            tasks=task_records(prefect_flow, state, history, labels),
            graph_kind="declared",
            graph=declared_graph(prefect_flow),
            native_started_at=started,
            native_ended_at=datetime.now(UTC),
        )

    # report: begin schedule
    def backfill(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """Prefect 1 Core has no backfill: the Flow's schedule gives the due times that were
        missed, and each is one flow.run() with the context's `date` set to it (Prefect 1's way
        to run a flow for another time).
        """
        after = schedule.due_at(months[0]) - timedelta(seconds=1)
        due = self._flows[flow].schedule.next(len(months), after=after)
        if [d.isoformat() for d in due] != [schedule.due_at(m).isoformat() for m in months]:
            raise ValueError(f"the {flow} flow's schedule is not monthly: {due}")
        return [self._scheduled(run_dir, flow, when) for when in due]

    def rerun(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """The month's date again: its results (targets) say what already succeeded."""
        return [self._scheduled(run_dir, flow, schedule.due_at(month)) for month in months]

    # report: end schedule

    def _scheduled(self, run_dir: str, flow: str, when: datetime) -> EngineRun:
        import pendulum

        run = self.run_flow(run_dir, flow, date=pendulum.instance(when))
        run.month = steps.run_months(run_dir, when)[0]
        run.native_schedule = {
            "date": when.isoformat(),
            "made_by": "flow.run(context={'date': ...}) per due time of flow.schedule",
        }
        return run

    def after_kill(self, run_dir: str, flow: str, status: int | None) -> EngineRun:
        """flow.run()'s process died: no flow state came back, only the state changes its
        handlers had written, each task's last one where it stood.
        """
        from prefect1.transitions import read_transitions

        history = defaultdict(list)
        for change in read_transitions(run_dir, current_run(run_dir)):
            history[change["task"], change["map_index"]].append(change)
        parameters = {p.name for p in self._flows[flow].parameters()}
        tasks = [
            _record(name, name, changes[-1]["new"], changes)
            for (name, index), changes in history.items()
            if index is None and name not in parameters
        ]
        return EngineRun(
            native_state=f"process ended by signal {-(status or 0)}",
            native_message="flow.run() returned no state",
            outcome=FlowOutcome.LOST,
            tasks=tasks,
            graph_kind="declared",
            graph=declared_graph(self._flows[flow]),
        )


def wait_for_bodies(run_dir: str) -> None:
    """Wait until every step attempt of this flow run has ended (bounded by the hang cap).

    A timeout Prefect 1 can only enforce softly (on daemonic Dask workers) marks the task
    TimedOut while its body runs on in a background thread: the step's own log says how it ended.
    """
    run = current_run(run_dir)
    deadline = time.monotonic() + load_context(run_dir).settings.hang_cap_s + 10
    # An attempt whose process was killed never ends.
    while any(e["ended"] is None and alive(e["pid"]) for e in read_attempt_log(run_dir, run)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"step attempts of {run_dir} run {run} never ended")
        time.sleep(0.1)


def task_records(
    flow: Any, state: Any, history: dict, labels: dict[str, str] | None = None
) -> list[TaskRecord]:
    """One record per task Prefect had (a mapped parent and each child); Parameters are inputs.
    `labels` give the months a run of the schedule computed for its tasks named by role.
    """
    from prefect import Parameter

    records = []
    for task in flow.sorted_tasks():
        if isinstance(task, Parameter):
            continue
        task_state_ = state.result.get(task)
        if task_state_ is None:
            continue  # never reached by the flow runner: the harness records it as never created
        native = type(task_state_).__name__
        step, _, role = task.name.partition("[")
        name = f"{step}[{labels[role[:-1]]}]" if role[:-1] in (labels or {}) else task.name
        records.append(_record(name, task.name, native, history[task.name, None]))
        for index, child in enumerate(getattr(task_state_, "map_states", None) or []):
            changes = history[task.name, index]
            native_id = f"{task.name}[{index}]"  # Prefect's name for the child: by map index
            run_name = next((c["run_name"] for c in changes if c["run_name"]), None)
            records.append(_record(run_name or native_id, native_id, type(child).__name__, changes))
    return records


def _record(name: str, native_id: str, native: str, changes: list[dict]) -> TaskRecord:
    ran = [c for c in changes if c["new"] == "Running"]
    # Prefect's own count (context.task_run_count); loop iterations are not attempts.
    attempts = changes[-1]["run_count"] if ran else 0
    history = [NativeState(name=changes[0]["old"])] if changes else []
    history += [
        NativeState(name=c["new"], at=datetime.fromisoformat(c["at"]), message=c["message"])
        for c in changes
    ]
    return TaskRecord.of(
        name,
        native_id=native_id,
        native_state=native,
        native_history=history,
        # A state that is not final is where the task was when its process died.
        state=task_state(native, attempts) if native in TASK_STATES else StepState.LOST,
        attempts=attempts,
        started_at=datetime.fromisoformat(ran[0]["at"]) if ran else None,
        ended_at=datetime.fromisoformat(changes[-1]["at"]) if changes else None,
    )


def declared_graph(flow: Any) -> list[GraphEdge]:
    """The flow's edges as declared before the run (`flow.edges`), by task name."""
    pairs = {(e.upstream_task.name, e.downstream_task.name) for e in flow.edges}
    return [GraphEdge(upstream=u, downstream=d) for u, d in sorted(pairs)]


class DaskAdapter(LocalAdapter):
    """`prefect1-dask`: the same flows on DaskExecutor, one LocalCluster of 2 worker processes,
    shared by the session's processes as a team shares its cluster (flow runs may queue there).

    Dask as users get it: worker processes are daemonic (distributed.worker.daemon), where
    Prefect 1 can only enforce a soft timeout.
    """

    name = "prefect1-dask"
    in_process = False  # the tasks run on the cluster's worker processes
    runtime = "flow.run() on a Dask cluster, Prefect 1's production executor"
    limitations = [
        *LocalAdapter.limitations,
        Limitation(
            feature="timeout",
            reason="on a daemonic Dask worker process Prefect 1 cannot stop a task's body: the "
            "task is TimedOut on time but its body runs on in a background thread",
            workaround="none in Prefect 1 on default Dask workers (non-daemonic workers, "
            "distributed.worker.daemon=False, get a hard timeout in a subprocess); the step's "
            "own hang cap ends the body",
            doc=f"{SOURCE}/utilities/executors.py#L470-L537",
        ),
    ]

    def __init__(self, out: Path) -> None:
        super().__init__(out)
        logging.getLogger("distributed").setLevel(logging.ERROR)
        self.cluster: Any = None
        # One cluster per session, for all its processes: an address-less DaskExecutor would
        # start a new cluster for every flow run, and again for each retry of it.
        self._service: SharedService | None = SharedService(
            (out / "runs" / self.name / ".dask-cluster").resolve()
        )
        self.address = self._service.join(self._start_cluster)
        atexit.register(self.close)
        exit_on_sigterm()

    def _cluster_kwargs(self) -> dict[str, Any]:
        return dict(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # its HTTP server on a free loopback port
            local_directory=str(self.home / "dask-scratch"),
        )

    def _start_cluster(self) -> str:
        from distributed import LocalCluster

        self.cluster = LocalCluster(**self._cluster_kwargs())
        return self.cluster.scheduler_address

    def run_flow_alone(self, run_dir: str, flow: str, resume: bool = False) -> EngineRun:
        """A flow run whose worker is to be killed, on a cluster of its own (the executor starts
        and closes it): on the shared one the kill would take the session's other flow runs'
        work with it, and Dask would run that again too.
        """
        from prefect.executors import DaskExecutor

        alone = DaskExecutor(cluster_kwargs=self._cluster_kwargs())
        return self.run_flow(run_dir, flow, resume, executor=alone)

    def executor(self) -> Any:
        from prefect.executors import DaskExecutor

        return DaskExecutor(address=self.address)

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the cluster's workers, as they report them (whoever started it)."""
        from distributed import Client

        with Client(self.address) as client:
            return sorted(client.run(os.getpid).values())

    def close(self) -> None:
        """Leave the cluster; the process that started it closes it once the others have left."""
        if self._service is not None:
            service, self._service = self._service, None
            service.leave(self._close_cluster)

    def _close_cluster(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
