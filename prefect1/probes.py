"""Prefect 1's answers to the semantics probes (shared_pipeline/probes.py): each probe a tiny
flow of prefect1/probes_flows.py run with `flow.run()` (the local executor, main thread, unless
a question asks for a task run beside the flow: the LocalDaskExecutor), each answer read back from
the flow-run state it returns (`state.result[task]`, Prefect 1's only store for a local run)
beside what the task bodies and hooks saw.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

from prefect1.adapter import prefect1_env
from shared_pipeline.headroom import over
from shared_pipeline.probes import (
    DEPENDS,
    FAILED,
    FINAL,
    NEVER,
    NOT_EXPRESSIBLE,
    NOT_RUN,
    RAN,
    SKIPPED,
    Documented,
    Observation,
)
from shared_pipeline.workdirs import engine_home

VERSION = version("prefect")
SOURCE = f"https://github.com/PrefectHQ/prefect/blob/{VERSION}/src/prefect"
DOCS = "https://docs-v1.prefect.io/core/concepts"

_reference_tasks = Documented(FINAL, f"{SOURCE}/core/flow.py#L438-L457")
DOCUMENTED: dict[str, dict[str, Documented]] = {
    # A flow run's state is its reference tasks' (by default the terminal tasks): a handled
    # failure upstream of a successful leaf does not fail the run.
    "handled_failure": {
        "return_none": _reference_tasks,
        "return_value": _reference_tasks,
        "cleanup_leaf": _reference_tasks,
    },
    "two_hops_down": {
        # all_successful, the default trigger: a TriggerFailed upstream is a failure, so it
        # spreads down the chain as TriggerFailed.
        "after_failure": Documented(NOT_RUN, f"{SOURCE}/triggers.py#L106-L109"),
        # skip_on_upstream_skip=True by default: a skip spreads down the chain.
        "after_skip": Documented(SKIPPED, f"{SOURCE}/core/task.py#L254-L260"),
        # A data dependency is an edge like any other: the default trigger sees the failed
        # upstream's state before any argument is passed.
        "failed_argument": Documented(NOT_RUN, f"{SOURCE}/triggers.py#L106-L119"),
        # all_finished runs on any finished upstream, and TriggerFailed is a Failed (finished).
        "tolerant_grandchild": Documented(RAN, f"{SOURCE}/triggers.py#L75-L87"),
        # skip_on_upstream_skip=True by default: "regardless of trigger", a skipped parent
        # skips the join before its trigger is asked.
        **{
            key: Documented(SKIPPED, f"{SOURCE}/core/task.py#L254-L260")
            for key in ("join_default", "join_none_failed", "join_one_failed", "join_all_done")
        },
    },
    "retry_semantics": {
        # flow.run() sleeps until the earliest Retrying task's start time.
        "delay_waited": Documented("waited", f"{SOURCE}/core/flow.py#L1128-L1137"),
        "retry_some_errors": Documented("expressible", f"{SOURCE}/core/task.py#L246-L248"),
        # on_failure is a state handler that fires on every Failed state, and each failed try is
        # a Failed state before check_for_retry turns it into Retrying.
        "hook_on_retries": Documented("every try", f"{SOURCE}/core/task.py#L293-L295"),
    },
    "blocking_timeout": {
        # On the main thread the timeout is a SIGALRM whose handler raises in the task body.
        "sleep_in_task": Documented("interrupted", f"{SOURCE}/utilities/executors.py#L244-L257"),
        # Off the main thread (a LocalDaskExecutor thread) the body runs in a spawned process
        # that is terminated at the timeout.
        # Off the main thread: a spawned process it terminates, unless the task already runs in
        # a daemonic process (a Dask worker), where only a soft timeout is possible.
        "sleep_submitted": Documented(DEPENDS, f"{SOURCE}/utilities/executors.py#L470-L512"),
        # The task runner calls task.run() and keeps what it returns: nothing awaits a coroutine.
        "sleep_async": Documented(NOT_EXPRESSIBLE, f"{SOURCE}/engine/task_runner.py#L879-L885"),
    },
    "run_timeout": {
        # Flow.run() and the FlowRunner take no timeout; only tasks have one.
        "task_stopped": Documented(NOT_EXPRESSIBLE, f"{SOURCE}/core/flow.py#L1182-L1188"),
    },
    "map_then_reduce": {
        # A finished-whatever-happened reducer gets the failed child's exception in its place:
        # FilterTask exists to drop such Exceptions from mapped results.
        "reducer_receives": Documented(
            "every position, the failure in its place",
            f"{SOURCE}/tasks/control_flow/filter.py#L7-L11",
        ),
    },
    "rerun_completed": {
        "first_again": Documented(
            "not again", f"{DOCS}/persistence.html#output-caching-based-on-a-file-target"
        ),
        # A TriggerFailed task wrote no target, so the re-run runs it once its upstream succeeds.
        "after_the_fixed": Documented(
            "runs", f"{DOCS}/persistence.html#output-caching-based-on-a-file-target"
        ),
    },
    "hooks_in_test_mode": {
        "task_hook": Documented("fires", f"{SOURCE}/core/task.py#L293-L295"),
        "flow_hook": Documented("fires", f"{SOURCE}/core/flow.py#L138-L139"),
    },
}

_flows: ModuleType | None = None


def start(workdir: Path) -> None:
    """Prefect 1's home, config and checkpointing under workdir, then `import prefect`."""
    global _flows
    engine_home(workdir / ".prefect-home", ("prefect", "distributed"), prefect1_env)
    from prefect1 import probes_flows

    _flows = probes_flows


