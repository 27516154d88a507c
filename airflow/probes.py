"""Airflow 3's answers to the semantics probes (shared_pipeline/probes.py), under dag.test().

Each probe runs tiny TaskFlow DAGs from their own DAGs folder (probe_dags/, left out of the
pipeline's DagBag by .airflowignore) and reads the task instances back from the metadata
database; task bodies and callbacks log events with time.monotonic() to the probe's folder.
Loaded by file path (shared_pipeline/loading.py): importing it imports no Airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared_pipeline.loading import load_module
from shared_pipeline.probes import NOT_EXPRESSIBLE, Documented, Observation

__all__ = ["DOCUMENTED", "VERSION", "run", "start", "stop"]

VERSION = version("apache-airflow")
DAGS_FOLDER = Path(__file__).resolve().parent / "probe_dags"
DAG_FILE = DAGS_FOLDER / "semantics.py"
DOCS = "https://airflow.apache.org/docs/apache-airflow/stable"
SRC = "https://github.com/apache/airflow/blob/3.3.2"
# dag.test()'s loop (task-sdk's DAG.test): update_state, run what is scheduled, sleep 1 s when
# nothing is; no dagrun_timeout check anywhere in it.
TEST_LOOP = f"{SRC}/task-sdk/src/airflow/sdk/definitions/dag.py#L1395-L1425"
# The only dagrun_timeout check: the scheduler's, when it examines a running DAG run.
SCHEDULER_TIMEOUT = f"{SRC}/airflow-core/src/airflow/jobs/scheduler_job_runner.py#L2853-L2871"
# Where execution_timeout is applied to every task's execute (SIGALRM on the main thread).
RUN_EXECUTE = f"{SRC}/task-sdk/src/airflow/sdk/execution_time/task_runner.py#L2160-L2192"

DOCUMENTED: dict[str, dict[str, Documented]] = {
    "handled_failure": {
        # A DAG's state is decided by its leaf tasks; a failed task with a downstream that
        # handles it is no leaf. The DAG function declares tasks and returns nothing at run time.
        key: Documented("completed", f"{DOCS}/core-concepts/dag-run.html#dag-run-status")
        for key in ("return_none", "return_value", "cleanup_leaf")
    },
    "two_hops_down": {
        "after_failure": Documented(
            "not run (upstream failed)", f"{DOCS}/core-concepts/dags.html#trigger-rules"
        ),
        # "skipped tasks will cascade through trigger rules all_success and all_failed"
        "after_skip": Documented("skipped", f"{DOCS}/core-concepts/dags.html#trigger-rules"),
        # A TaskFlow argument that is another task's XComArg also sets the dependency, under the
        # default all_success: a failed `a` makes `b` upstream_failed before it is given a value.
        "failed_argument": Documented(
            "not run (upstream failed)", f"{DOCS}/core-concepts/taskflow.html#passing-data"
        ),
        # all_done: "all upstream tasks are done with their execution"; upstream_failed is done.
        "tolerant_grandchild": Documented("ran", f"{DOCS}/core-concepts/dags.html#trigger-rules"),
        # A skipped and a failed parent: all_success and none_failed see the failure first
        # (upstream_failed); one_failed fires on it; all_done on both being done.
        **{
            rule: Documented(answer, f"{DOCS}/core-concepts/dags.html#trigger-rules")
            for rule, answer in (
                ("join_default", "not run (upstream failed)"),
                ("join_none_failed", "not run (upstream failed)"),
                ("join_one_failed", "ran"),
                ("join_all_done", "ran"),
            )
        },
    },
    "retry_semantics": {
        # A try is not ready again until retry_delay has passed (NotInRetryPeriodDep).
        "delay_waited": Documented(
            "waited", f"{SRC}/airflow-core/src/airflow/ti_deps/deps/not_in_retry_period_dep.py"
        ),
        # AirflowFailException: "fail the task immediately, ignoring any remaining retries".
        "retry_some_errors": Documented(
            "expressible", f"{DOCS}/core-concepts/tasks.html#special-exceptions"
        ),
        # on_failure_callback "when the task fails", on_retry_callback "when it goes up for retry".
        "hook_on_retries": Documented(
            "last only",
            f"{DOCS}/administration-and-deployment/logging-monitoring/callbacks.html",
        ),
    },
    "blocking_timeout": {
        # "If execution_timeout is breached, the task times out and AirflowTaskTimeout is raised"
        "sleep_in_task": Documented("interrupted", f"{DOCS}/core-concepts/tasks.html#timeouts"),
        # No "submit" in Airflow: every task instance's execute runs under the same SIGALRM
        # timeout on its process's main thread, whoever runs it (dag.test() or a worker).
        "sleep_submitted": Documented("interrupted", RUN_EXECUTE),
        # An async TaskFlow task is a BaseAsyncOperator: execute() runs aexecute() in an event
        # loop under asyncio.wait_for(execution_timeout), inside that SIGALRM timeout.
        "sleep_async": Documented(
            "interrupted", f"{SRC}/task-sdk/src/airflow/sdk/bases/operator.py#L1764-L1790"
        ),
    },
    "run_timeout": {
        # Under a scheduler running tasks are marked skipped at the timeout (SCHEDULER_TIMEOUT);
        # dag.test() never checks dagrun_timeout, so its task runs to its end.
        "task_stopped": Documented("ran on", TEST_LOOP),
    },
    "map_then_reduce": {
        # The reducer gets a lazy sequence of the XComs that exist: failed instances push none.
        "reducer_receives": Documented(
            "the successes only",
            f"{DOCS}/authoring-and-scheduling/dynamic-task-mapping.html",
        ),
    },
    "rerun_completed": {
        # Clearing the failed tasks re-runs them; the succeeded ones keep their state.
        "first_again": Documented("not again", f"{DOCS}/core-concepts/dag-run.html#re-run-tasks"),
        # Clearing only failed clears FAILED and UPSTREAM_FAILED instances: `third` runs.
        "after_the_fixed": Documented(
            "runs", f"{SRC}/airflow-core/src/airflow/serialization/definitions/dag.py#L1296-L1298"
        ),
    },
    "hooks_in_test_mode": {
        key: Documented("fires", f"{DOCS}/core-concepts/debug.html")
        for key in ("task_hook", "flow_hook")
    },
}


def start(workdir: Path) -> None:
    """A metadata database migrated under `workdir` (`airflow db migrate`), then import Airflow."""
    home = (workdir / "airflow-home").resolve()
    # A fresh metadata database each time: an earlier session's runs must not be read back.
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    # The probes fail tasks on purpose: their tracebacks are logged at ERROR.
    load_module("airflow/airflow_home.py").migrate_then_import(home, DAGS_FOLDER, "CRITICAL")


def stop() -> None:
    from airflow import settings

    if settings.engine is not None:
        settings.engine.dispose()


# --- running and reading back ---


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    if bag.import_errors:
        raise RuntimeError(f"the probe DAG file failed to import: {bag.import_errors}")
    return bag.dags[dag_id]


def _test(dag_id: str, out: Path) -> tuple[Any, str]:
    """One dag.test() run of `dag_id` with `out` as its folder; the DAG and the run id."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    out.mkdir(parents=True, exist_ok=True)
    # Airflow's parsing context: the DAG file builds only this DAG, also in dag.test()'s re-parse.
    os.environ[_AIRFLOW_PARSING_CONTEXT_DAG_ID] = dag_id
    try:
        dag = _dag(dag_id)
        return dag, dag.test(run_conf={"out": str(out)}).run_id
    finally:
        del os.environ[_AIRFLOW_PARSING_CONTEXT_DAG_ID]


