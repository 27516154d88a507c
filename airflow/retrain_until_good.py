"""Retrain until good as an Airflow DAG. A DAG run cannot loop an unknown number of times, so the
loop is declared up front: `retrain_max_rounds` rounds in a chain, and each round's check
short-circuits the rounds after it once the model is good enough.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import TaskGroup, TriggerRule, dag, task
from pipeline_tasks import DAG_ARGS, SETTINGS, gate, prepare, register

from shared_pipeline import steps


# report: begin timeout
@task(task_id="train", execution_timeout=timedelta(seconds=SETTINGS.train_timeout_s))
# report: end timeout
def train_round(run_dir: str, features_result: dict, round_number: int) -> dict[str, Any]:
    """Round N trains on twice the sample of round N-1."""
    return steps.train(run_dir, features_result, steps.retrain_candidate(run_dir, round_number))


@task
def evaluate(run_dir: str, features_result: dict, trained: dict, key: str) -> dict[str, Any]:
    return steps.evaluate(run_dir, features_result, [trained], key)


# report: begin loop
@task.short_circuit(ignore_downstream_trigger_rules=False)
def keep_going(run_dir: str, evaluation: dict[str, Any], round_number: int) -> bool:
    """False once the target is met: the later rounds (its direct downstream) are skipped."""
    return not steps.good_enough(run_dir, evaluation, round_number)


@task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
def last_evaluation(evaluations: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The evaluation of the last round that ran (skipped rounds have no XCom)."""
    return [e for e in evaluations if e is not None][-1]


# report: end loop


@dag(dag_id="retrain_until_good", **DAG_ARGS)
def retrain_until_good(run_dir: str = "") -> None:
    train_read, feats = prepare(run_dir)
    # report: begin loop
    evaluations, checks = [], []
    for number in range(1, SETTINGS.retrain_max_rounds + 1):
        with TaskGroup(group_id=f"round-{number}"):
            model = train_round(run_dir, feats, number)
            # A round trains only if every earlier round said "keep going": the first "stop"
            # skips all later rounds at once (instead of one scheduling pass per round).
            checks >> model
            evaluations.append(evaluate(run_dir, feats, model, f"round-{number}"))
            if number < SETTINGS.retrain_max_rounds:
                checks.append(keep_going(run_dir, evaluations[-1], number))
    best = last_evaluation(evaluations)
    # report: end loop
    # report: begin quality_gate
    gate(run_dir, train_read, best) >> register(run_dir, feats, best)
    # report: end quality_gate


retrain_until_good()