def stop() -> None:
    """Nothing runs between probes: flow.run() leaves no process or server behind."""


def run(probe: str, workdir: Path) -> dict[str, Observation]:
    workdir.mkdir(parents=True, exist_ok=True)
    return PROBES[probe](workdir)


def _f() -> ModuleType:
    if _flows is None:
        raise RuntimeError("start() first: Prefect 1 reads its settings at import")
    return _flows


def _flow_run(flow: Any) -> tuple[Any, dict[str, Any], float]:
    """Run a flow with a clean book; its state, each task's state by name, and the seconds."""
    _f().SEEN.reset()
    started = time.monotonic()
    state = flow.run()
    took = time.monotonic() - started
    return state, {task.name: task_state for task, task_state in state.result.items()}, took


def _native(flow_state: Any, tasks: dict[str, Any], *names: str) -> dict[str, str]:
    native = {"flow": type(flow_state).__name__}
    for name in names or tuple(tasks):
        task_state = tasks.get(name)
        native[name] = type(task_state).__name__ if task_state is not None else "no state"
        for index, child in enumerate(getattr(task_state, "map_states", None) or []):
            native[f"{name}[{index}]"] = type(child).__name__
    return native


def _final(flow_state: Any) -> str:
    return FINAL if flow_state.is_successful() else FAILED


def handled_failure(workdir: Path) -> dict[str, Observation]:
    notes = {
        "return_none": "a Prefect 1 flow has no return value: `handle(boom())` with "
        "trigger=all_finished receives boom's exception and returns None",
        "return_value": "`handle(boom())` with trigger=all_finished returns a fallback value",
        "cleanup_leaf": "`cleanup(upstream_tasks=[boom])` with trigger=all_finished is the leaf",
    }
    answers = {}
    for how, note in notes.items():
        flow_state, tasks, _ = _flow_run(_f().handled_failure_flow(how))
        answers[how] = Observation(
            answer=_final(flow_state),
            native=_native(flow_state, tasks),
            attempts=dict(_f().SEEN.runs),
            note=f"{note}; the run's state follows its terminal (reference) tasks",
        )
    return answers


