"""Runs the Airflow DAGs for the harness with dag.test() and reads every task instance back from
Airflow's metadata database.

Loaded by file path (see shared_pipeline/cli.py): this folder is a DAGs folder, not a package,
so that `import airflow` always means the installed Airflow.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared_pipeline.harness import EngineRun
from shared_pipeline.loading import load_module
from shared_pipeline.records import GraphEdge, Limitation, NativeState, TaskRecord
from shared_pipeline.vocabulary import FlowOutcome, StepState, map_native
from shared_pipeline.vocabulary import task_state as shared_task_state
from shared_pipeline.workdirs import database_from_cli, engine_home

DAGS_FOLDER = Path(__file__).resolve().parent
HOME = load_module("airflow/airflow_home.py")  # the environment bench.py and probes.py share
if str(DAGS_FOLDER) not in sys.path:
    # As Airflow's DAG processor does for a bundle: the DAG files import their sibling modules.
    sys.path.append(str(DAGS_FOLDER))
from callbacks import shared_task_id  # noqa: E402  (one naming for records and notifications)

VERSION = version("apache-airflow")
DOCS = f"https://airflow.apache.org/docs/apache-airflow/{VERSION}"
DAG_IDS = {
    "train": "train_pipeline",
    "retrain": "retrain_until_good",
    "monthly": "monthly_training",
}

# Airflow's final task-instance states onto the shared vocabulary. `success` splits three ways
# by what the task instance did in this flow run: one try, several, or none (it kept the success
# of an earlier run of the same DAG run that was cleared and resumed).
TASK_STATES = {
    "success": StepState.COMPLETED,
    "failed": StepState.FAILED,
    "upstream_failed": StepState.NOT_RUN_UPSTREAM_FAILED,
    "skipped": StepState.SKIPPED,
    # A mapped instance whose index no longer exists after a re-expansion: it never ran.
    "removed": StepState.SKIPPED,
}
DAG_RUN_STATES = {"success": FlowOutcome.COMPLETED, "failed": FlowOutcome.FAILED}


def task_state(native: str, tries: int) -> StepState:
    """The shared state of a task instance that ended `native` after `tries` tries in this run."""
    what = "shared state for Airflow task instance state"
    state = shared_task_state(TASK_STATES, native, tries, what)
    return StepState.CACHED if state is StepState.COMPLETED and tries == 0 else state


def flow_outcome(native: str) -> FlowOutcome:
    return map_native(DAG_RUN_STATES, native, "shared outcome for Airflow DAG run state")


LIMITATIONS = [
    Limitation(
        feature="resume",
        reason="dag.test() cannot resume an existing DAG run: it has no run_id argument, and "
        "the same logical date deletes the old run and starts from scratch",
        workaround="resume_dag_run() clears the failed and upstream_failed task instances of "
        "the failed run (what the UI's Clear does), then drives the run with the per-task "
        "runner dag.test() uses itself (airflow.sdk.definitions.dag._run_task, private API)",
        doc=f"{DOCS}/core-concepts/dag-run.html#re-run-tasks",
    ),
    Limitation(
        feature="cached",
        reason="Airflow has no cached or reused task state: a task instance that kept its "
        "success through a clear is simply `success`, with the try it ran in before the fix",
        workaround="the record keeps the native `success` and counts 0 tries in the resumed "
        "flow run; the adapter's table maps success-without-a-new-try to the shared `cached`",
        doc=f"{DOCS}/core-concepts/dag-run.html#re-run-tasks",
    ),
    Limitation(
        feature="scheduler",
        reason="dag.test() runs every task in this process, one at a time, with a 1 s pause "
        "whenever nothing is ready (a retry waits at least that long); a scheduler runs "
        "independent tasks in parallel on its executor and retries after retry_delay",
        workaround="all DAGs run with dag.test() on the main thread, one process per session",
        doc=f"{DOCS}/core-concepts/debug.html",
    ),
    Limitation(
        feature="notifications",
        reason="under dag.test() task and DAG callbacks run in the calling process; a scheduler "
        "runs task callbacks in the task's process and DAG callbacks in the DAG processor",
        workaround="none needed here: the callbacks write to a file in the run directory",
        doc=f"{DOCS}/administration-and-deployment/logging-monitoring/callbacks.html",
    ),
    Limitation(
        feature="timeout",
        reason="Airflow stores a task stopped by execution_timeout as plain `failed`: nothing in "
        "the metadata database tells a timeout from any other failure",
        workaround="the failure callback's exception (AirflowTaskTimeout) is in the "
        "notification message",
        doc=f"{DOCS}/core-concepts/tasks.html#timeouts",
    ),
]


def _migrated_database(cache: Path) -> Path:
    """An empty, migrated metadata database for this Airflow version, made once (3-4 s)."""
    return database_from_cli(
        cache / f"airflow-{VERSION}.db",
        [str(HOME.airflow_cli()), "db", "migrate"],
        lambda home: {**os.environ, **_airflow_env(home)},
        "airflow.db",
    )


def _airflow_env(home: Path) -> dict[str, str]:
    # Failing tasks are the point of most scenarios: their tracebacks are logged at ERROR.
    return HOME.airflow_env(home, DAGS_FOLDER)


class AirflowAdapter:
    """One per process: one metadata database, every DAG run with dag.test() on the main thread."""

    name = "airflow"
    runtime = "test mode"
    version = VERSION
    limitations = LIMITATIONS

    def __init__(self, out: Path) -> None:
        # A home of its own per process: one metadata database each (`pytest -n 2` runs two).
        self.home = engine_home(
            (out / "runs" / self.name / ".airflow-home").resolve(),
            ("airflow",),
            _airflow_env,
            (_migrated_database((out / "runs" / ".cache").resolve()), "airflow.db"),
        )
        from airflow.dag_processing.dagbag import DagBag

        # The DAG files import their sibling modules: DAGS_FOLDER is on sys.path (see above).
        bag = DagBag(dag_folder=str(DAGS_FOLDER))
        if bag.import_errors:
            raise RuntimeError(f"DAG files failed to import: {bag.import_errors}")
        self.dags = {flow: bag.dags[dag_id] for flow, dag_id in DAG_IDS.items()}
        # Airflow's object graph makes the interpreter's last garbage collection take seconds
        # (10 s on a loaded 2-core machine); frozen objects are skipped, files are closed anyway.
        atexit.register(gc.freeze)

    def close(self) -> None:
        from airflow import settings

        if settings.engine is not None:
            settings.engine.dispose()

    def run_flow(self, run_dir: str, flow: str, resume: bool = False) -> EngineRun:
        dag = self.dags[flow]
        previous = last_dag_run(dag.dag_id, run_dir) if resume else None
        # report: begin resume
        if previous is not None and previous[1] == "failed":
            # The operator fixed the cause: clear what failed in that DAG run and run it again.
            tries = {(t["task_id"], t["map_index"]): t["try_number"] for t in previous[2]}
            run_id = resume_dag_run(dag, previous[0])
        # report: end resume
        else:
            run_id, tries = dag.test(run_conf={"run_dir": run_dir}).run_id, {}
        state, tis = read_dag_run(dag.dag_id, run_id)
        return EngineRun(
            native_state=state,
            native_message=f"DAG run {dag.dag_id} / {run_id}",
            outcome=flow_outcome(state),
            tasks=[_task_record(ti, tries) for ti in tis],
            graph_kind="declared",
            graph=declared_graph(dag),
        )


def declared_graph(dag: Any) -> list[GraphEdge]:
    """The DAG's own dependencies (task ids), as declared before any run."""
    return [
        GraphEdge(upstream=task_id, downstream=downstream)
        for task_id in sorted(dag.task_dict)
        for downstream in sorted(dag.task_dict[task_id].downstream_task_ids)
    ]


