"""The pipeline's tasks, shared by both DAGs: each shared step behind a TaskFlow decorator that
carries Airflow's answer to its failure (retries, trigger rules, a timeout, a short-circuit).

Tasks pass small JSON values (paths, numbers) through XCom; frames and models stay on disk.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, TaskGroup, TriggerRule, task
from callbacks import notify_dag_failed, notify_task_failed, notify_task_retry
from notifiers import WebhookNotifier

from shared_pipeline import steps
from shared_pipeline.settings import Settings

SETTINGS = Settings()

DAG_ARGS: dict[str, Any] = {
    "schedule": None,
    # Type and description of the DAG functions' `run_dir` argument (a DAG param), for the UI.
    "params": {"run_dir": Param("", type="string", description="the scenario's run directory")},
    # report: begin notifications
    "on_failure_callback": [notify_dag_failed, WebhookNotifier()],
    "default_args": {
        "on_failure_callback": notify_task_failed,
        "on_retry_callback": notify_task_retry,
    },
    # report: end notifications
}


# report: begin retries
@task(
    retries=SETTINGS.extract_retries,
    retry_delay=timedelta(seconds=SETTINGS.extract_retry_delay_s),
)
# report: end retries
def extract(run_dir: str, month: str) -> str:
    return steps.extract(run_dir, month)


@task
def read(run_dir: str, month: str, parquet_path: str) -> dict[str, Any]:
    return steps.read(run_dir, month, parquet_path)


# report: begin retries
@task(retries=SETTINGS.enrich_retries, retry_delay=timedelta(seconds=SETTINGS.enrich_retry_delay_s))
# report: end retries
def enrich(run_dir: str, months: list[str]) -> dict[str, dict[str, float]]:
    return steps.enrich(run_dir, months)


# report: begin fallback
@task(trigger_rule=TriggerRule.ALL_DONE)
def enrichment_or_none(enrichment: dict[str, dict[str, float]] | None) -> dict | None:
    """Runs once enrich is done, whether it succeeded or failed for good: the API is optional.

    A failed upstream has no XCom, so `enrichment` arrives as None and features go without it.
    """
    return enrichment


# report: end fallback


@task
def features(
    run_dir: str, train: dict[str, Any], valid: dict[str, Any], enrichment: dict | None
) -> dict[str, Any]:
    return steps.features(run_dir, train, valid, enrichment)


# report: begin timeout
@task(
    execution_timeout=timedelta(seconds=SETTINGS.train_timeout_s),
    map_index_template="{{ task.op_kwargs['candidate']['key'] }}",
)
# report: end timeout
def train(run_dir: str, features_result: dict[str, Any], candidate: dict) -> dict[str, Any]:
    return steps.train(run_dir, features_result, candidate)


@task
def evaluate(run_dir: str, features_result: dict, trained: list[dict]) -> dict[str, Any]:
    return steps.evaluate(run_dir, features_result, trained)


# report: begin quality_gate
@task.short_circuit
def gate(run_dir: str, train_read: dict[str, Any], evaluation: dict[str, Any]) -> bool:
    """False skips `register`: production stays where it is."""
    return steps.gate(run_dir, train_read, evaluation)["passed"]


# report: end quality_gate


@task
def register(run_dir: str, features_result: dict, evaluation: dict) -> dict[str, Any]:
    return steps.register(run_dir, features_result, evaluation)


def prepare(run_dir: str, months: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Extract and read each month (one task group per month), enrich, build the features.
    `months`: each task group's id and its month (by default the configured months, named by
    themselves; a monthly run's come from a task, named by their role).
    """
    months = months or {m: m for m in (SETTINGS.train_month, SETTINGS.valid_month)}
    reads = []
    for group, month in months.items():
        with TaskGroup(group_id=group):
            reads.append(read(run_dir, month, extract(run_dir, month)))
    enrichment = enrich(run_dir, list(months.values()))
    # report: begin fallback
    feats = features(run_dir, *reads, enrichment_or_none(enrichment))
    # report: end fallback
    return reads[0], feats
