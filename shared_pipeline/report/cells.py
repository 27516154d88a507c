"""What the report says about one record: matrix cells and per-engine accounts, all from records."""

from __future__ import annotations

from collections import Counter

from shared_pipeline.records import FlowRunRecord, RunRecord, TaskRecord
from shared_pipeline.timeouts import record_verdicts
from shared_pipeline.timeouts import summary as timeout_summary
from shared_pipeline.vocabulary import RegistryEffect, StepState

REGISTRY_WORDS = {
    RegistryEffect.PROMOTED: "production replaced",
    RegistryEffect.REGISTERED_NOT_PROMOTED: "new version left unpromoted",
    RegistryEffect.UNCHANGED: "production kept",
}


def code(text: str) -> str:
    """Inline code that survives a Markdown table cell."""
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def notable(run: FlowRunRecord) -> list[TaskRecord]:
    """The tasks that matter in a run: anything but a first-time, plain completion."""
    return [t for t in run.tasks if t.state is not StepState.COMPLETED or t.attempts > 1]


def timeout_lines(record: RunRecord) -> list[str]:
    """Per flow run: "interrupted ×3" or "labelled late by N s", for runs that met a hang."""
    return [timeout_summary(verdicts) for verdicts in record_verdicts(record)]


def interrupted(record: RunRecord, run_index: int) -> bool | None:
    """Did the engine's timeouts stop the hanging work in this run? None if nothing hung."""
    verdicts = record_verdicts(record)[run_index]
    return all(v.interrupted for v in verdicts) if verdicts else None


def task_groups(run: FlowRunRecord) -> list[str]:
    """Notable tasks grouped by native state: "`Failed`: train[ridge] (×3 attempts)"."""
    groups: dict[str, list[str]] = {}
    never: Counter[str] = Counter()
    for task in notable(run):
        if task.native_state is None:
            never[task.state.value] += 1
            continue
        attempts = f" ×{task.attempts}" if task.attempts > 1 else ""
        groups.setdefault(task.native_state, []).append(task.task + attempts)
    parts = [f"{code(state)} {', '.join(tasks)}" for state, tasks in groups.items()]
    parts += [f"never created ×{count} ({state})" for state, count in sorted(never.items())]
    return parts


def matrix_cell(record: RunRecord, marks: str, conforms: bool) -> str:
    lines = []
    for run, timeouts in zip(record.runs, timeout_lines(record), strict=True):
        prefix = f"run {run.run}: " if len(record.runs) > 1 else ""
        check = "✓" if conforms else "✗"
        lines.append(f"{prefix}**{run.outcome.value}** {check}{marks} · {code(run.native_state)}")
        lines.extend(task_groups(run))
        if timeouts:
            lines.append(f"timeouts: {timeouts}")
        notes = len(run.notifications)
        told = f"notified ×{notes}" if notes else "no notification"
        lines.append(f"{run.wall_seconds:.2f} s · {told} · {REGISTRY_WORDS[run.registry_effect]}")
    return "<br>".join(lines)


def history(task: TaskRecord) -> str:
    names: list[str] = []
    for state in task.native_history:
        if not names or names[-1] != state.name:
            names.append(state.name)
    return " → ".join(names)


def account(record: RunRecord) -> list[str]:
    """Bullet lines: what the engine did in each flow run, in its own words."""
    lines = []
    for run in record.runs:
        head = f"run {run.run}: " if len(record.runs) > 1 else ""
        message = f" ({code(run.native_message)})" if run.native_message else ""
        lines.append(
            f"{head}flow {code(run.native_state)}{message} → shared outcome "
            f"**{run.outcome.value}** in {run.wall_seconds:.2f} s; "
            f"{Counter(t.state for t in run.tasks)[StepState.COMPLETED]} of {len(run.tasks)} "
            "tasks completed first time."
        )
        for task in notable(run):
            if task.native_state is None:
                continue
            trail = history(task)
            trail = f": {code(trail)}" if trail and trail != task.native_state else ""
            lines.append(
                f"  - {task.task}: {code(task.native_state)} → {task.state.value}, "
                f"{task.attempts} attempt(s){trail}{step_side(run, task)}"
            )
        never = [t.task for t in notable(run) if t.native_state is None]
        if never:
            lines.append(
                f"  - never created by the engine (recorded as {notable_state(run, never)}): "
                + ", ".join(never)
            )
        for note in run.notifications:
            target = note.task or "the flow"
            state = code(note.engine_state)
            lines.append(f"  - notification {note.event} for {target} (engine state {state})")
        before, after = run.registry_before, run.registry_after
        lines.append(
            f"  - registry: production v{before.production_version} → "
            f"v{after.production_version}, versions {before.versions} → {after.versions} "
            f"({REGISTRY_WORDS[run.registry_effect]})"
        )
    return lines


def step_side(run: FlowRunRecord, task: TaskRecord) -> str:
    """For a timed-out task, how its attempts ended in the step's own log (stopped or not)."""
    if task.state is not StepState.TIMED_OUT:
        return ""
    ends = [
        f"{code(e.outcome or 'never ended')} after {(e.ended - e.started).total_seconds():.2f} s"
        if e.ended
        else code("never ended")
        for e in run.attempt_log
        if e.task == task.task
    ]
    return f"; the step's own log: {', '.join(ends)}" if ends else ""


def notable_state(run: FlowRunRecord, tasks: list[str]) -> str:
    states = sorted({t.state.value for t in run.tasks if t.task in tasks})
    return ", ".join(states)
