"""What Airflow's DAGs add to the shared spec, and where Airflow's behaviour differs.

Not a DAG file (.airflowignore): loaded by file path (shared_pipeline/engine_table.py), with no
Airflow installed, by the report and the conformance checks.
"""

from __future__ import annotations

from shared_pipeline.scenarios import TRAIN, VALID
from shared_pipeline.settings import Settings
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, StepState
from shared_pipeline.wiring import (
    NOT_RUN,
    Deviation,
    Graph,
    Rule,
    Wiring,
    as_step,
    deployed,
    joins,
    unmapped_children,
)

DOCS = "https://airflow.apache.org/docs/apache-airflow/stable"
SOURCE = "https://github.com/apache/airflow/blob/3.3.2/airflow-core/src/airflow"
C, SKIPPED = StepState.COMPLETED, StepState.SKIPPED


def graph(flow: str, steps: dict[str, StepState]) -> Graph:
    """The DAGs' control tasks, each in the state its trigger rule gives it."""
    if flow == "retrain":
        ran = sorted({int(t.split("round-")[1].rstrip("]")) for t in steps if "[round-" in t})
        most = Settings().retrain_max_rounds  # the rounds the DAG declares
        tasks = {"enrichment_or_none": as_step(steps.get("enrich")), "last_evaluation": C}
        tasks |= {f"keep_going[round-{n}]": C for n in ran}
        for n in range(max(ran) + 1, most + 1):  # short-circuited: skipped at once
            tasks |= {f"train[round-{n}]": SKIPPED, f"evaluate[round-{n}]": SKIPPED}
            if n < most:
                tasks[f"keep_going[round-{n}]"] = SKIPPED
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
    ),
)

# Under its scheduler (api-server, scheduler, dag-processor): the same DAG files, so the same
# rules until the runs show otherwise.
AIRFLOW_DEPLOYED = deployed(AIRFLOW)
