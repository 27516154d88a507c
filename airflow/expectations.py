"""What Airflow's DAGs add to the shared spec, and where Airflow's behaviour differs.

Not a DAG file (.airflowignore): loaded by file path (shared_pipeline/engine_table.py), with no
Airflow installed, by the report and the conformance checks.
"""

from __future__ import annotations

from dataclasses import replace

from shared_pipeline.scenarios import TRAIN, VALID
from shared_pipeline.settings import Settings
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, StepState
from shared_pipeline.wiring import (
    NOT_RUN,
    RAN,
    Deviation,
    Graph,
    Rule,
    Wiring,
    as_step,
    branches_run_past_a_late_month,
    deployed,
    in_test_mode,
    joins,
    unmapped_children,
)

DOCS = "https://airflow.apache.org/docs/apache-airflow/stable"
GITHUB = "https://github.com/apache/airflow/blob/3.3.2"
SOURCE = f"{GITHUB}/airflow-core/src/airflow"
C, SKIPPED = StepState.COMPLETED, StepState.SKIPPED


def graph(flow: str, steps: dict[str, StepState]) -> Graph:
    """The DAGs' control tasks, each in the state its trigger rule gives it."""
    if flow == "monthly":  # the train DAG, and the task that reads its months off the interval
        # A cleared DAG run keeps that task's success, as it keeps the steps' (cached).
        kept = StepState.CACHED if StepState.CACHED in steps.values() else C
        return Graph({"run_months": kept, **graph("train", steps).tasks})
    if flow == "retrain":
        ran = sorted({int(t.split("round-")[1].rstrip("]")) for t in steps if "[round-" in t})
        most = Settings().retrain_max_rounds  # the rounds the DAG declares
        # A round whose evaluation never ran failed the loop: what follows is upstream_failed.
        failed = steps.get(f"evaluate[round-{max(ran)}]") not in RAN
        later = NOT_RUN if failed else SKIPPED  # else short-circuited: skipped at once
        tasks = {
            "enrichment_or_none": as_step(steps.get("enrich")),
            "last_evaluation": NOT_RUN if failed else C,
        }
        tasks |= {f"keep_going[round-{n}]": C for n in ran if n < most}
        if failed:
            tasks[f"keep_going[round-{max(ran)}]"] = NOT_RUN
        for n in range(max(ran) + 1, most + 1):
            tasks |= {f"train[round-{n}]": later, f"evaluate[round-{n}]": later}
            if n < most:
                tasks[f"keep_going[round-{n}]"] = later
        return Graph(tasks)
    return Graph(
        {
            "enrichment_or_none": as_step(steps.get("enrich")),  # trigger rule all_done
            "candidates": as_step(steps.get("features")),
            "trained_models": joins(steps, "train"),  # all_done_min_one_success
        }
    )


