"""The tiny Prefect 1 flows behind prefect1/probes.py, one builder per probe, written the way
Prefect 1's own docs write them: `with Flow(...)`, `@task`, triggers, `.map`, signals.

Imported by `prefect1.probes.start()` once Prefect 1's settings are in the environment (Prefect 1
reads them at `import prefect`). The task bodies run in this process (LocalExecutor, main thread),
so they report to the in-memory `SEEN` book the probe reads beside the flow-run state; the one
body that runs in a process of its own (a timeout off the main thread) reports in files.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import Flow, task
from prefect.engine.results import LocalResult
from prefect.engine.signals import SKIP
from prefect.executors import DaskExecutor, LocalDaskExecutor
from prefect.triggers import all_finished, all_successful, any_failed


class Seen:
    """What the task bodies and hooks did: runs per task, times per run, hooks fired."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.runs: Counter[str] = Counter()
        self.started: defaultdict[str, list[float]] = defaultdict(list)
        self.hooks: Counter[str] = Counter()

    def ran(self, name: str) -> int:
        self.runs[name] += 1
        self.started[name].append(time.monotonic())
        return self.runs[name]


SEEN = Seen()


class Transient(Exception):
    """An error worth retrying (a flaky API)."""


class Fatal(Exception):
    """An error no retry will mend (a bad request)."""


def boom_error() -> RuntimeError:
    return RuntimeError("boom")


# handled_failure ---------------------------------------------------------------------------


@task
def boom() -> int:
    SEEN.ran("boom")
    raise boom_error()


# A Prefect 1 flow has no body that runs and no return value: "catching" the failure is a task
# downstream of it with a trigger that runs whatever happened; it is handed boom's exception.
@task(trigger=all_finished)
def handle_returning_none(result: Any) -> None:
    SEEN.ran("handle")
    return None


@task(trigger=all_finished)
def handle_returning_value(result: Any) -> str:
    SEEN.ran("handle")
    return "fallback" if isinstance(result, BaseException) else result


@task(trigger=all_finished)
def cleanup() -> None:
    SEEN.ran("cleanup")


def handled_failure_flow(how: str) -> Flow:
    with Flow(f"handled-failure-{how}") as flow:
        failed = boom()
        if how == "return_none":
            handle_returning_none(failed)
        elif how == "return_value":
            handle_returning_value(failed)
        else:
            cleanup(upstream_tasks=[failed])  # a state dependency only: no data passes
    return flow


# two_hops_down -----------------------------------------------------------------------------


@task
def a(outcome: str) -> int:
    SEEN.ran("a")
    if outcome == "skip":
        raise SKIP("nothing to do today")
    raise boom_error()


@task
def b(x: int) -> int:
    SEEN.ran("b")
    return x + 1


@task
def c(x: int) -> int:
    SEEN.ran("c")
    return x + 1


# Runs whatever its upstream did, as long as it finished: a TriggerFailed `b` is finished.
@task(name="c", trigger=all_finished)
def tolerant_c(x: Any) -> str:
    SEEN.ran("c")
    return f"got {type(x).__name__}"


def two_hops_flow(outcome: str, tolerant: bool = False) -> Flow:
    with Flow(f"two-hops-{outcome}{'-tolerant' if tolerant else ''}") as flow:
        # The default trigger (all_successful) everywhere, unless `c` is the tolerant one.
        (tolerant_c if tolerant else c)(b(a(outcome)))
    return flow


@task
def s() -> int:
    SEEN.ran("s")
    raise SKIP("nothing to do today")


@task
def f() -> int:
    SEEN.ran("f")
    raise boom_error()


@task
def joined(rule: str) -> str:
    SEEN.ran(rule)
    return rule


# Prefect 1 has no none_failed: all_successful counts a Skipped as a success, which is the same.
JOIN_TRIGGERS = {
    "join_default": all_successful,
    "join_none_failed": all_successful,
    "join_one_failed": any_failed,
    "join_all_done": all_finished,
}


def join_flow(skip_on_upstream_skip: bool = True) -> Flow:
    with Flow(f"join-skip-on-upstream-skip-{skip_on_upstream_skip}") as flow:
        parents = [s(), f()]
        for rule, trigger in JOIN_TRIGGERS.items():
            options = dict(name=rule, trigger=trigger)
            if not skip_on_upstream_skip:  # the default is True: a skipped parent skips the join
                options["skip_on_upstream_skip"] = False
            joined(rule, task_args=options, upstream_tasks=parents)
    return flow


# retry_semantics ---------------------------------------------------------------------------


@task(max_retries=2, retry_delay=timedelta(seconds=1))
def flaky() -> str:
    if SEEN.ran("flaky") <= 2:
        raise Transient("flaky API, try again")
    return "ok"


def on_doomed_failure(task: Any, state: Any) -> None:
    SEEN.hooks["on_failure"] += 1


@task(max_retries=2, retry_delay=timedelta(seconds=0), on_failure=on_doomed_failure)
def doomed() -> None:
    SEEN.ran("doomed")
    raise RuntimeError("always fails")


# retry_on: only these exception types are retried; any other fails the task at once.
@task(max_retries=2, retry_delay=timedelta(seconds=0), retry_on=Transient)
def picky(error: str) -> str:
    name = f"picky[{error}]"
    if SEEN.ran(name) == 1:
        raise Transient("retry me") if error == "transient" else Fatal("do not retry me")
    return "ok"