def two_hops_down(workdir: Path) -> dict[str, Observation]:
    def became(tasks: dict[str, Any], name: str) -> str:
        task_state = tasks.get(name)
        if task_state is None:
            return NEVER
        if _f().SEEN.runs[name]:
            return RAN
        if task_state.is_skipped():
            return SKIPPED
        return NOT_RUN if type(task_state).__name__ == "TriggerFailed" else FAILED

    answers = {}
    for key, outcome, tolerant, how in (
        ("after_failure", "fail", False, "`a` raises"),
        ("after_skip", "skip", False, "`a` raises prefect.engine.signals.SKIP"),
        ("tolerant_grandchild", "fail", True, "`a` raises; `c` has trigger=all_finished"),
    ):
        flow_state, tasks, _ = _flow_run(_f().two_hops_flow(outcome, tolerant))
        seen = _f().SEEN
        native = _native(flow_state, tasks, "a", "b", "c")
        attempts = {name: seen.runs[name] for name in "abc"}
        answers[key] = Observation(
            answer=became(tasks, "c"),
            native=native,
            attempts=attempts,
            note=f"c(b(a())) with the default trigger (all_successful); {how}"
            + (f"; c returned {tasks['c'].result!r}" if tolerant and seen.runs["c"] else ""),
        )
        if key == "after_failure":
            answers["failed_argument"] = Observation(
                answer=became(tasks, "b"),
                native=native,
                attempts=attempts,
                note="b(a()) with the default trigger: `a` raises and its result is b's only "
                "argument; b's body never ran, so it was not handed the exception",
            )
    answers |= _joins(became)
    return answers


def _joins(became: Callable[[dict[str, Any], str], str]) -> dict[str, Observation]:
    """One flow: `s` skips, `f` fails, and a join per rule; again with skip_on_upstream_skip off."""
    runs = {}
    for flag in (True, False):
        flow_state, tasks, _ = _flow_run(_f().join_flow(skip_on_upstream_skip=flag))
        runs[flag] = (flow_state, tasks, {name: became(tasks, name) for name in _f().JOIN_TRIGGERS})
    flow_state, tasks, fates = runs[True]
    _, tasks_off, fates_off = runs[False]
    answers = {}
    for rule, trigger in _f().JOIN_TRIGGERS.items():
        answers[rule] = Observation(
            answer=fates[rule],
            native={
                **_native(flow_state, tasks, "s", "f", rule),
                f"{rule} (skip_on_upstream_skip=False)": type(tasks_off[rule]).__name__,
            },
            note=f"{rule}(upstream_tasks=[s, f]) with trigger={trigger.__name__}, "
            f"skip_on_upstream_skip left at its default True; `s` raises SKIP, `f` raises. "
            f"With skip_on_upstream_skip=False the same join {fates_off[rule]}"
            + (
                " (Prefect 1 has no none_failed: all_successful counts a Skipped parent as a "
                "success)"
                if rule == "join_none_failed"
                else ""
            ),
        )
    return answers


def retry_semantics(workdir: Path) -> dict[str, Observation]:
    flow_state, tasks, took = _flow_run(_f().retry_flow())
    seen = _f().SEEN
    starts = seen.started["flaky"]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    native = _native(flow_state, tasks)
    waited = len(gaps) == 2 and min(gaps) >= 0.9 and tasks["flaky"].is_successful()
    transient, fatal = seen.runs["picky[transient]"], seen.runs["picky[fatal]"]
    retried_only_transient = (
        transient == 2
        and tasks["picky[transient]"].is_successful()
        and fatal == 1
        and tasks["picky[fatal]"].is_failed()
    )
    fired, tries = seen.hooks["on_failure"], seen.runs["doomed"]
    return {
        "delay_waited": Observation(
            answer="waited" if waited else "not waited",
            native=native,
            attempts={"flaky": seen.runs["flaky"]},
            seconds={f"gap_{i + 1}": round(gap, 3) for i, gap in enumerate(gaps)},
            note="max_retries=2, retry_delay=timedelta(seconds=1): time.monotonic() at the "
            "start of each try; waited if every gap >= 0.9 s",
        ),
        "retry_some_errors": Observation(
            answer="expressible" if retried_only_transient else NOT_EXPRESSIBLE,
            native=native,
            attempts={"picky[transient]": transient, "picky[fatal]": fatal},
            note="Task(max_retries=2, retry_on=Transient): a Transient first try was retried "
            "and succeeded; a Fatal first try failed at once with no retry"
            if retried_only_transient
            else f"retry_on did not split them: transient {transient} tries, fatal {fatal}",
        ),
        "hook_on_retries": Observation(
            answer="every try" if fired == tries > 1 else "last only",
            native=native,
            attempts={"doomed": tries},
            callbacks={"on_failure": fired},
            seconds={"flow.run": round(took, 3)},
            note="Task(on_failure=...) on `doomed` (max_retries=2, always fails): it fired "
            f"{fired} times for {tries} tries; each failed try is a Failed state before it "
            "becomes Retrying",
        ),
    }


