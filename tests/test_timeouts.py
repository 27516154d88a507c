"""A hang inside one blocking call against a loop that stops making progress: which timeouts stop
the work (a signal on the main thread) and which only label it late (an exception raised into a
thread, which waits for the blocked call to return).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pipeline_support import SMALL, prepare_run_dir, unenriched_features

from shared_pipeline import steps
from shared_pipeline.conformance import check_record
from shared_pipeline.context import RunContext
from shared_pipeline.control import StepTimeout, time_limit
from shared_pipeline.enrichment_api import STALL_PATH, EnrichmentAPI
from shared_pipeline.faults import HangCapReached, read_attempt_log
from shared_pipeline.faults_plan import FaultKind, FaultRule
from shared_pipeline.records import RunRecord
from shared_pipeline.timeouts import record_verdicts, summary

LINEAR = {"key": "linear", "model": "linear"}


@pytest.fixture
def api() -> Iterator[EnrichmentAPI]:
    with EnrichmentAPI() as running:
        yield running


@pytest.fixture
def hanging_train(tmp_path: Path, api: EnrichmentAPI) -> Callable[..., tuple[RunContext, dict]]:
    def make(kind: FaultKind, cap: float) -> tuple[RunContext, dict]:
        ctx = prepare_run_dir(
            tmp_path / "run",
            api,
            settings=SMALL.model_copy(update={"hang_cap_s": cap}),
            faults=(FaultRule(step="train", kind=kind),),
        )
        return ctx, unenriched_features(ctx)

    return make


def train_rows(ctx: RunContext) -> list[dict]:
    return [row for row in read_attempt_log(ctx.run_dir) if row["step"] == "train"]


def train_in_thread_and_raise_into_it(
    ctx: RunContext, features: dict, after_s: float
) -> tuple[BaseException | None, float]:
    """Run training in a thread and raise TimeoutError into it after `after_s`, as thread-based
    engine timeouts do (PyThreadState_SetAsyncExc). Returns what the thread raised, and when.
    """
    caught: list[BaseException] = []

    def body() -> None:
        try:
            steps.train(ctx.run_dir, features, LINEAR)
        except BaseException as exc:  # the injected exception is what we want to see
            caught.append(exc)

    worker = threading.Thread(target=body)
    started = time.monotonic()
    worker.start()
    time.sleep(after_s)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(worker.ident), ctypes.py_object(TimeoutError)
    )
    worker.join(30)
    assert not worker.is_alive()
    return (caught[0] if caught else None), time.monotonic() - started


@pytest.mark.timeout(60)
def test_block_waits_in_one_read_until_the_cap(hanging_train, api: EnrichmentAPI) -> None:
    ctx, features = hanging_train(FaultKind.BLOCK, cap=0.5)

    with pytest.raises(HangCapReached, match="hung for 0.5 s"):
        steps.train(ctx.run_dir, features, LINEAR)

    (row,) = train_rows(ctx)
    assert (row["fault"], row["outcome"]) == ("block", "hang_cap_reached")
    # The server really accepted the request and kept it without answering.
    assert [path for _, path in api.requests_seen] == [STALL_PATH]


@pytest.mark.timeout(60)
def test_sigalrm_interrupts_the_blocked_read_on_the_main_thread(hanging_train) -> None:
    ctx, features = hanging_train(FaultKind.BLOCK, cap=5.0)

    started = time.monotonic()
    with pytest.raises(StepTimeout), time_limit(0.3):
        steps.train(ctx.run_dir, features, LINEAR)
    elapsed = time.monotonic() - started

    assert elapsed < 5.0  # stopped inside the read, long before it would give up by itself
    (row,) = train_rows(ctx)
    assert row["outcome"] == "failed"
    assert row["error"].startswith("StepTimeout: ")


@pytest.mark.timeout(60)
def test_an_exception_raised_into_a_thread_waits_for_the_blocked_call(hanging_train) -> None:
    ctx, features = hanging_train(FaultKind.BLOCK, cap=1.5)

    raised, elapsed = train_in_thread_and_raise_into_it(ctx, features, after_s=0.2)

    assert raised is not None
    assert elapsed >= 1.5  # the read ran to its own deadline before anything could land
    (row,) = train_rows(ctx)
    assert row["outcome"] == "hang_cap_reached"


@pytest.mark.timeout(60)
def test_an_exception_raised_into_a_thread_stops_a_python_loop(hanging_train) -> None:
    ctx, features = hanging_train(FaultKind.HANG, cap=5.0)

    raised, elapsed = train_in_thread_and_raise_into_it(ctx, features, after_s=0.2)

    assert isinstance(raised, TimeoutError)
    assert elapsed < 5.0  # it landed between two statements of the loop
    (row,) = train_rows(ctx)
    assert (row["outcome"], row["error"]) == ("failed", "TimeoutError: ")


# The control's conformance runs (tests/test_conformance.py, the tests session), read again here.


def test_the_control_interrupts_both_kinds_of_hang(scenario_run) -> None:
    for scenario in ("train_hangs", "train_blocks"):
        record = scenario_run(scenario)
        (verdicts,) = record_verdicts(record)
        assert [v.interrupted for v in verdicts] == [True, True, True]
        assert summary(verdicts) == "interrupted ×3"


def _ran_to_cap(record: RunRecord, late_s: float) -> RunRecord:
    """`record` as if the timeout had only been declared when the hang ended `late_s` late."""
    changed = record.model_copy(deep=True)
    run = changed.runs[0]
    for entry in run.attempt_log:
        if entry.fault == "block":
            entry.outcome = "hang_cap_reached"
            task = run.task(entry.task)
            assert task is not None
            declared = entry.started + timedelta(seconds=changed.settings["train_timeout_s"])
            entry.ended = declared + timedelta(seconds=late_s)
            for state in task.native_history:
                state.at = entry.ended
    return changed


def test_conformance_and_summary_tell_a_late_label_from_an_interruption(scenario_run) -> None:
    late = _ran_to_cap(scenario_run("train_blocks"), late_s=3.0)

    *problems, where = check_record(late)
    assert len(problems) == 3
    assert all("ran to the hang cap" in p for p in problems)
    assert where.startswith("where to fix:") and "shared_pipeline/scenarios.py" in where
    (verdicts,) = record_verdicts(late)
    assert summary(verdicts) == "labelled late by 3.0 s (×3)"
