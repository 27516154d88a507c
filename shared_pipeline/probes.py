"""Semantics probes: the failure-handling behaviours people trip on, each a question with the
answers an engine may give. The spec asks and prescribes no answer; each wiring's probes.py
answers with a tiny flow of its own and declares the answer its engine documents, with a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

PROBE_SCHEMA = 1
NOT_EXPRESSIBLE = "not expressible"  # a result, with its reason in the observation's note


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    asks: str  # the question, as a reader would put it
    answers: tuple[str, ...]  # what an engine may answer (NOT_EXPRESSIBLE is always possible)


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    lesson: str  # the report lesson it joins
    setup: str  # what the probe's flow does, the same in every engine
    questions: tuple[Question, ...]
    threads: tuple[str, ...] = ()  # the issue threads where people argue about it


class Observation(BaseModel):
    """What one engine answered to one question, read back from its own store."""

    model_config = ConfigDict(extra="forbid")

    answer: str
    native: dict[str, str] = Field(default_factory=dict)  # task or run -> native state
    attempts: dict[str, int] = Field(default_factory=dict)  # task -> attempts, as counted
    callbacks: dict[str, int] = Field(default_factory=dict)  # hook or callback -> times fired
    seconds: dict[str, float] = Field(default_factory=dict)  # what was timed -> seconds
    note: str = ""  # how it was asked in this engine; the reason when not expressible


class DocumentedAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str
    doc: str


class ProbeRecord(BaseModel):
    """results/probes/<engine>/<probe>.json: one engine's answers to one probe."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = PROBE_SCHEMA
    engine: str
    engine_version: str
    python_version: str
    probe: str
    created_at: datetime
    machine: str | None = None
    answers: dict[str, Observation]  # question key -> observation
    # What the wiring declares its engine documents (the suite fails where the two differ).
    documented: dict[str, DocumentedAnswer] = Field(default_factory=dict)


@dataclass(frozen=True)
class Documented:
    """The answer an engine documents for a question, and where it says so."""

    answer: str
    doc: str


def _q(key: str, asks: str, *answers: str) -> Question:
    return Question(key=key, asks=asks, answers=answers)


FINAL, FAILED = "completed", "failed"
NOT_RUN, NEVER, SKIPPED, RAN = "not run (upstream failed)", "never created", "skipped", "ran"
JOIN = (RAN, NOT_RUN, SKIPPED)
DEPENDS = "depends on the runner"  # the engine ships runners that answer differently

