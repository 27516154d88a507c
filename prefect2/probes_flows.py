"""The probes' tiny flows, one code base for Prefect 2.x and 3.x (imported after PREFECT_HOME).

Task bodies note when they start and end (time.monotonic) in EVENTS and hooks count themselves
in HOOKS: the probes read both beside the states Prefect's API recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from prefect import allow_failure, flow, task
from prefect.states import Completed
from prefect.tasks import task_input_hash

from prefect2.compat import final_states

try:
    from prefect.task_runners import ProcessPoolTaskRunner  # 3.x
except ImportError:  # 2.x's core ships no task runner with worker processes
    ProcessPoolTaskRunner = None

EVENTS: dict[str, list[float]] = defaultdict(list)
HOOKS: Counter[str] = Counter()
RECEIVED: dict[str, list[Any]] = {}


def reset() -> None:
    EVENTS.clear()
    HOOKS.clear()
    RECEIVED.clear()


def mark(event: str) -> None:
    EVENTS[event].append(time.monotonic())


# Hooks: 2.x calls them by keyword, so the parameters are named exactly so.
def count_task_failure(task: Any, task_run: Any, state: Any) -> None:
    HOOKS[f"{task.name}.on_failure"] += 1


def count_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    HOOKS[f"{flow.name}.on_failure"] += 1


# handled_failure
@task
def boom() -> None:
    raise ValueError("boom")


@task
def cleanup() -> str:
    return "cleaned up"


@flow
def caught_returns_none() -> None:
    if boom(return_state=True).is_failed():
        print("boom failed; carrying on")


@flow
def caught_returns_value() -> str:
    if boom(return_state=True).is_failed():
        return "fallback"
    return "boom"


@flow
def cleanup_after_boom() -> None:
    failed = boom.submit()
    cleanup.submit(wait_for=[allow_failure(failed)]).wait()


# two_hops_down
@task
def hop_a(how: str) -> int | Any:
    if how == "fail":
        raise ValueError("a fails")
    # Prefect 2/3 have no Skipped state: a task skips itself by returning a named state.
    return Completed(name="Skipped", message="skipped on purpose")


@task
def hop_b(x: int | None) -> int | None:
    return x


@task
def hop_c(x: int | None) -> int | None:
    mark("hop_c")
    return x


@flow
def two_hops(how: str) -> None:
    hop_c.submit(hop_b.submit(hop_a.submit(how))).wait()


@task
def hop_b_noted(x: int | None) -> int | None:
    mark("hop_b")
    return x


@flow
def failed_argument() -> None:
    hop_b_noted.submit(hop_a.submit("fail")).wait()


@task
def tolerant_c() -> str:
    mark("tolerant_c")
    return "ran"


@flow
def tolerant_grandchild() -> None:
    b = hop_b_noted.submit(hop_a.submit("fail"))
    tolerant_c.submit(wait_for=[allow_failure(b)]).wait()


@task
def joined(rule: str) -> str:
    mark(rule)
    return rule


# No trigger rules: a join waits on its parents' futures (the default), or lets their failures
# through with allow_failure; "unless a parent failed" is an `if` in the flow.
@flow
def joins() -> None:
    parents = [
        hop_a.with_options(name="s").submit("skip"),
        hop_a.with_options(name="f").submit("fail"),
    ]
    default = joined.with_options(name="join_default").submit("join_default", wait_for=parents)
    all_done = joined.with_options(name="join_all_done").submit(
        "join_all_done", wait_for=[allow_failure(parent) for parent in parents]
    )
    final_states([default, all_done])


# retry_semantics
@task(retries=2, retry_delay_seconds=1)
def flaky() -> int:
    mark("flaky")
    if len(EVENTS["flaky"]) < 3:
        raise ConnectionError("not yet")
    return len(EVENTS["flaky"])


@task(retries=2, on_failure=[count_task_failure])
def doomed() -> None:
    mark("doomed")
    raise ValueError("always")


def retry_on_connection_errors(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except ConnectionError:
        return True
    except Exception:
        return False
    return False


@task(retries=2, retry_condition_fn=retry_on_connection_errors)
def picky(error: str) -> None:
    mark(f"picky[{error}]")
    raise {"transient": ConnectionError, "fatal": ValueError}[error](error)


@flow
def retries() -> None:
    flaky(return_state=True)
    doomed(return_state=True)
    picky.with_options(task_run_name="picky[transient]")("transient", return_state=True)
    picky.with_options(task_run_name="picky[fatal]")("fatal", return_state=True)


# blocking_timeout, run_timeout
def sleep_noted(name: str, seconds: float) -> None:
    """time.sleep, noting its start, its end, and when an exception stopped it, if one did.

    The stop time tells a sleep cut at the timeout from one stopped only after it ended (an
    exception raised into a thread lands after the blocking call returns).
    """
    mark(f"{name}:start")
    try:
        time.sleep(seconds)
    except BaseException:
        mark(f"{name}:stopped")
        raise
    mark(f"{name}:end")


@task(timeout_seconds=1)
def sleeper(seconds: float) -> None:
    sleep_noted("sleeper", seconds)


@task(timeout_seconds=1)
async def async_sleeper(seconds: float) -> None:
    """sleeper's async twin: awaits asyncio.sleep, noting the same events."""
    mark("async_sleeper:start")
    try:
        await asyncio.sleep(seconds)
    except BaseException:
        mark("async_sleeper:stopped")
        raise
    mark("async_sleeper:end")


