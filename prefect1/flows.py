"""The NYC green-taxi pipeline as Prefect 1 static graphs: `with Flow(...)` declares every task
and edge before anything runs; failure handling is task options, triggers and control-flow tasks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
import prefect
from prefect import Flow, Parameter, case, task, unmapped
from prefect.engine.results import LocalResult
from prefect.engine.signals import LOOP
from prefect.engine.state import Success
from prefect.schedules import Schedule
from prefect.schedules.clocks import CronClock
from prefect.tasks.control_flow import FilterTask
from prefect.tasks.core.operators import GetItem
from prefect.triggers import all_finished, any_successful

from prefect1.hooks import FLOW_NOTIFIED, NOTIFIED
from shared_pipeline import steps
from shared_pipeline.settings import Settings

SETTINGS = Settings()
MONTHS = [SETTINGS.train_month, SETTINGS.valid_month]

# report: begin resume
# With PREFECT__FLOWS__CHECKPOINTING=true (set by the adapter), a task with a `target` writes its
# result there and a later flow run finds it and reports the task Cached without running it.
# The target is an absolute path inside the scenario's run directory (LocalResult joins it onto
# its own dir, which keeps an absolute path as it is), so a run only resumes from its own results;
# validate_dir=False: the default dir is never used, so importing this module creates nothing.
RESUMABLE: dict[str, Any] = dict(
    checkpoint=True,
    result=LocalResult(validate_dir=False),
    target="{parameters[run_dir]}/prefect1-results/{task_full_name}.pickle",
)
# report: end resume
# report: begin retries
EXTRACT_RETRIES: dict[str, Any] = dict(
    max_retries=SETTINGS.extract_retries,
    retry_delay=timedelta(seconds=SETTINGS.extract_retry_delay_s),
)
ENRICH_RETRIES: dict[str, Any] = dict(
    max_retries=SETTINGS.enrich_retries,
    retry_delay=timedelta(seconds=SETTINGS.enrich_retry_delay_s),
)
# report: end retries


@task(**EXTRACT_RETRIES, **NOTIFIED, **RESUMABLE)
def extract(run_dir: str, month: str) -> str:
    return steps.extract(run_dir, month)


@task(**NOTIFIED, **RESUMABLE)
def read(run_dir: str, month: str, parquet_path: str) -> dict[str, Any]:
    return steps.read(run_dir, month, parquet_path)


@task(**ENRICH_RETRIES, **NOTIFIED, **RESUMABLE)
def enrich(run_dir: str, months: list[str]) -> dict[str, dict[str, float]]:
    return steps.enrich(run_dir, months)


# report: begin fallback
@task(trigger=all_finished)  # runs whether enrich succeeded or failed for good
def optional_enrichment(enrichment: Any) -> dict[str, dict[str, float]] | None:
    # A failed upstream hands its exception to an all_finished task in place of a result.
    return None if isinstance(enrichment, BaseException) else enrichment


class Degraded(Success):
    """The flow succeeded through the fallback: trained without the enrichment API."""


def degraded_if_enrich_failed(flow: Flow, state: Any, reference_task_states: set) -> Any:
    """The flows' terminal_state_handler: a successful run whose enrichment failed is Degraded."""
    enrich_task = flow.get_tasks(name="enrich")[0]
    if state.is_successful() and state.result[enrich_task].is_failed():
        return Degraded("trained without enrichment: API unavailable", result=state.result)
    return state


def enrichment_or_none(run_dir: Parameter, months: Any, **task_args: Any) -> Any:
    """The enrichment, or None once enrich has failed for good: the API is optional."""
    return optional_enrichment(enrich(run_dir, months, task_args=task_args))


# report: end fallback


@task(**NOTIFIED, **RESUMABLE)
def features(run_dir: str, train: dict, valid: dict, enrichment: dict | None) -> dict[str, Any]:
    return steps.features(run_dir, train, valid, enrichment)


@task
def plan_candidates(run_dir: str, features_result: dict) -> list[dict[str, Any]]:
    return steps.plan_candidates(run_dir, features_result)


@task(
    # report: begin timeout
    timeout=int(SETTINGS.train_timeout_s),  # whole seconds only: timeout=1.5 raises TypeError
    # report: end timeout
    task_run_name="train[{candidate[key]}]",
    **NOTIFIED,
)
def train(run_dir: str, features_result: dict, candidate: dict) -> dict[str, Any]:
    return steps.train(run_dir, features_result, candidate)


@task(**NOTIFIED)
def evaluate(run_dir: str, features_result: dict, trained: list[dict]) -> dict[str, Any]:
    return steps.evaluate(run_dir, features_result, trained)