PROBES: tuple[Probe, ...] = (
    Probe(
        id="handled_failure",
        title="A failure the flow handled: what decides the run's final state",
        lesson="final-state",
        setup="task `boom` raises; the flow goes on without raising it",
        questions=(
            _q("return_none", "The flow catches the failure and returns None", FINAL, FAILED),
            _q("return_value", "The flow catches the failure and returns a value", FINAL, FAILED),
            _q(
                "cleanup_leaf",
                "After `boom`, a last task `cleanup` that runs whatever happened succeeds",
                FINAL,
                FAILED,
            ),
        ),
        threads=(
            "https://github.com/apache/airflow/issues/15468",
            "https://github.com/PrefectHQ/prefect/issues/14470",
            "https://github.com/PrefectHQ/prefect/issues/16373",
        ),
    ),
    Probe(
        id="two_hops_down",
        title="Failure and skip two hops down",
        lesson="downstream",
        setup="`a` -> `b` -> `c` with the engine's default dependencies, unless a question says "
        "otherwise; for a join, `c` has two parents: `s`, skipped on purpose, and `f`, which fails",
        questions=(
            _q("after_failure", "`a` fails: what becomes of `c`", NOT_RUN, FAILED, NEVER),
            _q("after_skip", "`a` is skipped on purpose: what becomes of `c`", SKIPPED, RAN, NEVER),
            _q(
                "failed_argument",
                "`b` is given the result of a failed `a` as its argument: what becomes of `b`",
                NOT_RUN,
                FAILED,
                NEVER,
            ),
            _q(
                "tolerant_grandchild",
                "`a` fails so `b` does not run; `c`, declared to run whatever its upstream did "
                "(all_done, all_finished, allow_failure), waits on `b`: does `c` run",
                RAN,
                NOT_RUN,
                SKIPPED,
                NEVER,
            ),
            _q("join_default", "A join with the default rule: does `c` run", *JOIN),
            _q(
                "join_none_failed",
                "A join declared to run unless a parent failed (none_failed): does `c` run",
                *JOIN,
            ),
            _q(
                "join_one_failed",
                "A join declared to run when a parent failed (one_failed, any_failed): does `c` "
                "run",
                *JOIN,
            ),
            _q(
                "join_all_done",
                "A join declared to run whatever its parents did (all_done, all_finished, "
                "allow_failure): does `c` run",
                *JOIN,
            ),
        ),
        threads=(
            "https://github.com/PrefectHQ/prefect/issues/22918",
            "https://github.com/PrefectHQ/prefect/issues/21117",
        ),
    ),
    Probe(
        id="retry_semantics",
        title="Retries: the delay, which errors, and which hooks fire",
        lesson="retries",
        setup="task `flaky` fails twice then succeeds, 1 retry delay of 1 s (`waits`); task "
        "`doomed` always fails with 2 retries and a failure hook",
        questions=(
            _q(
                "delay_waited",
                "Is the configured retry delay really waited",
                "waited",
                "not waited",
            ),
            _q(
                "retry_some_errors",
                "Can a task retry on one exception type and fail at once on another",
                "expressible",
            ),
            _q(
                "hook_on_retries",
                "Does the failure hook fire on each failed try, or only on the last",
                "last only",
                "every try",
            ),
        ),
        threads=(
            "https://github.com/PrefectHQ/prefect/issues/5139",
            "https://github.com/PrefectHQ/prefect/issues/7576",
            "https://github.com/apache/airflow/issues/56942",
            "https://github.com/PrefectHQ/prefect/issues/8605",
        ),
    ),
    Probe(
        id="blocking_timeout",
        title="A task timeout against a blocking sleep",
        lesson="timeouts",
        setup="a task with a 1 s timeout calls time.sleep(3); an async one awaits asyncio.sleep(3)",
        questions=(
            _q("sleep_in_task", "Is the sleep interrupted at the timeout", "interrupted", "ran on"),
            _q(
                "sleep_submitted",
                "The same task submitted to the task runner (run beside the flow, not in place), "
                "on each runner the engine ships for that",
                "interrupted",
                "ran on",
                DEPENDS,
            ),
            _q(
                "sleep_async",
                "An async task awaiting asyncio.sleep(3) under the same 1 s timeout",
                "interrupted",
                "ran on",
            ),
        ),
    ),
    Probe(
        id="run_timeout",
        title="A run-level timeout: what happens to a task still running",
        lesson="timeouts",
        setup="the run has a 1 s timeout; its one task sleeps 3 s",
        questions=(
            _q(
                "task_stopped",
                "Is the running task stopped at the run's timeout",
                "stopped",
                "ran on",
            ),
        ),
        threads=(
            "https://github.com/apache/airflow/issues/12912",
            "https://github.com/apache/airflow/issues/30264",
        ),
    ),
    Probe(
        id="map_then_reduce",
        title="Mapping: one element fails, then a reduce step",
        lesson="fanout",
        setup="`double` mapped over [1, 2, 3] fails for 2; `total` reduces whatever there is",
        questions=(
            _q(
                "reducer_receives",
                "What does the reducer receive",
                "the successes only",
                "every position, the failure in its place",
                "nothing: it does not run",
            ),
        ),
        threads=(
            "https://github.com/PrefectHQ/prefect/issues/12028",
            "https://github.com/apache/airflow/issues/54514",
        ),
    ),
    Probe(
        id="rerun_completed",
        title="Resume: does re-running a failed run execute its completed tasks again",
        lesson="resume",
        setup="`first` succeeds, `second` fails once, `third` follows `second`; the failed run "
        "is then re-run the engine's way",
        questions=(
            _q("first_again", "Does `first` run again", "runs again", "not again"),
            _q(
                "after_the_fixed",
                "`third`, after `second`, was not run in the failed run: does it run now",
                "runs",
                "stays not run",
            ),
        ),
        threads=(
            "https://github.com/PrefectHQ/prefect/issues/9814",
            "https://github.com/apache/airflow/issues/31510",
        ),
    ),
    Probe(
        id="hooks_in_test_mode",
        title="Hooks and callbacks in the local test mode",
        lesson="notifications",
        setup="a failing task with a failure hook, and a flow failure hook, run the way a "
        "developer "
        "tries a flow locally",
        questions=(
            _q("task_hook", "Does the task's failure hook fire", "fires", "does not fire"),
            _q("flow_hook", "Does the run's failure hook fire", "fires", "does not fire"),
        ),
        threads=("https://github.com/apache/airflow/issues/30965",),
    ),
)
PROBE_IDS = {probe.id: probe for probe in PROBES}


def probe_path(results: Path, engine: str, probe: str) -> Path:
    """results/probes/<engine>/<probe>.json (beside the run records, not among them)."""
    return results / "probes" / engine / f"{probe}.json"


def read_probe(path: Path) -> ProbeRecord:
    return ProbeRecord.model_validate_json(path.read_text())
