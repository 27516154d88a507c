"""The report's lessons: the questions people ask about failure handling, each answered per engine
from the run records of the scenarios that show it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared_pipeline.records import FlowRunRecord, Kill, RunRecord
from shared_pipeline.report.cells import REGISTRY_WORDS, code, interrupted, timeout_lines
from shared_pipeline.report.runtimes import aspects
from shared_pipeline.scenarios import CATALOGUE
from shared_pipeline.vocabulary import (
    STEPS,
    FlowOutcome,
    NotificationEvent,
    StepState,
    split_task_id,
)

Get = Callable[[str], RunRecord | None]  # one engine's record of a scenario

FAILED = {StepState.FAILED, StepState.TIMED_OUT}
NOT_RUN = StepState.NOT_RUN_UPSTREAM_FAILED


@dataclass(frozen=True)
class Answer:
    short: str  # a few words: the summary table's cell
    detail: str  # one line: the lesson's row


@dataclass(frozen=True)
class Lesson:
    key: str  # its anchor: #lesson-<key>
    label: str  # a few words, for the summary table
    question: str  # its heading
    scenarios: tuple[str, ...]  # the evidence, the first one pictured
    features: tuple[str, ...]  # the wirings' marked code shown side by side
    answer: Callable[..., Answer | None]  # (get), or (get, get_deployed) for `deployed`
    setting: Callable[[dict], str] | None = None  # what this suite set, from a record's settings
    picture: str = "timeline"  # "timeline" of the first scenario, "graph", "drift", or ""
    # A lesson about the deployed runtime: `answer(get, get_deployed)`, its evidence on `page`.
    deployed: bool = False
    page: str = ""
    # A lesson answered per runtime: `answer(record, sibling)` for each runtime's record of its
    # first scenario (`sibling(scenario)`: the same runtime's record of another).
    per_runtime: bool = False


def _states(tasks: list, words: str = "") -> str:
    """ "2 `Failed`, 3 never created": how many tasks ended in each native state."""
    counts = Counter(t.native_state for t in tasks)
    parts = [f"{n} {code(s)}" for s, n in counts.items() if s is not None]
    if counts.get(None):
        parts.append(f"{counts[None]} never created")
    return ", ".join(parts) or words


def _tries(run: FlowRunRecord, step: str) -> str:
    tasks = [t for t in run.tasks if split_task_id(t.task)[0] == step]
    return ", ".join(f"{t.task} ×{t.attempts}" for t in tasks)


def _ended(run: FlowRunRecord) -> str:
    return f"run {code(run.native_state)} ({run.outcome.value})"


def downstream(get: Get) -> Answer | None:
    record = get("db_down")
    if record is None:
        return None
    run = record.runs[0]
    failed = [t for t in run.tasks if t.state in FAILED]
    below = [t for t in run.tasks if t.state is NOT_RUN]
    tried = ", ".join(f"{t.task} ×{t.attempts}" if t.attempts > 1 else t.task for t in failed)
    return Answer(
        _states(below, "nothing below"),
        f"failed for good: {tried}; below them: {_states(below, 'nothing')}; {_ended(run)}",
    )


def retries(get: Get) -> Answer | None:
    record = get("db_maintenance")
    if record is None:
        return None
    run = record.runs[0]
    extracts = [t for t in run.tasks if split_task_id(t.task)[0] == "extract"]
    states = sorted({t.native_state or "never created" for t in extracts})
    tries = max(t.attempts for t in extracts)
    told = f", notified ×{len(run.notifications)}" if run.notifications else ""
    return Answer(
        f"{code(states[0])} on try {tries}",
        f"{_tries(run, 'extract')}, each ending {', '.join(map(code, states))}{told}; "
        f"{_ended(run)} in {run.wall_seconds:.2f} s",
    )


def fallback(get: Get) -> Answer | None:
    records = [(s, get(s)) for s in ("api_down", "api_bad_body")]
    found = [(s, r) for s, r in records if r is not None]
    if not found:
        return None
    first = found[0][1].runs[0]
    parts = []
    for scenario, record in found:
        run = record.runs[0]
        enrich = run.task("enrich")
        state = f"enrich {code(enrich.native_state)} ×{enrich.attempts}" if enrich else ""
        parts.append(f"{scenario}: {state}, {_ended(run)}, {REGISTRY_WORDS[run.registry_effect]}")
    return Answer(f"{first.outcome.value}: {code(first.native_state)}", "; ".join(parts))


def timeouts(get: Get) -> Answer | None:
    found = [(s, get(s)) for s in ("train_hangs", "train_blocks")]
    found = [(s, r) for s, r in found if r is not None]
    if not found:
        return None
    words = {"train_hangs": "a busy loop", "train_blocks": "a blocking call"}
    stopped = [words[s] for s, r in found if interrupted(r, 0)]
    not_stopped = [words[s] for s, r in found if not interrupted(r, 0)]
    if not not_stopped:
        short = "stops both" if len(stopped) > 1 else f"stops {stopped[0]}"
    elif not stopped:
        short = "stops neither" if len(not_stopped) > 1 else f"does not stop {not_stopped[0]}"
    else:
        short = f"stops {' and '.join(stopped)}, not {' and '.join(not_stopped)}"
    detail = [f"{words[s]} ({s}): {timeout_lines(r)[0]}" for s, r in found]
    return Answer(short, "; ".join(detail))


def fanout(get: Get) -> Answer | None:
    record = get("fanout_partial")
    if record is None:
        return None
    run = record.runs[0]
    branches = [t for t in run.tasks if t.task.startswith("train[")]
    failed = [t for t in branches if t.state in FAILED]
    graph = f"; graph {run.graph_kind}" if run.graph_kind else ""
    listed = ", ".join(f"{t.task} {code(t.native_state or 'never created')}" for t in failed)
    return Answer(
        f"{len(failed)} of {len(branches)} failed, {code(run.native_state)}",
        f"{listed} of {len(branches)} branches; {_ended(run)}, "
        f"{REGISTRY_WORDS[run.registry_effect]}{graph}",
    )


def _control(run: FlowRunRecord) -> set[str]:
    """The engine's own tasks in a run (no step of the pipeline), by name without a key."""
    return {split_task_id(t.task)[0] for t in run.tasks if split_task_id(t.task)[0] not in STEPS}