def last_dag_run(dag_id: str, run_dir: str) -> tuple[str, str, list[dict[str, Any]]] | None:
    """The latest DAG run of `dag_id` for `run_dir` in this metadata database: its run id, its
    state and its task instances (as read_dag_run gives them), or None.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).all()
        mine = [r for r in runs if (r.conf or {}).get("run_dir") == run_dir]
        if not mine:
            return None
        run_id = max(mine, key=lambda r: r.id).run_id
    return (run_id, *read_dag_run(dag_id, run_id))


def read_dag_run(dag_id: str, run_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The DAG run's state and each task instance with its earlier tries, from the database."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).one()
        rows = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        history = session.scalars(
            select(TaskInstanceHistory)
            .where(TaskInstanceHistory.dag_id == dag_id, TaskInstanceHistory.run_id == run_id)
            .order_by(TaskInstanceHistory.try_number)
        ).all()
        earlier: dict[tuple[str, int], list[NativeState]] = {}
        for old in history:
            earlier.setdefault((old.task_id, old.map_index), []).append(
                NativeState(name=str(old.state), at=old.end_date, message=f"try {old.try_number}")
            )
        tis = [
            {
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "rendered_map_index": ti.rendered_map_index,
                "state": str(ti.state) if ti.state is not None else None,
                "try_number": ti.try_number,
                "start_date": ti.start_date,
                "end_date": ti.end_date,
                "history": [
                    *earlier.get((ti.task_id, ti.map_index), []),
                    NativeState(name=str(ti.state), at=ti.end_date, message=f"try {ti.try_number}"),
                ],
            }
            for ti in sorted(rows, key=lambda t: (t.start_date is None, t.start_date, t.task_id))
        ]
        return str(dag_run.state), tis


def _task_record(
    ti: dict[str, Any], tries_before: dict[tuple[str, int], int], months: tuple[str, ...] = ()
) -> TaskRecord:
    native = ti["state"]
    if native is None:
        raise ValueError(f"task instance {ti['task_id']} has no state after its DAG run ended")
    mapped = ti["map_index"] >= 0
    label = (ti["rendered_map_index"] or str(ti["map_index"])) if mapped else None
    task = shared_task_id(ti["task_id"], label, months)
    # Tries in this flow run: a resumed DAG run keeps the tries of the run before the fix.
    tries = ti["try_number"] - tries_before.get((ti["task_id"], ti["map_index"]), 0)
    return TaskRecord.of(
        task,
        native_id=f"{ti['task_id']} map_index={ti['map_index']}" if mapped else ti["task_id"],
        native_state=native,
        native_history=ti["history"],
        state=task_state(native, tries),
        attempts=tries,
        started_at=ti["start_date"],
        ended_at=ti["end_date"],
    )


def resume_dag_run(
    dag: Any,
    run_id: str,
    poll_s: float = 0.2,
    task_ids: list[str] | None = None,
    downstream: bool = False,
) -> str:
    """Clear the failed and upstream_failed task instances of a finished DAG run and run them
    again; the successful ones keep their state and XComs. Returns the run id. With `task_ids`,
    clear those tasks instead, with or without their downstream (the UI's task Clear).

    This is what "Clear" (only failed) does in the UI. dag.test() cannot re-drive an existing run,
    so this loop mirrors its own: Airflow decides what is ready (DagRun.update_state), and each
    ready task instance runs in-process through dag.test()'s private per-task runner.
    """
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    from airflow import settings

    session = settings.Session()
    try:
        # report: begin resume
        scheduler_dag = DBDagBag().get_latest_version_of_dag(dag.dag_id, session=session)
        if task_ids is None:
            scheduler_dag.clear(
                run_id=run_id, only_failed=True, dag_run_state=DagRunState.RUNNING, session=session
            )
        else:  # what the clearTaskInstances API does with include_downstream
            scheduler_dag.partial_subset(
                task_ids=task_ids, include_downstream=downstream, include_upstream=False
            ).clear(run_id=run_id, dag_run_state=DagRunState.RUNNING, session=session)
        session.commit()
        # As dag.test() does: DAG callbacks do not survive serialization, take the DAG file's.
        scheduler_dag.on_failure_callback = dag.on_failure_callback
        scheduler_dag.on_success_callback = dag.on_success_callback
        dag_run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id)
        ).one()
        dag_run.dag = scheduler_dag
        while dag_run.state == DagRunState.RUNNING:
            session.expire_all()
            ready, _ = dag_run.update_state(session=session)
            for ti in ready:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            if not ready:
                time.sleep(poll_s)  # e.g. a retry waiting for its retry_delay
            for ti in ready:
                try:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id])
                except Exception:  # as in dag.test(): the task instance's state says it
                    if ti.state not in TaskInstanceState.finished:
                        ti.set_state(TaskInstanceState.FAILED)
        # report: end resume
        return run_id
    finally:
        session.close()