# report: begin loop
# Prefect 1 loops one task, not a pair: each iteration trains and evaluates one round, and LOOP
# runs the task again with the next loop count until the model is good enough.
@task(timeout=int(SETTINGS.train_timeout_s), **NOTIFIED)
def train_until_good(run_dir: str, features_result: dict) -> dict[str, Any]:
    round_number = prefect.context.get("task_loop_count", 1)
    candidate = steps.retrain_candidate(run_dir, round_number)
    model = steps.train(run_dir, features_result, candidate)
    evaluation = steps.evaluate(run_dir, features_result, [model], candidate["key"])
    if steps.good_enough(run_dir, evaluation, round_number):
        return evaluation
    raise LOOP(message=f"round {round_number}: RMSE {evaluation['rmse']}", result=evaluation)


# report: end loop


@task(**NOTIFIED)
def gate(run_dir: str, train_read: dict, evaluation: dict) -> bool:
    return steps.gate(run_dir, train_read, evaluation)["passed"]


@task(**NOTIFIED)
def register(run_dir: str, features_result: dict, evaluation: dict) -> dict:
    return steps.register(run_dir, features_result, evaluation)


def prepare(run_dir: Parameter, months: Any = MONTHS, **task_args: Any) -> tuple[Any, Any]:
    """Extract and read both months, enrich (or fall back), build features. `months` are known
    when the flow is built (they name the tasks), or a task that computes them at run time.
    """
    named = MONTHS if isinstance(months, list) else ["train_month", "valid_month"]
    reads = []
    for index, name in enumerate(named):
        month = (
            months[index]
            if isinstance(months, list)
            else GetItem(name=f"run_months[{index}]")(months, index)
        )
        # A run's name for the task carries the month it was given (its handler tells it).
        path = extract(
            run_dir,
            month,
            task_args=dict(name=f"extract[{name}]", task_run_name="extract[{month}]", **task_args),
        )
        named_read = dict(name=f"read[{name}]", task_run_name="read[{month}]", **task_args)
        reads.append(read(run_dir, month, path, task_args=named_read))
    enrichment = enrichment_or_none(run_dir, months, **task_args)
    return reads[0], features(run_dir, *reads, enrichment, task_args=task_args)


def finish(run_dir: Parameter, train_read: Any, feats: Any, evaluation: Any) -> Any:
    # report: begin quality_gate
    with case(gate(run_dir, train_read, evaluation), True):
        registered = register(run_dir, feats, evaluation)
    # report: end quality_gate
    return registered


def train_and_register(run_dir: Parameter, train_read: Any, feats: Any) -> Any:
    # report: begin fanout
    candidates = plan_candidates(run_dir, feats)
    trained = train.map(unmapped(run_dir), unmapped(feats), candidates)
    # One failed branch must not sink the run: keep the results of the candidates that trained;
    # if none trained, the trigger fails. A timed-out child hands the join its
    # TaskTimeoutSignal, a BaseException that the default filter (None, Exception) would keep.
    kept = FilterTask(
        name="keep_trained",
        trigger=any_successful,
        filter_func=lambda result: not isinstance(result, BaseException | None),
    )(trained)
    # report: end fanout
    evaluation = evaluate(run_dir, feats, kept)
    return finish(run_dir, train_read, feats, evaluation)


with Flow(
    "train-pipeline", terminal_state_handler=degraded_if_enrich_failed, **FLOW_NOTIFIED
) as train_pipeline:
    run_dir = Parameter("run_dir")
    registered = train_and_register(run_dir, *prepare(run_dir))

# The run's outcome is the registration (done, or skipped by the gate), not every leaf.
train_pipeline.set_reference_tasks([registered])


with Flow(
    "retrain-until-good", terminal_state_handler=degraded_if_enrich_failed, **FLOW_NOTIFIED
) as retrain_until_good:
    run_dir = Parameter("run_dir")
    train_read, feats = prepare(run_dir)
    evaluation = train_until_good(run_dir, feats)
    registered = finish(run_dir, train_read, feats, evaluation)

retrain_until_good.set_reference_tasks([registered])

# The schedule belongs to the Flow: a cron clock, midnight UTC on the first of each month. The
# graph is built before any run, so the month is data: a task reads the run's `date` (the time
# it is for: its scheduled time, or the one a backfill sets), and the month's tasks are named by
# their role (extract[train_month]).
# report: begin schedule
MONTHLY = Schedule(clocks=[CronClock("0 0 1 * *", start_date=pendulum.datetime(2024, 3, 1))])


@task
def run_months(run_dir: str) -> list[str]:
    return steps.run_months(run_dir, prefect.context.get("date"))


# A month's results are its own: a re-run of that month finds them, another month does not.
MONTH_RESULTS = "{parameters[run_dir]}/prefect1-results/{date:%Y-%m}/{task_full_name}"
# report: end schedule

with Flow(
    "monthly-training",
    schedule=MONTHLY,
    terminal_state_handler=degraded_if_enrich_failed,
    **FLOW_NOTIFIED,
) as monthly_training:
    run_dir = Parameter("run_dir")
    months = run_months(run_dir)
    registered = train_and_register(
        run_dir, *prepare(run_dir, months, target=MONTH_RESULTS + ".pickle")
    )

monthly_training.set_reference_tasks([registered])

FLOWS = {"train": train_pipeline, "retrain": retrain_until_good, "monthly": monthly_training}
