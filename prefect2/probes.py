"""Prefect 2.x and 3.x answers to the semantics probes (shared_pipeline/probes.py).

Each probe runs a tiny flow from probes_flows.py, then reads the flow run and its task runs back
from Prefect's API; timings and hook counts come from the task bodies and hooks themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefect2.adapter import migrated_database, read_flow_run
from prefect2.compat import (
    MAJOR,
    VERSION,
    ApiServer,
    drain_events,
    flow_run_settings,
    use_prefect_home,
)
from prefect2.probes_docs import documented
from shared_pipeline.probes import DEPENDS, NOT_EXPRESSIBLE, Documented, Observation

__all__ = ["DOCUMENTED", "NOT_EXPRESSIBLE", "VERSION", "run", "start", "stop"]

DOCUMENTED: dict[str, dict[str, Documented]] = documented(MAJOR, VERSION)

_server = ApiServer()
_flows: Any = None  # prefect2.probes_flows, imported once PREFECT_HOME points into the workdir
_workdir = Path()  # the probe's own folder, while it runs


def start(workdir: Path) -> None:
    """A fresh Prefect home in `workdir` with a migrated database, then import Prefect and start
    its API (3.x).
    """
    global _flows
    use_prefect_home(workdir)
    # The session's template (OUT/runs/.cache): migrating a new database takes 5-10 s.
    shutil.copyfile(migrated_database(workdir.parents[1] / ".cache"), workdir / "prefect.db")
    from prefect2 import probes_flows

    _flows = probes_flows
    _server.start()


def stop() -> None:
    _server.stop()


def run(probe: str, workdir: Path) -> dict[str, Observation]:
    global _workdir
    workdir.mkdir(parents=True, exist_ok=True)
    _workdir = workdir
    _flows.reset()
    with flow_run_settings():
        return PROBES[probe]()


def _run(flow: Any, *args: Any, tasks: int) -> tuple[Any, dict[str, Any]]:
    """Run `flow`, then read its flow run and (at least `tasks`) task runs back from the API."""
    state = flow(*args, return_state=True)
    if inspect.isawaitable(state):  # an async flow, called from here as a script would
        state = asyncio.run(state)
    drain_events()
    flow_run, runs = read_flow_run(state.state_details.flow_run_id, min_tasks=tasks)
    return flow_run, _by_name([run for run, _ in runs])


def _native(flow_run: Any, task_runs: dict[str, Any]) -> dict[str, str]:
    return {"flow run": flow_run.state_name, **{n: r.state_name for n, r in task_runs.items()}}


def _by_name(runs: list[Any]) -> dict[str, Any]:
    """Task runs by their task's name: the default names end in a key ("boom-0" in 2.x, "boom-1a3"
    in 3.x); a name seen again (a new task run per flow-run retry in 3.x) gets its ordinal.
    """
    named: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.start_time or r.expected_start_time or r.created):
        name = re.sub(r"-[0-9a-f]+$", "", run.name)
        count = sum(1 for n in named if n == name or n.startswith(f"{name} ("))
        named[name if not count else f"{name} ({count + 1})"] = run
    return named


def _handled_failure() -> dict[str, Observation]:
    answers = {}
    for key, flow, how in (
        ("return_none", _flows.caught_returns_none, "boom(return_state=True), returns None"),
        ("return_value", _flows.caught_returns_value, "boom(return_state=True), returns a value"),
        (
            "cleanup_leaf",
            _flows.cleanup_after_boom,
            "boom.submit(); cleanup.submit(wait_for=[allow_failure(boom)]); returns None",
        ),
    ):
        flow_run, task_runs = _run(flow, tasks=1 if key != "cleanup_leaf" else 2)
        answers[key] = Observation(
            answer="completed" if flow_run.state_type.value == "COMPLETED" else "failed",
            native=_native(flow_run, task_runs),
            note=f"{how}; the flow run's state from read_flow_run",
        )
    return answers


def _fate(run: Any, bodies: int | None = None) -> str:
    """What became of a task run: ran, not run (Pending/NotReady, no try), failed, never created.

    `bodies` (times its body noted itself) stands beside run_count where the body is counted.
    """
    if run is None:
        return "never created"
    ran = run.run_count > 0 or bool(bodies)
    if run.state_type.value == "COMPLETED" and ran:
        return "ran"
    if run.state_name in ("NotReady", "Pending") and not ran:
        return "not run (upstream failed)"
    return "failed"


def _two_hops_down() -> dict[str, Observation]:
    answers = {}
    for key, how in (("after_failure", "fail"), ("after_skip", "skip")):
        # b and c get task runs (NotReady) after a failure too.
        flow_run, task_runs = _run(_flows.two_hops, how, tasks=3)
        answer = _fate(task_runs.get("hop_c"), len(_flows.EVENTS["hop_c"]))
        if how == "skip" and answer == "not run (upstream failed)":
            answer = "skipped"
        answers[key] = Observation(
            answer=answer,
            native=_native(flow_run, task_runs),
            attempts={n: r.run_count for n, r in task_runs.items()},
            note="c.submit(b.submit(a.submit())); "
            + (
                "a raises"
                if how == "fail"
                else "a returns Completed(name='Skipped'): Prefect 2/3 have no Skipped state"
            ),
        )
    _flows.reset()
    flow_run, task_runs = _run(_flows.failed_argument, tasks=2)
    b_bodies = len(_flows.EVENTS["hop_b"])
    answers["failed_argument"] = Observation(
        answer=_fate(task_runs.get("hop_b_noted"), b_bodies),
        native=_native(flow_run, task_runs),
        attempts={**{n: r.run_count for n, r in task_runs.items()}, "hop_b bodies": b_bodies},
        note="b.submit(a.submit()) with a raising: b's task run and state from the API, its body "
        f"ran {b_bodies} time(s)",
    )
    _flows.reset()
    flow_run, task_runs = _run(_flows.tolerant_grandchild, tasks=3)
    b_bodies, c_bodies = len(_flows.EVENTS["hop_b"]), len(_flows.EVENTS["tolerant_c"])
    b = task_runs.get("hop_b_noted")
    answers["tolerant_grandchild"] = Observation(
        answer=_fate(task_runs.get("tolerant_c"), c_bodies),
        native=_native(flow_run, task_runs),
        attempts={
            **{n: r.run_count for n, r in task_runs.items()},
            "hop_b bodies": b_bodies,
            "tolerant_c bodies": c_bodies,
        },
        note="b = b.submit(a.submit()) with a raising; "
        "c.submit(wait_for=[allow_failure(b)]): b ended "
        f"{b.state_type.value + '/' + b.state_name if b else 'uncreated'} without running, c's "
        f"body ran {c_bodies} time(s)",
    )
    _flows.reset()
    answers |= _joins()
    return answers


def _joins() -> dict[str, Observation]:
    """`s` returns Completed(name="Skipped"), `f` raises; one join waits on both futures, one
    lets their failures through with allow_failure. Prefect has no rule for the other two.
    """
    flow_run, task_runs = _run(_flows.joins, tasks=4)
    native = _native(flow_run, task_runs)
    how = {
        "join_default": "joined.submit(wait_for=[s, f])",
        "join_all_done": "joined.submit(wait_for=[allow_failure(s), allow_failure(f)])",
    }
    answers = {
        rule: Observation(
            answer=_fate(task_runs.get(rule), len(_flows.EVENTS[rule])),
            native=native,
            attempts={n: r.run_count for n, r in task_runs.items()},
            note=f"{how}; `s` returns Completed(name='Skipped'), `f` raises; its body ran "
            f"{len(_flows.EVENTS[rule])} time(s)",
        )
        for rule, how in how.items()
    }
    for rule, test in (
        ("join_none_failed", "not f_state.is_failed()"),
        ("join_one_failed", "f_state.is_failed()"),
    ):
        answers[rule] = Observation(
            answer=NOT_EXPRESSIBLE,
            note="Prefect has no trigger rules to declare on a task: the flow decides in Python "
            f"(f_state = f.submit().wait(), then `if {test}:` submit the join), and a skipped "
            "parent is only a Completed state named Skipped",
        )
    return answers


def _retry_semantics() -> dict[str, Observation]:
    flow_run, task_runs = _run(_flows.retries, tasks=4)
    events, native = _flows.EVENTS, _native(flow_run, task_runs)
    attempts = {n: r.run_count for n, r in task_runs.items()}
    tries = events["flaky"]
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    transient, fatal = len(events["picky[transient]"]), len(events["picky[fatal]"])
    hooks = {"doomed.on_failure": _flows.HOOKS["doomed.on_failure"]}
    return {
        "delay_waited": Observation(
            answer="waited" if gaps and min(gaps) >= 0.9 else "not waited",
            native=native,
            attempts=attempts,
            seconds={f"gap {i + 1}": round(g, 3) for i, g in enumerate(gaps)},
            note="@task(retries=2, retry_delay_seconds=1); gaps between the starts of the tries",
        ),
        "retry_some_errors": Observation(
            answer="expressible" if transient == 3 and fatal == 1 else NOT_EXPRESSIBLE,
            native=native,
            attempts=attempts,
            note="@task(retries=2, retry_condition_fn=...) retries ConnectionError only: "
            f"ConnectionError ran {transient} times, ValueError {fatal}",
        ),
        "hook_on_retries": Observation(
            answer="last only" if hooks["doomed.on_failure"] == 1 else "every try",
            native=native,
            attempts=attempts,
            callbacks=hooks,
            note="@task(retries=2, on_failure=[hook]) always raising",
        ),
    }


def _sleep_observation(
    flow: Any,
    task: str,
    how: str,
    cut_word: str = "interrupted",
    args: tuple[Any, ...] = (),
    events: Callable[[], dict[str, list[float]]] | None = None,
) -> Observation:
    """Was the 3 s sleep in `task` cut short? Decided after it would have ended anyway.

    `events` reads the body's notes where it ran in another process (else EVENTS).
    """
    _flows.reset()
    flow_run, task_runs = _run(flow, *args, tasks=1)
    read = events or (lambda: _flows.EVENTS)
    started = read()[f"{task}:start"][0]
    time.sleep(max(0.0, started + 3.5 - time.monotonic()))
    seen = read()
    ended, stopped = seen.get(f"{task}:end"), seen.get(f"{task}:stopped")
    body = (ended or stopped or [started - 1.0])[0] - started
    run = next(iter(task_runs.values()))
    took = (run.end_time - run.start_time).total_seconds() if run.end_time else -1.0
    # 1 s against 3 s: a stop before 2 s is the timeout's; one at ~3 s came after the sleep.
    cut = not ended and stopped is not None and body < 2.0
    return Observation(
        answer=cut_word if cut else "ran on",
        native=_native(flow_run, task_runs),
        seconds={"body": round(body, 3), "task run": round(took, 3)},
        note=f"{how}; the sleep(3) noting its end, or when an exception stopped it, checked "
        f"3.5 s after it began: {'ended' if ended else 'stopped' if stopped else 'neither'} "
        f"after {body:.1f} s",
    )


def _blocking_timeout() -> dict[str, Observation]:
    timed = "@task(timeout_seconds=1), time.sleep(3)"
    return {
        "sleep_in_task": _sleep_observation(
            _flows.task_timeout, "sleeper", f"{timed} called in the flow"
        ),
        "sleep_submitted": _sleep_submitted(timed),
        "sleep_async": _sleep_observation(
            _flows.async_timeout,
            "async_sleeper",
            "async @task(timeout_seconds=1) awaiting asyncio.sleep(3), awaited in an async "
            "flow run with asyncio.run",
        ),
    }


def _sleep_submitted(timed: str) -> Observation:
    """On the default task runner (threads), and on 3.x's ProcessPoolTaskRunner too."""
    default = "ConcurrentTaskRunner" if MAJOR == 2 else "ThreadPoolTaskRunner"
    threads = _sleep_observation(
        _flows.submitted_timeout,
        "sleeper",
        f"{timed} submitted to {default}, the future waited for",
    )
    if _flows.ProcessPoolTaskRunner is None:
        threads.note += (
            "; 2.x's core ships no task runner with worker processes (prefect-dask does)"
        )
        return threads
    marks = _workdir / "marks-pool"
    marks.mkdir(parents=True, exist_ok=True)
    # The pool's processes are new clients: they find this run's API by PREFECT_API_URL.
    with _api_url_in_environment():
        pooled = _sleep_observation(
            _flows.pooled_timeout,
            "sleeper_in_files",
            f"{timed} submitted to ProcessPoolTaskRunner(max_workers=1)",
            args=(str(marks),),
            events=lambda: {
                f"sleeper_in_files:{m.name}": [float(m.read_text())] for m in marks.iterdir()
            },
        )
    answers = {default: threads.answer, "ProcessPoolTaskRunner": pooled.answer}
    return Observation(
        answer=threads.answer if len(set(answers.values())) == 1 else DEPENDS,
        native={f"{default} {k}": v for k, v in threads.native.items()}
        | {f"ProcessPoolTaskRunner {k}": v for k, v in pooled.native.items()},
        seconds={f"{default} {k}": v for k, v in threads.seconds.items()}
        | {f"ProcessPoolTaskRunner {k}": v for k, v in pooled.seconds.items()},
        note="; ".join(f"{runner}: {answer}" for runner, answer in answers.items())
        + f". {threads.note}. {pooled.note}",
    )


