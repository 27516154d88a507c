"""The plain-Python control: the same pipeline with retries, timeouts, fallbacks, checkpoints and
notifications written by hand ("negative engineering"), to weigh against each engine.
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared_pipeline import schedule, steps
from shared_pipeline.context import load_context
from shared_pipeline.harness import EngineRun
from shared_pipeline.notifications import notify
from shared_pipeline.records import Limitation, NativeState, TaskRecord
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, StepState, task_state

# The control's own ledger words for how a step ended, onto the shared vocabulary.
LEDGER_STATES = {
    "succeeded": StepState.COMPLETED,
    "failed": StepState.FAILED,
    "timed out": StepState.TIMED_OUT,
    "skipped": StepState.SKIPPED,
    "from checkpoint": StepState.CACHED,
}


# report: begin timeout
class StepTimeout(Exception):
    """Raised by our own SIGALRM handler when a step runs past its budget."""


# report: end timeout


class StepFailed(Exception):
    """A step failed for good (after its retries)."""


# report: begin timeout
@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    # SIGALRM interrupts blocking Python code, but only on the main thread, one timer at a time.
    if not seconds:
        yield
        return

    def _expire(signum: int, frame: Any) -> None:
        raise StepTimeout(f"step ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        # report: end timeout


class Pipeline:
    """One flow run: calls the shared steps and keeps its own ledger of what happened."""

    def __init__(self, run_dir: str, due: datetime | None = None) -> None:
        self.run_dir = run_dir
        self.settings = load_context(run_dir).settings
        self.tasks: list[TaskRecord] = []
        # A run of the schedule trains on the month its due time closes, with checkpoints of
        # its own: a re-run of that month reuses them, another month's run does not.
        # report: begin schedule
        self.months = steps.run_months(run_dir, due)
        self.checkpoints = Path(run_dir) / "control-checkpoints"
        if due is not None:
            self.checkpoints /= f"{due:%Y-%m-%d}"
        # report: end schedule

    def _ledger(self, task: str, native: str, attempts: int, started: datetime) -> None:
        ended = datetime.now(UTC)
        self.tasks.append(
            TaskRecord.of(
                task,
                native_state=native,
                native_history=[NativeState(name=native, at=ended)],
                state=task_state(
                    LEDGER_STATES, native, attempts, "shared state for control ledger entry"
                ),
                attempts=attempts,
                started_at=started,
                ended_at=ended,
            )
        )

    def run(
        self,
        task: str,
        func: Callable[..., Any],
        *args: Any,
        retries: int = 0,
        retry_delay_s: float = 0.0,
        timeout_s: float | None = None,
        checkpoint: bool = False,
    ) -> Any:
        """Call one step with retries, a timeout and an optional checkpoint, by hand."""
        started = datetime.now(UTC)
        # report: begin resume
        saved = self.checkpoints / f"{task}.json"
        if checkpoint and saved.exists():
            self._ledger(task, "from checkpoint", 0, started)
            return json.loads(saved.read_text())
        # report: end resume
        # report: begin retries
        for attempt in range(1, retries + 2):
            try:
                # report: end retries
                # report: begin timeout
                with time_limit(timeout_s):
                    result = func(self.run_dir, *args)
            except StepTimeout as exc:
                # A timeout is not retried: the next attempt would hang just the same.
                self._fail(task, "timed out", attempt, started, exc)
                # report: end timeout
                # report: begin retries
            except Exception as exc:
                if attempt > retries:
                    self._fail(task, "failed", attempt, started, exc)
                time.sleep(retry_delay_s)
            else:
                # report: end retries
                # report: begin resume
                if checkpoint:
                    self.checkpoints.mkdir(parents=True, exist_ok=True)
                    saved.write_text(json.dumps(result))
                # report: end resume
                self._ledger(task, "succeeded", attempt, started)
                return result
        raise AssertionError("unreachable")

    def _fail(
        self, task: str, native: str, attempts: int, started: datetime, exc: BaseException
    ) -> None:
        self._ledger(task, native, attempts, started)
        # report: begin notifications
        notify(
            self.run_dir,
            NotificationEvent.TASK_FAILED,
            task=task,
            engine_state=native,
            message=f"{type(exc).__name__}: {exc}",
        )
        # report: end notifications
        raise StepFailed(task) from exc

    def skip(self, task: str) -> None:
        self._ledger(task, "skipped", 0, datetime.now(UTC))

    # The flows ---------------------------------------------------------------------------

    def prepare(self) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Extract, read, enrich (with fallback) and build features; returns them and `degraded`."""
        s = self.settings
        train_month, valid_month = self.months
        reads = {}
        for month in self.months:
            path = self.run(
                f"extract[{month}]",
                steps.extract,
                month,
                # report: begin retries
                retries=s.extract_retries,
                retry_delay_s=s.extract_retry_delay_s,
                # report: end retries
                # report: begin resume
                checkpoint=True,
                # report: end resume
            )
            reads[month] = self.run(f"read[{month}]", steps.read, month, path, checkpoint=True)
        # report: begin fallback
        try:
            enrichment = self.run(
                "enrich",
                steps.enrich,
                self.months,
                # report: end fallback
                # report: begin retries
                retries=s.enrich_retries,
                retry_delay_s=s.enrich_retry_delay_s,
                # report: end retries
                # report: begin fallback
                checkpoint=True,
            )
        except StepFailed:
            enrichment = None  # fall back: train without the optional features
        # report: end fallback
        features = self.run(
            "features",
            steps.features,
            reads[train_month],
            reads[valid_month],
            enrichment,
            checkpoint=True,
        )
        return reads[train_month], features, enrichment is None

    def finish(self, train_read: dict, features: dict, evaluation: dict) -> None:
        # report: begin quality_gate
        verdict = self.run("gate", steps.gate, train_read, evaluation)
        if verdict["passed"]:
            self.run("register", steps.register, features, evaluation)
        else:
            self.skip("register")
        # report: end quality_gate

    def train_flow(self) -> bool:
        train_read, features, degraded = self.prepare()
        # report: begin fanout
        trained = []
        for candidate in steps.plan_candidates(self.run_dir, features):
            with contextlib.suppress(StepFailed):  # one bad branch must not sink the others
                trained.append(
                    self.run(
                        f"train[{candidate['key']}]",
                        steps.train,
                        features,
                        candidate,
                        # report: end fanout
                        # report: begin timeout
                        timeout_s=self.settings.train_timeout_s,
                        # report: end timeout
                        # report: begin fanout
                    )
                )
        if not trained:
            raise StepFailed("no candidate trained")
        # report: end fanout
        evaluation = self.run("evaluate", steps.evaluate, features, trained)
        self.finish(train_read, features, evaluation)
        return degraded

    def retrain_flow(self) -> bool:
        train_read, features, degraded = self.prepare()
        # report: begin loop
        round_number = 0
        while True:
            round_number += 1
            candidate = steps.retrain_candidate(self.run_dir, round_number)
            model = self.run(
                f"train[{candidate['key']}]",
                steps.train,
                features,
                candidate,
                timeout_s=self.settings.train_timeout_s,
            )
            evaluation = self.run(
                f"evaluate[{candidate['key']}]",
                steps.evaluate,
                features,
                [model],
                candidate["key"],
            )
            if steps.good_enough(self.run_dir, evaluation, round_number):
                break
        # report: end loop
        self.finish(train_read, features, evaluation)
        return degraded


