"""The NYC green-taxi pipeline as Prefect dynamic flows (runs unchanged on Prefect 2.x and 3.x).

Failure handling is ordinary Python around tasks: retries on the decorator, a fallback on the
state of a failed task, a quality gate as an `if`, fan-out over a list known only at run time,
and a `while` loop for retraining.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, runtime, task, unmapped
from prefect.states import Completed
from prefect.tasks import task_input_hash

from prefect2 import compat
from prefect2.hooks import notify_flow_failed, notify_task_failed
from shared_pipeline import steps
from shared_pipeline.settings import Settings

SETTINGS = Settings()

# report: begin notifications
NOTIFIED: dict[str, Any] = dict(on_failure=[notify_task_failed])  # every task
# A flow run whose process died is Crashed, not Failed: its own hook list.
FLOW_NOTIFIED: dict[str, Any] = dict(
    on_failure=[notify_flow_failed], on_crashed=[notify_flow_failed]
)
# report: end notifications
# report: begin resume
# A rerun with the same inputs reuses the result (stored in the run directory).
RESUMABLE: dict[str, Any] = dict(cache_key_fn=task_input_hash, persist_result=True)
# report: end resume


@task(
    # report: begin retries
    retries=SETTINGS.extract_retries,
    retry_delay_seconds=SETTINGS.extract_retry_delay_s,
    # report: end retries
    task_run_name="extract[{month}]",
    **NOTIFIED,
    **RESUMABLE,
)
def extract(run_dir: str, month: str) -> str:
    return steps.extract(run_dir, month)


@task(task_run_name="read[{month}]", **NOTIFIED, **RESUMABLE)
def read(run_dir: str, month: str, parquet_path: str) -> dict[str, Any]:
    return steps.read(run_dir, month, parquet_path)


@task(
    # report: begin retries
    retries=SETTINGS.enrich_retries,
    retry_delay_seconds=SETTINGS.enrich_retry_delay_s,
    # report: end retries
    task_run_name="enrich",
    **NOTIFIED,
    **RESUMABLE,
)
def enrich(run_dir: str, months: list[str]) -> dict[str, dict[str, float]]:
    return steps.enrich(run_dir, months)


@task(task_run_name="features", **NOTIFIED, **RESUMABLE)
def features(run_dir: str, train: dict, valid: dict, enrichment: dict | None) -> dict[str, Any]:
    return steps.features(run_dir, train, valid, enrichment)


@task(
    # report: begin timeout
    timeout_seconds=SETTINGS.train_timeout_s,
    # report: end timeout
    task_run_name="train[{candidate[key]}]",
    **NOTIFIED,
)
def train(run_dir: str, features_result: dict, candidate: dict) -> dict[str, Any]:
    return steps.train(run_dir, features_result, candidate)


@task(task_run_name="evaluate", **NOTIFIED)
def evaluate(run_dir: str, features_result: dict, trained: list[dict]) -> dict[str, Any]:
    return steps.evaluate(run_dir, features_result, trained)


@task(task_run_name="evaluate[{key}]", **NOTIFIED)
def evaluate_round(
    run_dir: str, features_result: dict, trained: list[dict], key: str
) -> dict[str, Any]:
    return steps.evaluate(run_dir, features_result, trained, key)


@task(task_run_name="gate", **NOTIFIED)
def gate(run_dir: str, train_read: dict, evaluation: dict) -> dict[str, Any]:
    return steps.gate(run_dir, train_read, evaluation)


@task(task_run_name="register", **NOTIFIED)
def register(run_dir: str, features_result: dict, evaluation: dict) -> dict:
    return steps.register(run_dir, features_result, evaluation)


# The schedule belongs to a deployment of the flow (the same flow), run by a worker: midnight UTC
# on the first of each month. A run of it takes its months from the time it was scheduled for.
# report: begin schedule
MONTHLY: dict[str, Any] = dict(name="monthly", cron="0 0 1 * *")


def scheduled_for() -> Any:
    """The time a run of the monthly deployment was scheduled for; None for any other run."""
    if runtime.deployment.name == MONTHLY["name"]:
        return runtime.flow_run.scheduled_start_time
    return None


# report: end schedule


def prepare(run_dir: str) -> tuple[dict, dict, bool]:
    """Extract and read both months, enrich (or fall back), build features."""
    months = steps.run_months(run_dir, scheduled_for())
    reads = [read(run_dir, month, extract(run_dir, month)) for month in months]

    # report: begin fallback
    enrichment = enrich(run_dir, months, return_state=True)
    degraded = enrichment.is_failed()
    # The API is optional: without it we train on PU_DO and distance alone.
    feats = features(run_dir, *reads, None if degraded else enrichment.result())
    # report: end fallback
    return reads[0], feats, degraded


def finish(run_dir: str, train_read: dict, feats: dict, evaluation: dict, degraded: bool):
    # report: begin quality_gate
    verdict = gate(run_dir, train_read, evaluation)
    if verdict["passed"]:
        register(run_dir, feats, evaluation)
    # report: end quality_gate
    # report: begin fallback
    if degraded:
        return Completed(message="trained without enrichment: API unavailable", name="Degraded")
    # report: end fallback
    return {"evaluation": evaluation, "gate": verdict}


# report: begin notifications
@flow(name="train-pipeline", **FLOW_NOTIFIED)
# report: end notifications
def train_pipeline(run_dir: str):
    train_read, feats, degraded = prepare(run_dir)

    # report: begin fanout
    candidates = steps.plan_candidates(run_dir, feats)
    futures = train.map(run_dir, unmapped(feats), candidates)
    # One failed branch must not sink the run: keep the candidates that trained.
    trained = [state.result() for state in compat.final_states(futures) if state.is_completed()]
    if not trained:
        raise RuntimeError("no candidate model trained")
    # report: end fanout

    evaluation = evaluate(run_dir, feats, trained)
    return finish(run_dir, train_read, feats, evaluation, degraded)


@flow(name="retrain-until-good", **FLOW_NOTIFIED)
def retrain_until_good(run_dir: str):
    train_read, feats, degraded = prepare(run_dir)

    # report: begin loop
    round_number = 0
    while True:
        round_number += 1
        candidate = steps.retrain_candidate(run_dir, round_number)
        model = train(run_dir, feats, candidate)
        evaluation = evaluate_round(run_dir, feats, [model], candidate["key"])
        if steps.good_enough(run_dir, evaluation, round_number):
            break
    # report: end loop
    return finish(run_dir, train_read, feats, evaluation, degraded)


FLOWS = {"train": train_pipeline, "retrain": retrain_until_good, "monthly": train_pipeline}

if __name__ == "__main__":
    # `python prefect2/flows.py FLOW RUN_DIR`: a flow run in a process of its own, no worker.
    FLOWS[sys.argv[1]](sys.argv[2])