def loop(get: Get) -> Answer | None:
    record = get("retrain_until_good")
    if record is None:
        return None
    run = record.runs[0]
    rounds = sum(1 for e in run.attempt_log if e.step == "train")
    trains = [t for t in run.tasks if split_task_id(t.task)[0] == "train"]
    skipped = [t for t in trains if t.state is StepState.SKIPPED]
    # The loop's own tasks: those this flow has and the fan-out flow (same fallback, same gate)
    # has not.
    other = get("fanout_partial")
    looping = sorted(_control(run) - (_control(other.runs[0]) if other else set()))
    if not trains:
        short, how = f"{rounds} rounds in one task", f"all inside {', '.join(looping)}"
    elif skipped:
        short = f"{rounds} rounds of {len(trains)} declared"
        how = f"{len(trains)} train tasks declared, {len(skipped)} skipped"
    else:
        short, how = f"{rounds} rounds", "one train task per round"
    own = f"; the loop's own tasks: {', '.join(looping)}" if looping and trains else ""
    return Answer(short, f"{rounds} rounds (the steps' own log): {how}{own}; {_ended(run)}")


def resume(get: Get) -> Answer | None:
    record = get("resume_after_fix")
    if record is None or len(record.runs) < 2:
        return None
    first, second = record.runs[0], record.runs[1]
    kept = [t for t in second.tasks if t.state is StepState.CACHED]
    ran = [t for t in second.tasks if t.native_state is not None and t.attempts > 0]
    native = ", ".join(sorted({code(t.native_state or "") for t in kept}))
    return Answer(
        f"{len(kept)} not redone ({native})" if kept else "all redone",
        f"run 1 {code(first.native_state)}; run 2: {len(kept)} tasks not redone "
        f"(native {native or 'none'}), {len(ran)} ran; {_ended(second)} in "
        f"{second.wall_seconds:.2f} s",
    )


