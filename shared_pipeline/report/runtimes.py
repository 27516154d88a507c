"""What changed between an engine's test mode and its deployed runtime, aspect by aspect
(timeouts, where the hooks ran, parallelism, retry delays, resume), read off both records.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

from shared_pipeline.records import FlowRunRecord, RunRecord
from shared_pipeline.timeouts import record_verdicts, summary
from shared_pipeline.vocabulary import STEPS

Get = Callable[[str], RunRecord | None]


@dataclass(frozen=True)
class Aspect:
    name: str  # "timeouts", "retry delay", ...
    scenarios: tuple[str, ...]  # the evidence
    test: str  # what the test-mode record shows
    deployed: str  # what the deployed record shows
    unit: str = ""  # what the readings count, after them: "s", "step attempts at once"

    def said(self, reading: str) -> str:
        """A reading with its unit: "3 steps at once"."""
        return f"{reading} {self.unit}" if self.unit and reading != "none" else reading

    @property
    def same(self) -> bool:
        """Alike to the second: 2.1 s against 2.0 s of lateness is the machine, not the runtime."""
        return _to_the_second(self.test) == _to_the_second(self.deployed)


def _to_the_second(text: str) -> str:
    return re.sub(r"\d+\.\d+", lambda m: str(round(float(m[0]))), text)


def _timeouts(records: list[RunRecord]) -> str:
    return "; ".join(
        f"{r.scenario} {'; '.join(filter(None, map(summary, record_verdicts(r)))) or 'none met'}"
        for r in records
    )


def _hook_places(records: list[RunRecord]) -> str:
    """Where the failure hooks ran: the process that ran the engine, a process a step ran in, or
    another one (with the events it told).
    """
    places: Counter[str] = Counter()
    elsewhere: set[str] = set()
    for record in records:
        for run in record.runs:
            steps = {e.pid for e in run.attempt_log}
            for n in run.notifications:
                if n.pid is None:
                    return ""  # recorded before hooks told their pid: nothing to compare
                elif n.pid == record.runner_pid:
                    places["the runner"] += 1
                elif n.pid in steps:
                    places["the steps' processes"] += 1
                else:
                    places["elsewhere"] += 1
                    elsewhere.add(n.event)
    parts = [
        f"{where} ×{count}" + (f" ({', '.join(sorted(elsewhere))})" if where == "elsewhere" else "")
        for where, count in sorted(places.items())
    ]
    return ", ".join(parts) or "no hook fired"


def _overlap(run: FlowRunRecord) -> int:
    """The most step attempts that ran at once (the steps' own attempt log)."""
    edges = sorted(
        [(e.started, 1) for e in run.attempt_log]
        + [(e.ended or e.started, -1) for e in run.attempt_log],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


def _parallelism(records: list[RunRecord]) -> str:
    return str(max((_overlap(run) for r in records for run in r.runs), default=0))


def _retry_gaps(records: list[RunRecord]) -> list[float]:
    """Seconds from each failed attempt's end to the same task's next attempt's start."""
    gaps = []
    for run in (run for r in records for run in r.runs):
        by_task: dict[str, list] = {}
        for entry in run.attempt_log:
            by_task.setdefault(entry.task, []).append(entry)
        for entries in by_task.values():
            entries.sort(key=lambda e: e.attempt)
            gaps += [
                (later.started - earlier.ended).total_seconds()
                for earlier, later in zip(entries, entries[1:], strict=False)
                if earlier.ended is not None and later.attempt > earlier.attempt
            ]
    return gaps


def _retry_delay(records: list[RunRecord]) -> str:
    gaps = _retry_gaps(records)
    return f"{median(gaps):.1f}" if gaps else "none"


def _resumed(records: list[RunRecord]) -> str:
    """What the run after the fix ran again, and how it ended."""
    said = []
    for record in records:
        last = record.runs[-1]
        steps = sorted({e.step for e in last.attempt_log}, key=_step_order)
        said.append(f"ran {', '.join(steps) or 'nothing'} again, {last.outcome.value}")
    return "; ".join(said)


def _step_order(step: str) -> int:
    return STEPS.index(step) if step in STEPS else len(STEPS)


# Each aspect: its name, the scenarios that show it, what a record says of it, and in what.
ASPECTS: tuple[tuple[str, tuple[str, ...], Callable[[list[RunRecord]], str], str], ...] = (
    ("timeouts", ("train_hangs", "train_blocks"), _timeouts, ""),
    ("hooks ran in", ("db_down", "api_down", "fanout_partial"), _hook_places, ""),
    ("parallelism", ("fanout_partial",), _parallelism, "steps at once"),
    ("retry delay", ("db_maintenance",), _retry_delay, "s to the next try"),
    ("resume", ("resume_after_fix",), _resumed, ""),
)


def aspects(get: Get, get_deployed: Get) -> list[Aspect]:
    """Each aspect both runtimes have records for, test mode's reading beside deployed's."""
    found = []
    for name, scenarios, read, unit in ASPECTS:
        pairs = [(t, d) for s in scenarios if (t := get(s)) and (d := get_deployed(s))]
        if pairs:
            tests, deployed = [t for t, _ in pairs], [d for _, d in pairs]
            test_says, deployed_says = read(tests), read(deployed)
            if test_says and deployed_says:  # "" where a record cannot tell
                scenario_ids = tuple(t.scenario for t in tests)
                found.append(Aspect(name, scenario_ids, test_says, deployed_says, unit))
    return found