def _read(dag_id: str, run_id: str) -> tuple[dict[str, str], dict[str, int]]:
    """{task: state} (with the DAG run's as `dag_run`) and {task: try_number}, from the database.
    Mapped instances are `task[i]`.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).one()
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        states, tries = {"dag_run": str(run.state)}, {}
        for ti in sorted(tis, key=lambda t: (t.task_id, t.map_index)):
            key = f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id
            states[key] = str(ti.state)
            tries[key] = ti.try_number
        return states, tries


def _events(out: Path, event: str | None = None) -> list[dict[str, Any]]:
    path = out / "events.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if event is None or e["event"] == event]


def _runs(out: Path, task: str) -> int:
    """How many times the body of `task` started, from its own event lines."""
    return sum(1 for e in _events(out) if e.get("task") == task and e["event"] in ("run", "start"))


def _callbacks(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in _events(out, "callback"):
        dag_level = e["hook"].startswith("dag.")
        name = e["hook"] if dag_level or not e["task"] else f"{e['task']}.{e['hook']}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _resume(dag: Any, run_id: str, task_ids: list[str] | None, downstream: bool) -> None:
    """Clear task instances of a finished DAG run and drive the same run again with the
    harness's resume loop (dag.test() cannot re-drive an existing run): task_ids None clears the
    run's failed ones, as the UI's "Clear" of a DAG run; else those tasks, with or without their
    downstream.
    """
    adapter = load_module("airflow/adapter.py")
    adapter.resume_dag_run(dag, run_id, task_ids=task_ids, downstream=downstream)


# --- the probes ---


def _handled_failure(workdir: Path) -> dict[str, Observation]:
    answers = {}
    for key, leaf in (
        ("return_none", "handle"),
        ("return_value", "handle"),
        ("cleanup_leaf", "cleanup"),
    ):
        out = workdir / key
        dag_id = f"probe_handled_{key}"
        started = time.monotonic()
        _, run_id = _test(dag_id, out)
        native, tries = _read(dag_id, run_id)
        how = {
            "return_none": "a downstream `handle` task with trigger_rule=one_failed (Airflow's "
            "catch: the DAG function only declares tasks and never runs at run time) returns None",
            "return_value": "a downstream `handle` task with trigger_rule=one_failed returns "
            "'recovered' (a DAG has no return value; a task's goes to XCom)",
            "cleanup_leaf": "`cleanup` with trigger_rule=all_done after `boom`",
        }[key]
        answers[key] = Observation(
            answer={"success": "completed", "failed": "failed"}.get(native["dag_run"], "?"),
            native=native,
            attempts=tries,
            seconds={"dag_test": round(time.monotonic() - started, 2)},
            note=f"{how}; `boom` {native['boom']}, `{leaf}` {native[leaf]} (its body ran "
            f"{_runs(out, leaf)}x); the DAG run ended {native['dag_run']}: its leaves decide",
        )
    return answers


def _two_hops_down(workdir: Path) -> dict[str, Observation]:
    meaning = {
        "upstream_failed": "not run (upstream failed)",
        "failed": "failed",
        "skipped": "skipped",
        "success": "ran",
    }
    how = {
        "after_failure": "`a` raises ValueError; b and c keep the default trigger rule all_success",
        "after_skip": "`a` raises AirflowSkipException; b and c keep the default trigger rule "
        "all_success",
        "failed_argument": "`a` raises ValueError; `b(out, a(out))` takes a's XComArg as its "
        "argument (default all_success), c follows b",
        "tolerant_grandchild": "`a` raises ValueError; b has the default all_success, "
        "c trigger_rule=all_done",
    }
    subject = {"failed_argument": "b"}  # the task each question asks about; else `c`
    answers = {}
    for key in how:
        out = workdir / key
        dag_id = f"probe_two_hops_{key}"
        _, run_id = _test(dag_id, out)
        native, tries = _read(dag_id, run_id)
        task_id = subject.get(key, "c")
        state = native.get(task_id)
        answer = "never created" if state is None else meaning.get(state, "?")
        if state in ("skipped", "upstream_failed") and _runs(out, task_id):
            answer = "ran"
        b_values = [e.get("value") for e in _events(out) if e.get("task") == "b"]
        answers[key] = Observation(
            answer=answer,
            native=native,
            attempts=tries,
            note=f"{how[key]}: a {native['a']}, b {native['b']}, c {native['c']}; bodies ran: "
            f"b {_runs(out, 'b')}x, c {_runs(out, 'c')}x"
            + (f" (b was given {b_values})" if b_values and key == "failed_argument" else "")
            + (
                ". The argument is the dependency: b never runs, so it never sees a value "
                "(no Prefect-style allow_failure; a trigger_rule=all_done b would get None, "
                "as the failed a pushed no XCom)"
                if key == "failed_argument"
                else ""
            )
            + (
                ". upstream_failed counts as done for all_done, so c runs"
                if key == "tolerant_grandchild" and answer == "ran"
                else ""
            ),
        )
    return answers | _joins(workdir, meaning)


def _joins(workdir: Path, meaning: dict[str, str]) -> dict[str, Observation]:
    """One DAG run: `s` raises AirflowSkipException, `f` raises, a join per trigger rule."""
    out = workdir / "joins"
    _, run_id = _test("probe_two_hops_joins", out)
    native, tries = _read("probe_two_hops_joins", run_id)
    answers = {}
    for rule in ("join_default", "join_none_failed", "join_one_failed", "join_all_done"):
        state = native.get(rule)
        answer = "never created" if state is None else meaning.get(state, "?")
        trigger_rule = "all_success" if rule == "join_default" else rule.removeprefix("join_")
        answers[rule] = Observation(
            answer="ran" if _runs(out, rule) else answer,
            native={key: native[key] for key in ("dag_run", "s", "f", rule)},
            attempts={rule: tries[rule]},
            note=f"[s, f] >> {rule} with trigger_rule={trigger_rule}; `s` raises "
            f"AirflowSkipException, `f` raises ValueError: {rule} ended {state}, its body ran "
            f"{_runs(out, rule)}x",
        )
    return answers


def _retry_gaps(out: Path, task: str) -> list[float]:
    """Seconds from the end of each failed try to the start of the next, from the task body."""
    marks = {(e["event"], e["attempt"]): e["t"] for e in _events(out) if e.get("task") == task}
    return [
        round(marks[("start", n + 1)] - marks[("end", n)], 3)
        for n in range(1, 4)
        if ("end", n) in marks and ("start", n + 1) in marks
    ]


def _retry_semantics(workdir: Path) -> dict[str, Observation]:
    out = workdir / "retries"
    _, run_id = _test("probe_retries", out)
    native, tries = _read("probe_retries", run_id)
    callbacks = _callbacks(out)
    gaps, control = _retry_gaps(out, "flaky"), _retry_gaps(out, "prompt")
    seconds = {f"flaky_gap_{i + 1}": g for i, g in enumerate(gaps)}
    seconds |= {f"prompt_gap_{i + 1}": g for i, g in enumerate(control)}
    # 1 s delay: waited if every gap is >= 0.9 s; the 0-delay control shows what the loop adds.
    waited = len(gaps) == 2 and min(gaps) >= 0.9
    delay = Observation(
        answer="waited" if waited else "not waited",
        native={"flaky": native["flaky"], "prompt": native["prompt"]},
        attempts={"flaky": tries["flaky"], "prompt": tries["prompt"]},
        seconds=seconds,
        note="`flaky` (retries=2, retry_delay=1 s) fails on tries 1 and 2; gaps from the end of "
        f"a failed try to the next start, timed in the body: {gaps} s; the control `prompt` "
        f"(retry_delay=0) {control} s. dag.test() holds an up_for_retry instance until its "
        "delay passes (it sleeps 1 s per idle pass, so a delay is rounded up to whole passes)",
    )
    picky_runs = _runs(out, "picky")
    some = Observation(
        answer="expressible"
        if native["picky"] == "failed" and tries["picky"] == 1 and picky_runs == 1
        else NOT_EXPRESSIBLE,
        native={"picky": native["picky"], "flaky": native["flaky"]},
        attempts={"picky": tries["picky"], "flaky": tries["flaky"]},
        note="`picky` (retries=2) turns a KeyError into AirflowFailException and re-raises a "
        f"ConnectionError: it ended {native['picky']} at try {tries['picky']} (body ran "
        f"{picky_runs}x), while `flaky`'s ValueError was retried to try {tries['flaky']}. Airflow "
        "has no retry-on-exception-type option: the task body decides",
    )
    failure = callbacks.get("doomed.on_failure_callback", 0)
    retry = callbacks.get("doomed.on_retry_callback", 0)
    hook = Observation(
        answer="last only" if failure == 1 else "every try",
        native={"doomed": native["doomed"]},
        attempts={"doomed": tries["doomed"]},
        callbacks={"on_failure_callback": failure, "on_retry_callback": retry},
        note=f"`doomed` (retries=2) failed {tries['doomed']} tries: on_failure_callback fired "
        f"{failure}x (after the last), on_retry_callback {retry}x (after each earlier try)",
    )
    return {"delay_waited": delay, "retry_some_errors": some, "hook_on_retries": hook}


def _blocking_timeout(workdir: Path) -> dict[str, Observation]:
    out = workdir / "sleep"
    _, run_id = _test("probe_blocking_timeout", out)
    native, tries = _read("probe_blocking_timeout", run_id)
    seen: dict[str, tuple[str, dict[str, float], str]] = {}
    for task_id in ("sleepy", "sleepy_async"):
        events = [e for e in _events(out) if e.get("task") == task_id]
        start = next((e["t"] for e in events if e["event"] == "start"), None)
        ends = [e["t"] for e in events if e["event"] == "end"]
        failed = [e for e in events if e["event"] == "callback"]
        seconds = {}
        if start is not None and ends:
            seconds["body_to_end"] = round(ends[0] - start, 2)
        if start is not None and failed:
            seconds["start_to_failure_callback"] = round(failed[0]["t"] - start, 2)
        exception = failed[0]["exception"] if failed else "none"
        # Stopped if the body never reached the line after its 3 s sleep.
        answer = "ran on" if ends else "interrupted"
        if start is None:
            answer = NOT_EXPRESSIBLE  # the body never started: the task cannot be asked
        seen[task_id] = (answer, seconds, exception)
    answer, seconds, exception = seen["sleepy"]
    native_sync = {k: v for k, v in native.items() if k != "sleepy_async"}
    async_answer, async_seconds, async_exception = seen["sleepy_async"]
    in_task = (
        f"`sleepy` (execution_timeout=1 s) calls time.sleep(3): it ended {native['sleepy']}, "
        f"the line after the sleep {'ran' if answer == 'ran on' else 'never ran'}, its "
        f"on_failure_callback saw {exception} (a SIGALRM in the task's process; dag.test() "
        "runs it on the main thread)"
    )
    return {
        "sleep_in_task": Observation(
            answer=answer,
            native=native_sync,
            attempts={"sleepy": tries["sleepy"]},
            seconds=seconds,
            note=in_task,
        ),
        "sleep_submitted": Observation(
            answer=answer,
            native=native_sync,
            attempts={"sleepy": tries["sleepy"]},
            seconds=seconds,
            note="The question collapses in Airflow: a DAG function only declares tasks and "
            "never calls one in place, so there is nothing to submit beside it; every task is "
            "a task instance the runner executes, and task_runner's _run_execute_callable "
            f"wraps every execute in the same SIGALRM timeout ({RUN_EXECUTE}). Under dag.test() "
            "that is run_task_in_process on the calling main thread; under an executor (or "
            "dag.test(use_executor=True), which needs a running API server, not tried here) a "
            "separate task process whose main thread runs the body the same way. So this is "
            f"the same `sleepy` run as sleep_in_task: {in_task}",
        ),
        "sleep_async": Observation(
            answer=async_answer,
            native={"dag_run": native["dag_run"], "sleepy_async": native["sleepy_async"]},
            attempts={"sleepy_async": tries["sleepy_async"]},
            seconds=async_seconds,
            note="`sleepy_async` is an `async def` TaskFlow task (supported since Airflow 3.2: "
            "PythonOperator is a BaseAsyncOperator and runs the coroutine in an event loop on "
            "the worker, under asyncio.wait_for(execution_timeout) inside the SIGALRM timeout), "
            f"execution_timeout=1 s, awaits asyncio.sleep(3): it ended {native['sleepy_async']}, "
            f"the line after the await "
            f"{'ran' if async_answer == 'ran on' else 'never ran'}, its on_failure_callback saw "
            f"{async_exception}",
        ),
    }


def _run_timeout(workdir: Path) -> dict[str, Observation]:
    out = workdir / "run"
    started = time.monotonic()
    _, run_id = _test("probe_run_timeout", out)
    took = time.monotonic() - started
    native, tries = _read("probe_run_timeout", run_id)
    ends = _events(out, "end")
    return {
        "task_stopped": Observation(
            answer="ran on" if ends else "stopped",
            native=native,
            attempts=tries,
            seconds={"dag_test": round(took, 2)},
            note=f"DAG dagrun_timeout=1 s, `slow` sleeps 3 s: the body "
            f"{'reached its end' if ends else 'never reached its end'}, `slow` ended "
            f"{native['slow']} and the DAG run {native['dag_run']}. dag.test() never checks "
            f"dagrun_timeout ({TEST_LOOP}); only the scheduler does, between its loops "
            f"({SCHEDULER_TIMEOUT}), failing the run and marking running tasks skipped",
        )
    }


def _map_then_reduce(workdir: Path) -> dict[str, Observation]:
    out = workdir / "map"
    _, run_id = _test("probe_map_reduce", out)
    native, tries = _read("probe_map_reduce", run_id)
    received = [e["values"] for e in _events(out, "received")]
    if not received:
        answer = "nothing: it does not run"
    elif received[0] == [2, 6]:
        answer = "the successes only"
    else:
        answer = "every position, the failure in its place"
    return {
        "reducer_receives": Observation(
            answer=answer,
            native=native,
            attempts=tries,
            note="`double` expanded over [1, 2, 3] raises for 2; `total` (trigger_rule=all_done) "
            f"received {received[0] if received else 'nothing'} (a LazyXComSequence: the failed "
            "instance pushed no XCom, so later positions shift); the DAG run ended "
            f"{native['dag_run']}",
        )
    }


def _rerun_completed(workdir: Path) -> dict[str, Observation]:
    ways = {
        "only_failed": (None, False, "cleared the run's failed tasks (only_failed=True)"),
        "second_alone": (["second"], False, "cleared `second` without downstream"),
        "second_down": (["second"], True, "cleared `second` with downstream"),
    }
    seen: dict[str, tuple[dict[str, str], dict[str, int], int, int]] = {}
    for way, (task_ids, downstream, _) in ways.items():
        out = workdir / way
        dag, run_id = _test("probe_rerun", out)
        before, _ = _read("probe_rerun", run_id)
        if before["second"] != "failed":
            raise RuntimeError(f"probe_rerun should fail at `second` first: {before}")
        _resume(dag, run_id, task_ids, downstream)
        native, tries = _read("probe_rerun", run_id)
        seen[way] = (native, tries, _runs(out, "first"), _runs(out, "third"))
    native, tries, first_runs, third_runs = seen["only_failed"]
    others = "; ".join(
        f"{ways[w][2]}: first ran {seen[w][2]}x, second {seen[w][0]['second']}, "
        f"third {seen[w][0]['third']} (try {seen[w][1]['third']}, body ran {seen[w][3]}x), "
        f"run {seen[w][0]['dag_run']}"
        for w in ("second_alone", "second_down")
    )
    return {
        "first_again": Observation(
            answer="runs again" if first_runs > 1 else "not again",
            native=native,
            attempts=tries,
            note="`first` >> `second` (fails on its first run) >> `third`; dag.test() cannot "
            "resume a run, so the same DAG run was cleared and driven again with dag.test()'s "
            "own per-task runner (private _run_task, as airflow/adapter.py). "
            f"{ways['only_failed'][2]}: first's body ran {first_runs}x (try {tries['first']}), "
            f"second try {tries['second']}, third {native['third']}, run {native['dag_run']}. "
            f"Also {others}",
        ),
        "after_the_fixed": Observation(
            answer="runs" if native["third"] == "success" and third_runs else "stays not run",
            native=native,
            attempts=tries,
            note="`third` was upstream_failed in the failed run (its body never ran). "
            f"{ways['only_failed'][2]}, which clears FAILED and UPSTREAM_FAILED instances "
            f"alike: third ended {native['third']} at try {tries['third']}, its body ran "
            f"{third_runs}x, the run {native['dag_run']}. The task Clear of `second` alone "
            "instead leaves third upstream_failed, with downstream it clears third too: "
            f"{others}",
        ),
    }


def _hooks_in_test_mode(workdir: Path) -> dict[str, Observation]:
    out = workdir / "hooks"
    _, run_id = _test("probe_hooks", out)
    native, tries = _read("probe_hooks", run_id)
    callbacks = _callbacks(out)
    task_n = callbacks.get("failing.on_failure_callback", 0)
    dag_n = callbacks.get("dag.on_failure_callback", 0)
    reasons = [e["reason"] for e in _events(out, "callback") if e["hook"].startswith("dag.")]
    how = "`failing` with on_failure_callback in a DAG with on_failure_callback, run by dag.test()"
    return {
        "task_hook": Observation(
            answer="fires" if task_n else "does not fire",
            native=native,
            attempts=tries,
            callbacks={"on_failure_callback": task_n},
            note=f"{how}: the task's callback fired {task_n}x",
        ),
        "flow_hook": Observation(
            answer="fires" if dag_n else "does not fire",
            native=native,
            attempts=tries,
            callbacks={"dag on_failure_callback": dag_n},
            note=f"{how}: the DAG's callback fired {dag_n}x, reason {reasons} (dag.test() "
            "hands the DAG file's callbacks to its run, as serialization drops them; they run "
            "in this process)",
        ),
    }


PROBES = {
    "handled_failure": _handled_failure,
    "two_hops_down": _two_hops_down,
    "retry_semantics": _retry_semantics,
    "blocking_timeout": _blocking_timeout,
    "run_timeout": _run_timeout,
    "map_then_reduce": _map_then_reduce,
    "rerun_completed": _rerun_completed,
    "hooks_in_test_mode": _hooks_in_test_mode,
}


def run(probe: str, workdir: Path) -> dict[str, Observation]:
    """The probe's DAGs under dag.test(), each answer read back from the metadata database."""
    # The event files are appended to: an earlier session's lines would be counted again.
    shutil.rmtree(workdir, ignore_errors=True)
    return PROBES[probe](workdir)