def _marks(workdir: Path, name: str) -> Path:
    marks = workdir / name
    shutil.rmtree(marks, ignore_errors=True)
    marks.mkdir(parents=True)
    return marks


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def blocking_timeout(workdir: Path) -> dict[str, Observation]:
    answers = _sleep_in_task(workdir)
    answers["sleep_submitted"] = _sleep_submitted(workdir)
    answers["sleep_async"] = _sleep_async(workdir)
    return answers


def _sleep_in_task(workdir: Path) -> dict[str, Observation]:
    marks = _marks(workdir, "marks")
    flow_state, tasks, took = _flow_run(_f().timeout_flow(marks))
    started = _f().SEEN.started["sleepy"][0]
    # The body writes `left` however it ends; if it has not, give it well past its 3 s.
    while not (marks / "left").exists() and time.monotonic() < started + 6:
        time.sleep(0.1)
    slept = (marks / "slept").exists()
    left = (marks / "left").exists()
    seconds = {"flow.run": round(took, 3)}
    if left:
        seconds["body_left_at"] = float((marks / "left").read_text())
    return {
        "sleep_in_task": Observation(
            answer="interrupted" if left and not slept else "ran on",
            native=_native(flow_state, tasks),
            attempts={"sleepy": _f().SEEN.runs["sleepy"]},
            seconds=seconds,
            note="@task(timeout=1) calling time.sleep(3): the body writes `slept` after the "
            "sleep and `left` in a finally; interrupted if it left without `slept`",
        ),
    }


def _submitted(workdir: Path, runner: str, timeout: int) -> dict[str, Any]:
    """sleepy with this timeout on `runner`, sleeping 2 s past it: what its body did, from its
    marks.
    """
    seconds = timeout + 2
    marks = _marks(workdir, f"marks-{runner}-{timeout}s")
    started = time.monotonic()
    # Off the main thread Prefect 1 runs the body in a spawned process, which first re-imports
    # the main module: shared_pipeline.probing takes ~5 s to import, longer than any timeout
    # here. The flow runs in a `python -c` of its own, whose children import only Prefect.
    code = (
        "import json, sys; from prefect1.probes_flows import run_submitted; "
        "print(json.dumps(run_submitted(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(marks), runner, str(timeout), str(seconds)],
        capture_output=True,
        text=True,
        # The child imports Prefect and Dask (~2 s), starts a cluster (~2 s), sleeps up to 10 s:
        # about 15 s at most.
        timeout=over(15),
        check=True,
    )
    ran = json.loads(done.stdout.strip().splitlines()[-1])
    took, native = ran["took"], ran["states"]
    began = (marks / "began").read_text().split() if (marks / "began").exists() else None
    # The body runs in a process of its own: wait until its sleep would have ended (or `left`
    # says it has), then look for the marker written after the sleep.
    deadline = (float(began[1]) if began else started) + seconds + 0.5
    while not (marks / "left").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    slept, left = (marks / "slept").exists(), (marks / "left").exists()
    times = {"flow.run": round(took, 3)}
    if began:  # from the start of the `python -c` process
        times["body_began_at"] = round(float(began[1]) - started, 3)
    if left:
        times["body_left_at"] = float((marks / "left").read_text())
    if not began:
        how = "its body never began (its process was stopped while it started up)"
    elif slept:
        how = f"its body slept its {seconds} s to the end"
    elif left:
        how = "an exception stopped its body (its finally wrote `left`)"
    else:
        gone = "gone" if not _alive(int(began[0])) else "still alive"
        how = f"its process was terminated mid-sleep, no exception (no finally ran; {gone})"
    return dict(
        began=bool(began),
        slept=slept,
        native={f"{runner} {k}": v for k, v in native.items()},
        seconds={f"{runner} {k}": v for k, v in times.items()},
        how=f"{runner}, timeout={timeout} s, sleep({seconds}): {native['sleepy']} after "
        f"{took:.1f} s, {how}",
    )