def notifications(get: Get) -> Answer | None:
    found = [(s, get(s)) for s in ("db_down", "db_maintenance")]
    found = [(s, r) for s, r in found if r is not None]
    if not found:
        return None
    detail = []
    for scenario, record in found:
        events = Counter(n.event for run in record.runs for n in run.notifications)
        listed = ", ".join(f"{event} ×{n}" for event, n in sorted(events.items()))
        detail.append(f"{scenario}: {listed or 'none'}")
    events = Counter(n.event for run in found[0][1].runs for n in run.notifications)
    retried = events.pop(str(NotificationEvent.TASK_RETRY), 0)
    short = f"{sum(events.values())} for a failure" + (
        f", {retried} for its retries" if retried else ""
    )
    return Answer(short, "; ".join(detail))


def final_state(get: Get) -> Answer | None:
    found = [(s, get(s)) for s in ("happy_path", "bad_data", "fanout_partial", "db_down")]
    found = [(s, r) for s, r in found if r is not None]
    if not found:
        return None
    words = {
        "happy_path": "all healthy",
        "bad_data": "gate closed",
        "fanout_partial": "a branch failed",
        "db_down": "no data",
    }
    fanned = dict(found).get("fanout_partial")
    short = f"{code(fanned.runs[0].native_state)} with a failed task" if fanned else "no record"
    detail = [
        f"{words[s]}: {code(r.runs[0].native_state)}, {REGISTRY_WORDS[r.runs[0].registry_effect]}"
        for s, r in found
    ]
    return Answer(short, "; ".join(detail))


def _retry_setting(settings: dict) -> str:
    return (
        f"extract: {settings['extract_retries']} retries, {settings['extract_retry_delay_s']:g} s "
        f"apart, each read waiting at most {settings['db_busy_timeout_s']:g} s for a locked "
        f"table; enrich: {settings['enrich_retries']} retries, "
        f"{settings['enrich_retry_delay_s']:g} s apart"
    )


def _timeout_setting(settings: dict) -> str:
    return (
        f"the training timeout (`train_timeout_s`): {settings['train_timeout_s']:g} s per "
        "candidate's task; a planned hang gives up by "
        f"itself after {settings['hang_cap_s']:g} s (the hang cap), so an engine that cannot "
        "interrupt still ends"
    )


def _fallback_setting(settings: dict) -> str:
    return (
        f"each API request times out after {settings['api_timeout_s']:g} s; enrich has "
        f"{settings['enrich_retries']} retries"
    )


def _loop_setting(settings: dict) -> str:
    return (
        f"stop once validation RMSE ≤ {settings['retrain_target_rmse']:g}, at most "
        f"{settings['retrain_max_rounds']} rounds"
    )


def _gate_setting(settings: dict) -> str:
    return (
        f"register only if at least {settings['min_kept_fraction']:.0%} of the rows survived "
        f"cleaning and RMSE ≤ {settings['max_rmse']:g}"
    )


def _shared_states(record: RunRecord) -> list[tuple]:
    return [(run.outcome, sorted((t.task, t.state) for t in run.tasks)) for run in record.runs]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


DEPLOYED_RUNTIME = "deployed"  # the feature of a Limitation that says why there is none
DEPLOYED_PAGE = "docs/report/deployed.md"


def test_mode_against_deployed(get: Get, get_deployed: Get) -> Answer | None:
    """What changed when the same flows ran as deployed, a line each: the shared states, the time
    a flow run took, each aspect of runtimes.ASPECTS, and who told of a failure.
    """
    ids = [s.id for s in CATALOGUE]
    pairs = [(s, t, d) for s in ids if (d := get_deployed(s)) and (t := get(s))]
    if not pairs:
        record = next((r for s in ids if (r := get(s)) is not None), None)
        if record is None:
            return None
        if record.runtime != "test mode":
            return Answer("its own runtime", f"its scenarios already run as {record.runtime}")
        why = next((lim for lim in record.limitations if lim.feature == DEPLOYED_RUNTIME), None)
        if why is not None:
            return Answer("not run here", f"no deployed runtime here; {why.workaround}")
        return None
    differ = [s for s, t, d in pairs if _shared_states(t) != _shared_states(d)]
    same = len(pairs) - len(differ)
    test_s = _median([run.wall_seconds for _, t, _ in pairs for run in t.runs])
    deployed_s = _median([run.wall_seconds for _, _, d in pairs for run in d.runs])
    told = [n for _, _, d in pairs for run in d.runs for n in run.engine_notifications]
    senders = sorted({n.sender or "an unknown process" for n in told})
    mechanism = sorted({n.mechanism.split(":")[0] for n in told})  # "automation", "notifier"
    evidence = f"{DEPLOYED_PAGE}#{pairs[0][1].engine}"
    found = aspects(get, get_deployed)
    changed = [f"{a.name} {a.test} → {a.said(a.deployed)}" for a in found if not a.same]
    unchanged = [a.name for a in found if a.same]
    detail = (
        f"[{same} of {len(pairs)} scenarios alike]({evidence})"
        + (f" (not: {', '.join(differ)})" if differ else "")
        + f"; a run {test_s:.1f} → {deployed_s:.1f} s (median)"
        + (f"; changed: {'; '.join(changed)}" if changed else "")
        + (f"; unchanged: {', '.join(unchanged)}" if unchanged else "")
        + (
            f"; failures told by its {', '.join(mechanism)} ×{len(told)}, from the "
            + ", ".join(senders)
            if told
            else ""
        )
    )
    return Answer(f"{same}/{len(pairs)} alike, {deployed_s:.1f} s a run", detail)


