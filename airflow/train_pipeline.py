"""The train pipeline as an Airflow DAG: fan out over the candidate models known only at run
time, keep going when one of them fails, register the best one if it passes the quality gate.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import TriggerRule, dag, task
from pipeline_tasks import DAG_ARGS, evaluate, gate, prepare, register, train

from shared_pipeline import steps


@task
def candidates(run_dir: str, features_result: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidate list, computed at run time from the training set."""
    return steps.plan_candidates(run_dir, features_result)


# report: begin fanout
@task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
def trained_models(trained: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The join: waits for every mapped instance; Airflow hands it the successful ones only."""
    return [trained[i] for i in range(len(trained))]  # len() first: no probing past the end


# report: end fanout


@dag(dag_id="train_pipeline", **DAG_ARGS)
def train_pipeline(run_dir: str = "") -> None:
    train_read, feats = prepare(run_dir)
    # report: begin fanout
    trained = train.partial(run_dir=run_dir, features_result=feats).expand(
        candidate=candidates(run_dir, feats)
    )
    evaluation = evaluate(run_dir, feats, trained_models(trained))
    # report: end fanout
    # report: begin quality_gate
    gate(run_dir, train_read, evaluation) >> register(run_dir, feats, evaluation)
    # report: end quality_gate


train_pipeline()