def retry_flow() -> Flow:
    with Flow("retry-semantics") as flow:
        flaky()
        doomed()
        picky("transient", task_args=dict(name="picky[transient]"))
        picky("fatal", task_args=dict(name="picky[fatal]"))
    return flow


# blocking_timeout --------------------------------------------------------------------------


@task(timeout=1)  # whole seconds only
def sleepy(marks: str, seconds: float = 3) -> None:
    SEEN.ran("sleepy")  # lost if the body runs in a process of its own: `began` tells then
    started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    Path(marks, "began").write_text(f"{os.getpid()} {started:.3f}")
    try:
        time.sleep(seconds)
        Path(marks, "slept").write_text(f"{time.monotonic() - started:.3f}")
    finally:
        # Written however the body ends: proof it has left, without racing a clock.
        Path(marks, "left").write_text(f"{time.monotonic() - started:.3f}")


def _executor(runner: str, scratch: Path) -> Any:
    """Prefect 1's two executors that run tasks beside the flow: the LocalDaskExecutor's threads
    in this process, or a DaskExecutor's own LocalCluster of (daemonic) worker processes.
    """
    if runner == "LocalDaskExecutor":
        return LocalDaskExecutor(scheduler="threads")
    cluster = dict(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1")
    cluster |= dict(dashboard_address="127.0.0.1:0", local_directory=str(scratch))
    return DaskExecutor(cluster_kwargs=cluster)


def timeout_flow(
    marks: Path, runner: str | None = None, timeout: int = 1, seconds: float = 3
) -> Flow:
    # The LocalExecutor (runner None) runs each task in place, on the flow's main thread.
    executor = _executor(runner, marks.parent / "dask-scratch") if runner else None
    with Flow(f"blocking-timeout-{runner or 'in-place'}-{timeout}s", executor=executor) as flow:
        sleepy(str(marks), seconds, task_args=dict(timeout=timeout) if timeout != 1 else {})
    return flow


def run_submitted(marks: str, runner: str, timeout: int, seconds: float) -> dict[str, Any]:
    """timeout_flow(...).run() on `runner` in a light `python -c` process of its own (see
    prefect1/probes.py): each state's class by task name, and the seconds flow.run() took.
    """
    started = time.monotonic()
    state = timeout_flow(Path(marks), runner, timeout, seconds).run()
    took = time.monotonic() - started
    states = {"flow": type(state).__name__}
    states |= {task.name: type(task_state).__name__ for task, task_state in state.result.items()}
    return dict(states=states, took=took)


# Prefect 1 has no async tasks: an `async def` body becomes a task like any other, whose run
# returns the coroutine unawaited.
@task(timeout=1)
async def sleepy_async(marks: str) -> None:
    SEEN.ran("sleepy_async")
    Path(marks, "began").write_text(f"{os.getpid()} {time.monotonic():.3f}")
    await asyncio.sleep(3)
    Path(marks, "slept").write_text("3")


def async_timeout_flow(marks: Path) -> Flow:
    with Flow("blocking-timeout-async") as flow:
        sleepy_async(str(marks))
    return flow


# map_then_reduce ---------------------------------------------------------------------------


@task
def double(x: int) -> int:
    SEEN.ran("double")
    if x == 2:
        raise ValueError("two is bad luck")
    return 2 * x


def _received(values: list[Any]) -> dict[str, Any]:
    received = [type(v).__name__ if isinstance(v, BaseException) else v for v in values]
    return dict(received=received, total=sum(v for v in values if isinstance(v, int)))


@task(trigger=all_finished)  # reduce whatever there is
def total(values: list[Any]) -> dict[str, Any]:
    return _received(values)


@task(name="total_default_trigger")
def total_default_trigger(values: list[Any]) -> dict[str, Any]:
    return _received(values)


def map_flow() -> Flow:
    with Flow("map-then-reduce") as flow:
        doubled = double.map([1, 2, 3])
        total(doubled)
        total_default_trigger(doubled)  # beside it, the default trigger: for contrast
    return flow


# rerun_completed ---------------------------------------------------------------------------


def resumable(results: Path) -> dict[str, Any]:
    """Checkpoint to a target: a later run that finds it reports the task Cached, not run."""
    return dict(checkpoint=True, result=LocalResult(dir=str(results)), target="{task_name}.pkl")


def rerun_flow(results: Path) -> Flow:
    @task(**resumable(results))
    def first() -> int:
        SEEN.ran("first")
        return 1

    @task(**resumable(results))
    def second(x: int) -> int:
        if SEEN.ran("second") == 1:
            raise RuntimeError("fails once")
        return x + 1

    @task(**resumable(results))
    def third(x: int) -> int:
        SEEN.ran("third")
        return x + 1

    with Flow("rerun-completed") as flow:
        third(second(first()))
    return flow


# hooks_in_test_mode ------------------------------------------------------------------------


def on_task_failure(task: Any, state: Any) -> None:
    SEEN.hooks["task on_failure"] += 1


def on_flow_failure(flow: Any, state: Any) -> None:
    SEEN.hooks["flow on_failure"] += 1


@task(on_failure=on_task_failure)
def fails() -> None:
    SEEN.ran("fails")
    raise RuntimeError("boom")


def hooks_flow() -> Flow:
    with Flow("hooks-in-test-mode", on_failure=on_flow_failure) as flow:
        fails()
    return flow