AIRFLOW = Wiring(
    graph=graph,
    never_created=unmapped_children("train"),  # a mapped train that never ran
    graph_note=(
        "A DAG declares its control flow as tasks: enrichment_or_none (trigger rule all_done) "
        "lets features go on without the API, candidates computes the list that train is "
        "mapped over, trained_models is the join (all_done_min_one_success) that still runs when "
        "one mapped instance failed. A DAG run cannot loop: retrain_until_good declares "
        "retrain_max_rounds rounds, each with a short-circuit check (keep_going) that skips "
        "every later round once the model is good enough, and last_evaluation "
        "(none_failed_min_one_success) picks the evaluation of the last round that ran."
    ),
    graph_doc=f"{DOCS}/core-concepts/dags.html#trigger-rules",
    rules=(
        Rule(
            name="a notification per retry",
            notifies_retries=True,
            reason=(
                "on_retry_callback also writes to the sink: Airflow calls it for every failed "
                "try that will be retried, which the shared spec (failures only) does not list."
            ),
            doc=f"{DOCS}/administration-and-deployment/logging-monitoring/callbacks.html",
        ),
        Rule(
            name="no degraded state",
            outcomes={FlowOutcome.DEGRADED: FlowOutcome.COMPLETED},
            reason=(
                "A DAG run ends success or failed, decided by its leaf tasks; Airflow has no "
                "degraded state. The fallback path shows in the task instances: enrich failed, "
                "features and everything after it succeeded (and the registered model is tagged "
                "degraded)."
            ),
            doc=f"{DOCS}/core-concepts/dag-run.html#dag-run-status",
        ),
        Rule(
            name="no timed-out state",
            states={StepState.TIMED_OUT: StepState.FAILED},
            reason=(
                "Airflow has no timed-out state: execution_timeout raises AirflowTaskTimeout in "
                "the task and the task instance ends `failed` like any other failure (the "
                "callback's exception names the timeout)."
            ),
            doc=f"{DOCS}/core-concepts/tasks.html#timeouts",
        ),
    ),
    deviations=(
        Deviation(
            scenario="db_down",
            steps={f"extract[{VALID}]": StepState.FAILED, "enrich": C, "train": NOT_RUN},
            notifications=((NotificationEvent.TASK_FAILED, f"extract[{VALID}]"),),
            reason=(
                "A DAG run does not stop at the first failure: every task whose trigger rule is "
                f"met still runs. The second month's extract and enrich do not depend on {TRAIN}'s "
                "extract, so they run (the extract fails too, on the same dead database) and "
                "only their downstream tasks become upstream_failed. A mapped task whose upstream "
                "failed is never expanded: Airflow keeps one unmapped task instance (map_index -1) "
                "in upstream_failed, and no instance per candidate exists."
            ),
            doc=f"{SOURCE}/models/dagrun.py#L1535-L1593",
        ),
        *branches_run_past_a_late_month(
            steps={"train": NOT_RUN},
            reason=(
                "As in db_down: a DAG run does not stop at the first failure, so the month that "
                "is there is extracted and read, and enrich runs; what needs the missing month "
                "is upstream_failed (the mapped train never expands). Clearing only what failed "
                "keeps those successes: the month's re-run reuses them."
            ),
            doc=f"{SOURCE}/models/dagrun.py#L1535-L1593",
        ),
    ),
)

# Under its scheduler (api-server, scheduler, dag-processor): the same DAG files, so the same
# rules until the runs show otherwise.
AIRFLOW_DEPLOYED = deployed(AIRFLOW)
SUPERVISOR = f"{GITHUB}/task-sdk/src/airflow/sdk/execution_time/supervisor.py"
AIRFLOW_DEPLOYED = replace(
    AIRFLOW_DEPLOYED,
    deviations=(
        *AIRFLOW_DEPLOYED.deviations,
        Deviation(
            scenario="worker_killed",
            notifications=((NotificationEvent.FLOW_FAILED, None),),
            replaces_notifications=True,
            reason=(
                "Each task runs in a process its supervisor forks: the supervisor sees it die by "
                "a signal and reports the try failed at once, so the loop stops and the DAG run "
                "fails. The task's on_failure_callback does not run: it would have run in the "
                "killed process. The DAG's own failure callback, in the dag-processor, tells."
            ),
            doc=f"{SUPERVISOR}#L1757-L1775",
        ),
    ),
)
# The same runtime, where the kill takes the task's supervisor: worker_killed only.
AIRFLOW_SUPERVISOR = replace(
    AIRFLOW_DEPLOYED,
    scenarios=("worker_killed",),
    scenarios_reason="the runtime differs from airflow-deployed only in what a kill takes",
    deviations=(
        *(d for d in AIRFLOW_DEPLOYED.deviations if d.scenario != "worker_killed"),
        Deviation(
            scenario="worker_killed",
            notifications=(
                (NotificationEvent.TASK_FAILED, "train[round-1]"),
                (NotificationEvent.TASK_FAILED, "train[round-1]"),
                (NotificationEvent.FLOW_FAILED, None),
            ),
            replaces_notifications=True,
            reason=(
                "With its supervisor killed, the task's process is an orphan: nothing reports "
                "its state and its heartbeats stop. The scheduler fails the task instance once "
                "its last heartbeat is older than task_instance_heartbeat_timeout (20 s here, "
                "300 s by default) and has the dag-processor run the task's failure callback, "
                "which ran twice. The orphan ran on until its own execution_timeout, then could "
                "not report to its dead supervisor (BrokenPipeError)."
            ),
            doc=f"{DOCS}/core-concepts/tasks.html#task-instance-heartbeat-timeout",
        ),
    ),
)
AIRFLOW = in_test_mode(AIRFLOW)