def _after(later: datetime | None, kill: Kill) -> str:
    if later is None:
        return ""
    seconds = (later - kill.at).total_seconds()
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"


def worker_died(record: RunRecord, sibling: Get | None = None) -> Answer | None:
    """What the engine showed after the kill, how soon, who was told, what ran again."""
    run = record.runs[0]
    if not run.kills:
        return None
    kill = run.kills[0]
    task = run.task(kill.task)
    tries = [e for e in run.attempt_log if e.task == kill.task]
    killed = next(e for e in tries if e.attempt == kill.attempt)
    again = [e for e in tries if e.attempt > kill.attempt]
    if run.outcome is FlowOutcome.LOST:
        shown, short = f"nothing ended the run ({run.native_state})", "nothing noticed"
    else:
        # The first sign the engine noticed: the killed task ended, the run ended, or it ran again.
        ended = task.ended_at if task and task.state is not StepState.LOST else None
        signs = [t for t in (ended, run.native_ended_at, *(e.started for e in again)) if t]
        when = _after(min(signs), kill) if signs else "?"
        shown = f"{code(run.native_state)} run, noticed {when} after the kill"
        short = f"{code(run.native_state)} after {when}"
    state = (
        f"{code(task.native_state)} ({task.state.value})"
        if task and task.native_state
        else "no record"
    )
    hooks = Counter(n.event for n in run.notifications)
    told = [f"{event} ×{n}" for event, n in sorted(hooks.items())]
    told += [
        f"its {n.mechanism.split(':')[0]} {_after(n.received_at, kill)} after"
        for n in run.engine_notifications
    ]
    if again:
        first = again[0]
        twice = f"ran again {_after(first.started, kill)} after (attempt {first.attempt}: "
        twice += f"{first.outcome})"
    elif killed.ended is not None:  # a parent was killed: the step's own process lived on
        twice = f"ran on, to {killed.outcome} {_after(killed.ended, kill)} after the kill"
    else:
        twice = "ran once"
    detail = (
        f"kill -9 of {kill.what}; {shown}; {kill.task} {state}; told: "
        f"{', '.join(told) or 'nobody'}; the killed work {twice}; "
        f"{REGISTRY_WORDS[run.registry_effect]}"
    )
    return Answer(short, detail)


# The keys of a run's identity that say which time it is for, as each engine stores it.
WHEN = ("data_interval_start", "scheduled_start_time", "date", "due")


def _months(runs: list[FlowRunRecord]) -> str:
    return ", ".join(r.schedule.month for r in runs if r.schedule) or "none"