class ControlAdapter:
    """Engine adapter for the control: its ledger is the only state store it has."""

    name = "python"
    runtime = "test mode"  # a plain Python program has no other
    version = platform.python_version()
    limitations = [
        Limitation(
            feature="task states",
            reason="plain Python has no state store; this ledger is written by the same code "
            "that runs the steps",
            workaround="the ledger is kept next to the steps' own attempt log and cross-checked",
        ),
        Limitation(
            feature="timeouts",
            reason="SIGALRM only works on the main thread and cannot stop C code that ignores "
            "signals",
            workaround="steps run sequentially on the main thread",
        ),
    ]

    in_process = True  # the flow runs in the calling process: a kill of it is a kill of this

    def __init__(self, out: Path | None = None) -> None:
        """The control keeps no state outside each run directory; `out` is not needed."""

    def close(self) -> None:
        """Nothing to stop."""

    def run_flow(self, run_dir: str, flow: str, resume: bool = False) -> EngineRun:
        # A resumed run needs nothing else: every run reads the checkpoints the last one left.
        return self._run(run_dir, flow)

    # report: begin schedule
    def backfill(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """No scheduler: cron would start each month's run when it is due, and a backfill is a
        loop over the due times that were missed, one month at a time.
        """
        return [self._run(run_dir, flow, schedule.due_at(month)) for month in months]

    def rerun(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """The same due time again: the month's checkpoints say what already succeeded."""
        return [self._run(run_dir, flow, schedule.due_at(month)) for month in months]

    # report: end schedule

    def _run(self, run_dir: str, flow: str, due: datetime | None = None) -> EngineRun:
        started = datetime.now(UTC)
        run = self._body(run_dir, flow, due)
        if due is not None:
            run.month = steps.run_months(run_dir, due)[0]
            run.native_schedule = {"due": due.isoformat(), "made_by": "a loop over the due times"}
            run.native_started_at, run.native_ended_at = started, datetime.now(UTC)
        return run

    def _body(self, run_dir: str, flow: str, due: datetime | None) -> EngineRun:
        pipeline = Pipeline(run_dir, due)
        body = {"retrain": pipeline.retrain_flow}.get(flow, pipeline.train_flow)
        try:
            degraded = body()
        except StepFailed as exc:
            # report: begin notifications
            notify(
                run_dir,
                NotificationEvent.FLOW_FAILED,
                task=None,
                engine_state="failed",
                message=f"stopped at {exc}",
            )
            # report: end notifications
            return EngineRun(
                native_state="failed",
                native_message=str(exc),
                outcome=FlowOutcome.FAILED,
                tasks=pipeline.tasks,
            )
        # report: begin fallback
        native = "succeeded (degraded)" if degraded else "succeeded"
        outcome = FlowOutcome.DEGRADED if degraded else FlowOutcome.COMPLETED
        # report: end fallback
        return EngineRun(native_state=native, outcome=outcome, tasks=pipeline.tasks)

    def after_kill(self, run_dir: str, flow: str, status: int | None) -> EngineRun:
        """The flow's process died: its ledger was in its memory, so nothing says what it did."""
        return EngineRun(
            native_state=f"process ended by signal {-(status or 0)}",
            native_message="the ledger died with the process",
            outcome=FlowOutcome.LOST,
            tasks=[],
        )
