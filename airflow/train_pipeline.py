"""The train pipeline as Airflow DAGs: fan out over the candidate models known only at run time,
keep going when one of them fails, register the best one if it passes the quality gate; run by
hand (train_pipeline) or on a monthly schedule (monthly_training).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import TriggerRule, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable
from callbacks import ROLES
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


def train_and_register(run_dir: str, train_read: Any, feats: Any) -> None:
    # report: begin fanout
    trained = train.partial(run_dir=run_dir, features_result=feats).expand(
        candidate=candidates(run_dir, feats)
    )
    evaluation = evaluate(run_dir, feats, trained_models(trained))
    # report: end fanout
    # report: begin quality_gate
    gate(run_dir, train_read, evaluation) >> register(run_dir, feats, evaluation)
    # report: end quality_gate


@dag(dag_id="train_pipeline", **DAG_ARGS)
def train_pipeline(run_dir: str = "") -> None:
    train_and_register(run_dir, *prepare(run_dir))


train_pipeline()


# The same pipeline on a monthly schedule: one DAG run per data interval, a calendar month
# (CronDataIntervalTimetable: plain "@monthly" gives a run no interval, only a time). The graph
# is fixed before any run, so the months are data: a task reads them off the run's interval,
# and the month's task groups are named by their role (train_month.extract).
# report: begin schedule
MONTHLY: dict[str, Any] = {
    "schedule": CronDataIntervalTimetable("@monthly", timezone="UTC"),
    "start_date": datetime(2024, 2, 1, tzinfo=UTC),
    "end_date": datetime(2024, 7, 1, tzinfo=UTC),  # the last month the source database holds
    "catchup": False,  # the past is a backfill's job
    "max_active_runs": 1,  # in order: each month compares with the production the last one left
}


@task(multiple_outputs=True)
def run_months(run_dir: str, data_interval_end: Any = None) -> dict[str, str]:
    """The month this run's data interval covers (trained on) and the next (validated on)."""
    return dict(zip(ROLES, steps.run_months(run_dir, data_interval_end), strict=True))


@dag(dag_id="monthly_training", **{**DAG_ARGS, **MONTHLY})
def monthly_training(run_dir: str = "") -> None:
    months = run_months(run_dir)
    train_and_register(run_dir, *prepare(run_dir, {role: months[role] for role in ROLES}))


# report: end schedule
monthly_training()
