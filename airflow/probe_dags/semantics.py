"""The semantics probes' DAGs (shared_pipeline/probes.py): one tiny TaskFlow DAG per question.

Every DAG takes `out`, the probe's folder: task bodies and callbacks append one JSON line per
event to `out/events.jsonl` (time.monotonic() included; dag.test() runs everything in the
calling process, so the clocks compare). airflow/probes.py reads them and the metadata database.
A parse for one DAG id (Airflow's parsing context) builds only that DAG, as in bench_dags/.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, TriggerRule, dag, get_current_context, get_parsing_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

DAG_ARGS: dict[str, Any] = {"schedule": None, "catchup": False, "tags": ["probe"]}


def mark(out: str, event: str, **fields: Any) -> None:
    """One event line in the probe's folder (tasks and callbacks share the file)."""
    line = {"event": event, "t": time.monotonic(), **fields}
    with (Path(out) / "events.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


def _try() -> int:
    return get_current_context()["ti"].try_number


def count_callback(context: Any, hook: str) -> None:
    """Which callback fired, on which task (counted by airflow/probes.py)."""
    ti = context.get("ti")  # a DAG callback's context carries the task that decided the run
    mark(
        context["params"]["out"],
        "callback",
        hook=hook,
        task=getattr(ti, "task_id", None),
        reason=context.get("reason"),
        exception=type(context.get("exception")).__name__,
    )


def on_task_failure(context: Any) -> None:
    count_callback(context, "on_failure_callback")


def on_task_retry(context: Any) -> None:
    count_callback(context, "on_retry_callback")


def on_dag_failure(context: Any) -> None:
    count_callback(context, "dag.on_failure_callback")


@task
def boom(out: str) -> None:
    mark(out, "run", task="boom")
    raise ValueError("boom")


# --- handled_failure: Airflow's DAG function only declares; a downstream task "catches" ---
def handled_dag(variant: str) -> DAG:
    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def handle(out: str) -> str | None:
        """The catch: runs because `boom` failed, and is the DAG's only leaf."""
        mark(out, "run", task="handle")
        return "recovered" if variant == "return_value" else None

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def cleanup(out: str) -> None:
        """Runs whatever happened upstream."""
        mark(out, "run", task="cleanup")

    @dag(dag_id=f"probe_handled_{variant}", **DAG_ARGS)
    def handled(out: str = "") -> None:
        leaf = cleanup(out) if variant == "cleanup_leaf" else handle(out)
        boom(out) >> leaf

    return handled()


# --- two_hops_down: a -> b -> c, default trigger rule (all_success) unless a variant says ---
def two_hops_dag(variant: str) -> DAG:
    """after_failure / after_skip: `a` >> `b` >> `c`. failed_argument: `b` takes `a`'s result
    (an XComArg: the dependency and the value). tolerant_grandchild: `c` is all_done.
    """

    @task
    def a(out: str) -> str:
        mark(out, "run", task="a")
        if variant == "after_skip":
            raise AirflowSkipException("skipped on purpose")
        raise ValueError("a failed")

    @task
    def b(out: str, value: Any = None) -> None:
        mark(out, "run", task="b", value=value)

    c_rule = TriggerRule.ALL_DONE if variant == "tolerant_grandchild" else TriggerRule.ALL_SUCCESS

    @task(trigger_rule=c_rule)
    def c(out: str) -> None:
        mark(out, "run", task="c")

    @dag(dag_id=f"probe_two_hops_{variant}", **DAG_ARGS)
    def two_hops(out: str = "") -> None:
        if variant == "failed_argument":
            b(out, a(out)) >> c(out)
        else:
            a(out) >> b(out) >> c(out)

    return two_hops()


# --- two_hops_down, the joins: `s` skipped and `f` failed, upstream of one join per rule ---
JOIN_RULES = {
    "join_default": TriggerRule.ALL_SUCCESS,
    "join_none_failed": TriggerRule.NONE_FAILED,
    "join_one_failed": TriggerRule.ONE_FAILED,
    "join_all_done": TriggerRule.ALL_DONE,
}


@task
def s(out: str) -> None:
    mark(out, "run", task="s")
    raise AirflowSkipException("nothing to do today")


@task
def f(out: str) -> None:
    mark(out, "run", task="f")
    raise ValueError("f failed")


@dag(dag_id="probe_two_hops_joins", **DAG_ARGS)
def probe_two_hops_joins(out: str = "") -> None:
    parents = [s(out), f(out)]
    for rule, trigger_rule in JOIN_RULES.items():

        @task(task_id=rule, trigger_rule=trigger_rule)
        def joined(out: str, rule: str = rule) -> None:
            mark(out, "run", task=rule)

        parents >> joined(out)


# --- retry_semantics ---
@task(retries=2, retry_delay=timedelta(seconds=1))
def flaky(out: str) -> str:
    """Fails on its first two tries; the retry delay is 1 s."""
    attempt = _try()
    mark(out, "start", task="flaky", attempt=attempt)
    if attempt < 3:
        mark(out, "end", task="flaky", attempt=attempt)
        raise ValueError(f"flaky try {attempt}")
    return "ok"


@task(retries=2, retry_delay=timedelta(0))
def prompt(out: str) -> str:
    """The control: fails like `flaky`, no retry delay (what the test loop adds by itself)."""
    attempt = _try()
    mark(out, "start", task="prompt", attempt=attempt)
    if attempt < 3:
        mark(out, "end", task="prompt", attempt=attempt)
        raise ValueError(f"prompt try {attempt}")
    return "ok"


@task(retries=2, retry_delay=timedelta(0))
def picky(out: str) -> None:
    """Retries a transient error, fails at once on a permanent one (AirflowFailException)."""
    mark(out, "run", task="picky", attempt=_try())
    try:
        raise KeyError("no such record")  # the permanent kind: retrying cannot help
    except KeyError as e:
        raise AirflowFailException(f"permanent: {e}") from e
    except ConnectionError:
        raise  # the transient kind: Airflow retries it


@task(
    retries=2,
    retry_delay=timedelta(0),
    on_failure_callback=on_task_failure,
    on_retry_callback=on_task_retry,
)
def doomed(out: str) -> None:
    mark(out, "run", task="doomed", attempt=_try())
    raise ValueError("doomed")


@dag(dag_id="probe_retries", **DAG_ARGS)
def probe_retries(out: str = "") -> None:
    flaky(out)
    prompt(out)
    picky(out)
    doomed(out)


# --- blocking_timeout / run_timeout ---
@task(execution_timeout=timedelta(seconds=1), on_failure_callback=on_task_failure)
def sleepy(out: str) -> None:
    mark(out, "start", task="sleepy")
    time.sleep(3)
    mark(out, "end", task="sleepy")


@task(execution_timeout=timedelta(seconds=1), on_failure_callback=on_task_failure)
async def sleepy_async(out: str) -> None:
    """An async TaskFlow task (PythonOperator runs it in an event loop, BaseAsyncOperator)."""
    mark(out, "start", task="sleepy_async")
    await asyncio.sleep(3)
    mark(out, "end", task="sleepy_async")


@dag(dag_id="probe_blocking_timeout", **DAG_ARGS)
def probe_blocking_timeout(out: str = "") -> None:
    sleepy(out)
    sleepy_async(out)


@task
def slow(out: str) -> None:
    mark(out, "start", task="slow")
    time.sleep(3)
    mark(out, "end", task="slow")


@dag(dag_id="probe_run_timeout", dagrun_timeout=timedelta(seconds=1), **DAG_ARGS)
def probe_run_timeout(out: str = "") -> None:
    slow(out)


# --- map_then_reduce ---
@task
def numbers() -> list[int]:
    return [1, 2, 3]


@task
def double(x: int) -> int:
    if x == 2:
        raise ValueError("2 is unlucky")
    return 2 * x


@task(trigger_rule=TriggerRule.ALL_DONE)
def total(out: str, doubled: list[int]) -> int:
    """The reducer: runs whatever became of the mapped instances."""
    received = [doubled[i] for i in range(len(doubled))]
    mark(out, "received", task="total", values=received)
    return sum(received)


@dag(dag_id="probe_map_reduce", **DAG_ARGS)
def probe_map_reduce(out: str = "") -> None:
    total(out, double.expand(x=numbers()))


# --- rerun_completed: `second` fails on its first run in each DAG run ---
@task
def first(out: str) -> str:
    mark(out, "run", task="first", attempt=_try())
    return "first"


@task
def second(out: str, value: str) -> str:
    context = get_current_context()
    mark(out, "run", task="second", attempt=_try())
    marker = Path(out) / f"second-failed-once-{context['run_id']}".replace(":", "_")
    if not marker.exists():
        marker.touch()
        raise ValueError("second fails on its first run")
    return value + "+second"


@task
def third(out: str, value: str) -> None:
    mark(out, "run", task="third", attempt=_try())


@dag(dag_id="probe_rerun", **DAG_ARGS)
def probe_rerun(out: str = "") -> None:
    third(out, second(out, first(out)))


# --- hooks_in_test_mode ---
@task(on_failure_callback=on_task_failure)
def failing(out: str) -> None:
    mark(out, "run", task="failing")
    raise ValueError("failing")


@dag(dag_id="probe_hooks", on_failure_callback=on_dag_failure, **DAG_ARGS)
def probe_hooks(out: str = "") -> None:
    failing(out)


BUILDERS = {
    **{
        f"probe_handled_{v}": lambda v=v: handled_dag(v)
        for v in ("return_none", "return_value", "cleanup_leaf")
    },
    **{
        f"probe_two_hops_{v}": lambda v=v: two_hops_dag(v)
        for v in ("after_failure", "after_skip", "failed_argument", "tolerant_grandchild")
    },
    "probe_two_hops_joins": probe_two_hops_joins,
    "probe_retries": probe_retries,
    "probe_blocking_timeout": probe_blocking_timeout,
    "probe_run_timeout": probe_run_timeout,
    "probe_map_reduce": probe_map_reduce,
    "probe_rerun": probe_rerun,
    "probe_hooks": probe_hooks,
}

selected = get_parsing_context().dag_id
for dag_id, build in BUILDERS.items():
    if selected in (None, dag_id):
        build()