def schedules(record: RunRecord, sibling: Get | None = None) -> Answer | None:
    """What a backfill is in the engine (from its runs' own identities), and what a late month
    did: which runs failed, what the later months did, what the re-runs reused.
    """
    runs = [r for r in record.runs if r.schedule]
    if not runs:
        return None
    first = runs[0].schedule
    assert first is not None
    made_by = first.native.get("made_by", "?")
    promoted = sum(r.registry_effect.value == "promoted" for r in runs)
    short = f"{len(runs)} monthly runs"
    when = next(k for k in (*WHEN, *first.native) if k in first.native and k != "made_by")
    shown = first.native[when][:10]
    if when == "data_interval_start":
        when, shown = (
            "data_interval",
            f"{shown} – {first.native.get('data_interval_end', '?')[:10]}",
        )
    detail = (
        f"{made_by}: {len(runs)} runs in order, the first for `{when}` {shown}; "
        f"{promoted}/{len(runs)} promoted"
    )
    late = sibling("late_month") if sibling else None
    if late is not None:
        passes = [r for r in late.runs if r.schedule and not r.schedule.rerun]
        again = [r for r in late.runs if r.schedule and r.schedule.rerun]
        failed = [r for r in passes if r.outcome is FlowOutcome.FAILED]
        after = passes[passes.index(failed[-1]) + 1 :] if failed else []
        reused = sum(t.state is StepState.CACHED for r in again for t in r.tasks)
        told = sum(
            n.event == NotificationEvent.FLOW_FAILED for r in failed for n in r.notifications
        )
        how = again[0].schedule.native.get("made_by", "?") if again and again[0].schedule else ""
        detail += (
            f"; late month: {_months(failed)} failed (told ×{told}), "
            f"{_months([r for r in after if r.outcome is FlowOutcome.COMPLETED])} ran past it; "
            f"re-run alone by {how}: {_months(again)} "
            f"({reused} tasks reused; {REGISTRY_WORDS[again[-1].registry_effect]})"
            if again
            else ""
        )
        short += f"; {len(failed)} late, re-run alone" if again else ""
    return Answer(short, detail)


LESSONS: tuple[Lesson, ...] = (
    Lesson(
        "downstream",
        "Downstream of a failure",
        "What happens downstream of a failure?",
        ("db_down",),
        (),
        downstream,
    ),
    Lesson(
        "retries",
        "Retries",
        "Does a step that fails for a while get another try?",
        ("db_maintenance", "db_down"),
        ("retries",),
        retries,
        _retry_setting,
    ),
    Lesson(
        "fallback",
        "Fallback",
        "Can the run go on without an optional input?",
        ("api_down", "api_bad_body"),
        ("fallback",),
        fallback,
        _fallback_setting,
    ),
    Lesson(
        "timeouts",
        "Timeouts (a busy loop, a blocking call)",
        "Does a timeout stop the work, or only label it?",
        ("train_blocks", "train_hangs"),
        ("timeout",),
        timeouts,
        _timeout_setting,
    ),
    Lesson(
        "fanout",
        "Run-time fan-out",
        "Can one branch of a run-time fan-out fail without sinking the run?",
        ("fanout_partial",),
        ("fanout",),
        fanout,
        picture="graph",
    ),
    Lesson(
        "loop",
        "Loop of unknown length",
        "How is a loop of unknown length written?",
        ("retrain_until_good",),
        ("loop",),
        loop,
        _loop_setting,
        picture="graph",
    ),
    Lesson(
        "resume",
        "Resume after a fix",
        "After a fix, is finished work redone?",
        ("resume_after_fix",),
        ("resume",),
        resume,
    ),
    Lesson(
        "notifications",
        "Notifications",
        "Who is told, and how often?",
        ("db_down", "db_maintenance"),
        ("notifications",),
        notifications,
        picture="",
    ),
    Lesson(
        "final-state",
        "Final state",
        "What decides the run's final state?",
        ("fanout_partial", "bad_data", "db_down", "happy_path"),
        ("quality_gate",),
        final_state,
        _gate_setting,
        picture="",
    ),
    Lesson(
        "worker",
        "When a worker dies",
        "When a worker dies, what does the engine show, and when?",
        ("worker_killed",),
        (),
        worker_died,
        picture="",
        per_runtime=True,
    ),
    Lesson(
        "schedule",
        "Schedules and backfill",
        "Schedules and backfill: what is a backfill, and what does a late month do?",
        ("monthly_backfill", "late_month"),
        ("schedule",),
        schedules,
        picture="drift",
        per_runtime=True,
    ),
    Lesson(
        "deployed",
        "Test mode against deployed",
        "Does the engine as deployed answer as its test mode did?",
        (),
        (),
        test_mode_against_deployed,
        picture="",
        deployed=True,
        page=DEPLOYED_PAGE,
    ),
)