@task
def napper(seconds: float) -> None:
    sleep_noted("napper", seconds)


@flow
def task_timeout() -> None:
    sleeper(3, return_state=True)


@flow
def submitted_timeout() -> None:
    sleeper.submit(3).wait()


@task(timeout_seconds=1)
def sleeper_in_files(seconds: float, marks: str) -> None:
    """sleeper for a body in another process: it notes the same events in files in `marks`."""

    def note(event: str) -> None:
        Path(marks, event).write_text(f"{time.monotonic()}")

    note("start")
    try:
        time.sleep(seconds)
    except BaseException:
        note("stopped")
        raise
    note("end")


if ProcessPoolTaskRunner is not None:

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pooled_timeout(marks: str) -> None:
        sleeper_in_files.submit(3, marks).wait()


@flow
async def async_timeout() -> None:
    await async_sleeper(3, return_state=True)


@flow(timeout_seconds=1)
def flow_timeout() -> None:
    napper(3)


# map_then_reduce
@task(task_run_name="double[{x}]")
def double(x: int) -> int:
    if x == 2:
        raise ValueError("no 2s")
    return 2 * x


@task
def total(values: list[Any]) -> int:
    RECEIVED["total"] = list(values)
    return sum(v for v in values if isinstance(v, int))


@flow
def map_then_reduce() -> int:
    return total(allow_failure(double.map([1, 2, 3])))


# rerun_completed
@task
def first() -> str:
    mark("first")
    return "first"


@task
def second() -> str:
    mark("second")
    if len(EVENTS["second"]) == 1:
        raise RuntimeError("fails once")
    return "second"


@task
def third(after: str) -> str:
    mark("third")
    return "third"


@flow(retries=1)
def retried_run() -> None:
    first()
    third(second())


# A new run finds the last one's results by the inputs' hash (stored under PREFECT_HOME).
@task(cache_key_fn=task_input_hash, persist_result=True)
def first_cached(run: str) -> str:
    mark("first_cached")
    return run


@task(cache_key_fn=task_input_hash, persist_result=True)
def second_cached(run: str) -> str:
    mark("second_cached")
    if len(EVENTS["second_cached"]) == 1:
        raise RuntimeError("fails once")
    return run


@task(cache_key_fn=task_input_hash, persist_result=True)
def third_cached(run: str) -> str:
    mark("third_cached")
    return run


@flow
def cached_run(run: str = "resume") -> None:
    third_cached(second_cached(first_cached(run)))


# hooks_in_test_mode
@task(on_failure=[count_task_failure])
def failing() -> None:
    raise ValueError("failing")


@flow(on_failure=[count_flow_failure])
def hooked() -> None:
    failing()