def _sleep_submitted(workdir: Path) -> Observation:
    """The sleep on each executor that runs tasks beside the flow. On the LocalDaskExecutor the
    timeout's clock starts before its spawned process has imported Prefect (about a second), so
    a run whose body never began answers nothing: the timeout doubles until the body begins.
    """
    runs, answers, tried = [], {}, {}
    for runner in ("LocalDaskExecutor", "DaskExecutor"):
        for tried[runner], timeout in enumerate((1, 2, 4, 8), start=1):
            runs.append(_submitted(workdir, runner, timeout))
            if runs[-1]["began"]:
                answers[runner] = "ran on" if runs[-1]["slept"] else "interrupted"
                break
        else:
            raise RuntimeError(f"sleepy never began on {runner}, even with an 8 s timeout")
    native, seconds = {}, {}
    for run in runs:
        native |= run["native"]
        seconds |= run["seconds"]
    return Observation(
        answer=answers["DaskExecutor"] if len(set(answers.values())) == 1 else DEPENDS,
        native=native,
        attempts={f"{runner} timeouts tried": tried[runner] for runner in answers},
        seconds=seconds,
        note="the same @task time.sleep under Flow(executor=LocalDaskExecutor(scheduler="
        '"threads")), tasks in threads of this process, and under Flow(executor=DaskExecutor('
        "cluster_kwargs=...)), a LocalCluster of one worker process; the body writes `began`, "
        "`slept` after the sleep, `left` in a finally. "
        + "; ".join(f"{runner}: {answer}" for runner, answer in answers.items())
        + ". Runs: "
        + "; ".join(run["how"] for run in runs),
    )


def _sleep_async(workdir: Path) -> Observation:
    marks = _marks(workdir, "marks-async")
    flow_state, tasks, took = _flow_run(_f().async_timeout_flow(marks))
    returned = tasks["sleepy_async"].result
    unawaited = hasattr(returned, "close") and type(returned).__name__ == "coroutine"
    if unawaited:
        returned.close()  # never awaited: close it (else Python warns when it is collected)
    began = (marks / "began").exists()
    return Observation(
        answer=NOT_EXPRESSIBLE,
        native=_native(flow_state, tasks),
        attempts={"sleepy_async": _f().SEEN.runs["sleepy_async"]},
        seconds={"flow.run": round(took, 3)},
        note="Prefect 1 has no async tasks: the task runner calls task.run() and keeps what it "
        "returns, so @task(timeout=1) on an `async def` ends "
        f"{type(tasks['sleepy_async']).__name__} in {took:.2f} s with "
        f"{'an unawaited coroutine' if unawaited else repr(returned)} as its result, the body "
        f"{'having begun' if began else 'never begun'} (asyncio.sleep never awaited). "
        "Workaround: a sync task that calls asyncio.run(...) on the coroutine; the timeout "
        "then applies as to any blocking body",
    )


def run_timeout(workdir: Path) -> dict[str, Observation]:
    return {
        "task_stopped": Observation(
            answer=NOT_EXPRESSIBLE,
            note="Prefect 1 has no flow-run timeout: Flow.run() and FlowRunner take none, only "
            "tasks have `timeout=`. Workaround: a timeout on each task (they add up to a bound "
            "on the run), or a subprocess around flow.run() killed at the deadline",
        ),
    }