@contextlib.contextmanager
def _api_url_in_environment() -> Iterator[None]:
    os.environ["PREFECT_API_URL"] = _server.api_url
    try:
        yield
    finally:
        del os.environ["PREFECT_API_URL"]


def _run_timeout() -> dict[str, Observation]:
    how = "@flow(timeout_seconds=1) calling a task without a timeout"
    return {"task_stopped": _sleep_observation(_flows.flow_timeout, "napper", how, "stopped")}


def _map_then_reduce() -> dict[str, Observation]:
    flow_run, task_runs = _run(_flows.map_then_reduce, tasks=4)
    received = _flows.RECEIVED.get("total")
    if received is None:
        answer = "nothing: it does not run"
    elif len(received) == 3:
        answer = "every position, the failure in its place"
    else:
        answer = "the successes only"
    return {
        "reducer_receives": Observation(
            answer=answer,
            native=_native(flow_run, task_runs),
            note="total(allow_failure(double.map([1, 2, 3]))); total received "
            f"{[type(v).__name__ if isinstance(v, Exception) else v for v in received or []]}",
        )
    }


def _rerun_completed() -> dict[str, Observation]:
    # 2.x goes on with the same task runs; 3.x makes new ones for the retry.
    flow_run, task_runs = _run(_flows.retried_run, tasks=3 if MAJOR == 2 else 5)
    bodies, third_bodies = len(_flows.EVENTS["first"]), len(_flows.EVENTS["third"])
    # Beside it, the other way back: a new flow run, its tasks keyed by input and persisted.
    failed, failed_tasks = _run(_flows.cached_run, tasks=2)
    again, again_tasks = _run(_flows.cached_run, tasks=3)
    cached_bodies = len(_flows.EVENTS["first_cached"])
    third_cached_bodies = len(_flows.EVENTS["third_cached"])
    native = {
        **_native(flow_run, task_runs),
        **{f"new run 1: {n}": s for n, s in _native(failed, failed_tasks).items()},
        **{f"new run 2: {n}": s for n, s in _native(again, again_tasks).items()},
    }
    attempts = {
        "flow run": flow_run.run_count,
        **{n: r.run_count for n, r in task_runs.items()},
    }
    third = task_runs.get("third")
    third_ran = third_bodies > 0 and third is not None and third.state_type.value == "COMPLETED"
    third_again = again_tasks.get("third_cached")
    cached_ran = third_cached_bodies > 0 and third_again is not None
    return {
        "first_again": Observation(
            answer="runs again" if bodies > 1 else "not again",
            native=native,
            attempts={
                **attempts,
                "first bodies": bodies,
                "first_cached bodies in two new runs": cached_bodies,
            },
            note="@flow(retries=1): the same flow run retried in process, results not persisted "
            f"(the defaults); `first` ran {bodies} time(s). A new flow run with "
            "cache_key_fn=task_input_hash, persist_result=True instead: `first_cached` ran "
            f"{cached_bodies} time(s) in two runs",
        ),
        "after_the_fixed": Observation(
            answer="runs" if third_ran else "stays not run",
            native=native,
            attempts={
                **attempts,
                "third bodies": third_bodies,
                "third_cached bodies in two new runs": third_cached_bodies,
            },
            note="third(second()) after first(), second raising on its first try: "
            f"@flow(retries=1) retried the run and `third` ran {third_bodies} time(s) "
            f"({third.state_name if third else 'no task run'}); the cached new flow run "
            f"{'ran' if cached_ran else 'did not run'} `third_cached` "
            f"({third_cached_bodies} time(s))",
        ),
    }


def _hooks_in_test_mode() -> dict[str, Observation]:
    flow_run, task_runs = _run(_flows.hooked, tasks=1)
    hooks = dict(_flows.HOOKS)
    native = _native(flow_run, task_runs)
    note = "the flow called as a function (return_state=True), no deployment or worker"
    return {
        key: Observation(
            answer="fires" if hooks.get(hook) else "does not fire",
            native=native,
            callbacks=hooks,
            note=note,
        )
        for key, hook in (("task_hook", "failing.on_failure"), ("flow_hook", "hooked.on_failure"))
    }


PROBES: dict[str, Callable[[], dict[str, Observation]]] = {
    "handled_failure": _handled_failure,
    "two_hops_down": _two_hops_down,
    "retry_semantics": _retry_semantics,
    "blocking_timeout": _blocking_timeout,
    "run_timeout": _run_timeout,
    "map_then_reduce": _map_then_reduce,
    "rerun_completed": _rerun_completed,
    "hooks_in_test_mode": _hooks_in_test_mode,
}