def map_then_reduce(workdir: Path) -> dict[str, Observation]:
    flow_state, tasks, _ = _flow_run(_f().map_flow())
    reduced = tasks["total"]
    if not reduced.is_successful():
        answer = "nothing: it does not run"
    else:
        received = reduced.result["received"]
        answer = (
            "every position, the failure in its place"
            if len(received) == 3
            else "the successes only"
        )
    return {
        "reducer_receives": Observation(
            answer=answer,
            native=_native(flow_state, tasks, "double", "total", "total_default_trigger"),
            attempts={"double": _f().SEEN.runs["double"]},
            note="double.map([1, 2, 3]) fails for 2; total(doubled) with trigger=all_finished "
            f"returned {reduced.result!r}. Beside it a reducer with the default trigger "
            f"(all_successful) ends {type(tasks['total_default_trigger']).__name__}",
        ),
    }


def rerun_completed(workdir: Path) -> dict[str, Observation]:
    results = workdir / "results"
    shutil.rmtree(results, ignore_errors=True)  # no target left from an earlier probe run
    flow = _f().rerun_flow(results)
    first_state, first_tasks, _ = _flow_run(flow)
    seen = _f().SEEN
    runs_before = dict(seen.runs)
    # The Prefect 1 way to resume a local run: run it again; each task whose target exists
    # is Cached without running. SEEN is kept across both runs.
    second_state = flow.run()
    second_tasks = {task.name: task_state for task, task_state in second_state.result.items()}
    native = {f"run1 {k}": v for k, v in _native(first_state, first_tasks).items()}
    native |= {f"run2 {k}": v for k, v in _native(second_state, second_tasks).items()}
    again = seen.runs["first"] > runs_before.get("first", 0)
    third_now = seen.runs["third"] > runs_before.get("third", 0)
    third_was_not_run = (
        runs_before.get("third", 0) == 0 and not first_tasks["third"].is_successful()
    )
    return {
        "first_again": Observation(
            answer="runs again" if again else "not again",
            native=native,
            attempts=dict(seen.runs),
            note="first -> second, both checkpoint=True with LocalResult(dir=...) and "
            "target='{task_name}.pkl' (PREFECT__FLOWS__CHECKPOINTING=true); second fails the "
            "first run; then flow.run() again",
        ),
        "after_the_fixed": Observation(
            answer="runs"
            if third_now and second_tasks["third"].is_successful()
            else "stays not run",
            native=native,
            attempts=dict(seen.runs),
            note="third(second(first())), the same targets; in the first run third ended "
            f"{type(first_tasks['third']).__name__}"
            f"{'' if third_was_not_run else ' (it had run!)'} and wrote no target; in the "
            f"second flow.run() second ended {type(second_tasks['second']).__name__} and third "
            f"{type(second_tasks['third']).__name__}, its body "
            f"{'run' if third_now else 'not run'}",
        ),
    }


def hooks_in_test_mode(workdir: Path) -> dict[str, Observation]:
    flow_state, tasks, _ = _flow_run(_f().hooks_flow())
    hooks = dict(_f().SEEN.hooks)
    native = _native(flow_state, tasks)

    def fired(hook: str) -> str:
        return "fires" if hooks.get(hook, 0) > 0 else "does not fire"

    how = "flow.run() on the local executor, the docs' way to try a flow"
    return {
        "task_hook": Observation(
            answer=fired("task on_failure"),
            native=native,
            attempts={"fails": _f().SEEN.runs["fails"]},
            callbacks={"task on_failure": hooks.get("task on_failure", 0)},
            note=f"@task(on_failure=...) on a task that raises; {how}",
        ),
        "flow_hook": Observation(
            answer=fired("flow on_failure"),
            native=native,
            callbacks={"flow on_failure": hooks.get("flow on_failure", 0)},
            note=f"Flow(..., on_failure=...); {how}",
        ),
    }


PROBES: dict[str, Callable[[Path], dict[str, Observation]]] = {
    "handled_failure": handled_failure,
    "two_hops_down": two_hops_down,
    "retry_semantics": retry_semantics,
    "blocking_timeout": blocking_timeout,
    "run_timeout": run_timeout,
    "map_then_reduce": map_then_reduce,
    "rerun_completed": rerun_completed,
    "hooks_in_test_mode": hooks_in_test_mode,
}
