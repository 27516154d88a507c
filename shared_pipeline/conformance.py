"""Checks a run record against its scenario's spec and against the steps' own attempt log."""

from __future__ import annotations

from collections import Counter

from shared_pipeline.faults_plan import HANG_FAULTS, FaultKind
from shared_pipeline.records import FlowRunRecord, RunRecord
from shared_pipeline.scenarios import RunExpectation, Scenario, get_scenario
from shared_pipeline.vocabulary import STEPS, StepState
from shared_pipeline.wiring import expectations, retry_notifications, wiring_of

NOT_EXECUTED = {StepState.CACHED, StepState.SKIPPED, StepState.NOT_RUN_UPSTREAM_FAILED}


def _check_run(run: FlowRunRecord, expected: RunExpectation) -> list[str]:
    problems = []
    where = f"run {run.run}"
    actual = {t.task: t.state for t in run.tasks}
    for task in sorted(set(actual) | set(expected.steps)):
        want, got = expected.steps.get(task), actual.get(task)
        if got is None:
            problems.append(f"{where}: {task} ({want and want.value}) is missing from the record")
        elif want != got and not (got is StepState.CACHED and task in expected.may_be_cached):
            problems.append(
                f"{where}: {task} is {got and got.value} but the spec says {want and want.value}"
            )
    for task in run.tasks:
        if task.native_state is None and task.task not in expected.may_be_absent:
            problems.append(
                f"{where}: the engine never created {task.task}, and its wiring does not "
                "declare that it may not (never_created)"
            )
    if run.outcome != expected.outcome:
        problems.append(f"{where}: flow {run.outcome.value}, spec {expected.outcome.value}")
    got_notes = Counter((n.event, n.task) for n in run.notifications)
    want_notes = Counter((str(event), task) for event, task in expected.notifications)
    if expected.notifies_retries:
        want_notes += retry_notifications(run)
    if got_notes != want_notes:
        problems.append(
            f"{where}: notifications {sorted(got_notes.items(), key=str)}, spec "
            f"{sorted(want_notes.items(), key=str)}"
        )
    if run.registry_effect != expected.registry:
        problems.append(
            f"{where}: registry {run.registry_effect.value}, spec {expected.registry.value}"
        )
    before, after = run.registry_before, run.registry_after
    if before.production_version is not None and (
        after.production_version is None or not set(before.versions) <= set(after.versions)
    ):
        problems.append(f"{where}: the production model or a version was lost")

    # The engine's account against the steps' own: attempts per task, and faults that really bit.
    logged = Counter(entry.task for entry in run.attempt_log)
    # A killed attempt is work the engine may never have seen (Dask ran it again elsewhere).
    killed = Counter(kill.task for kill in run.kills)
    for task in run.tasks:
        if task.task in expected.engine_tasks or task.step not in STEPS:
            # The engine's own control task (a fallback, a join, a mapped parent, a loop): it
            # runs no step under its own id (the steps it stands for log their own attempts).
            if logged[task.task]:
                problems.append(f"{where}: engine task {task.task} logged step attempts")
            continue
        if task.state in NOT_EXECUTED:
            if logged[task.task] and task.task not in expected.may_be_cached:
                problems.append(
                    f"{where}: {task.task} is {task.state.value} but the step "
                    f"logged {logged[task.task]} attempt(s)"
                )
        elif task.state is StepState.LOST and task.native_state is None:
            continue  # its process died with what it knew: nothing counted its attempts
        elif task.attempts not in {logged[task.task], logged[task.task] - killed[task.task]}:
            problems.append(
                f"{where}: {task.task}: engine counts {task.attempts} attempt(s), "
                f"the step logged {logged[task.task]}"
            )
    for entry in run.attempt_log:
        if entry.fault and entry.outcome == "completed":
            problems.append(
                f"{where}: {entry.task} attempt {entry.attempt} met fault "
                f"{entry.fault} and still completed: the fault did not happen"
            )
    if expected.timeouts_interrupt is not None:
        hangs = [e for e in run.attempt_log if e.fault in HANG_FAULTS]
        if not hangs:
            problems.append(f"{where}: a hang was planned but no step met it")
        for entry in hangs:
            stopped = entry.outcome != "hang_cap_reached"
            if stopped != expected.timeouts_interrupt:
                problems.append(
                    f"{where}: {entry.task} attempt {entry.attempt} "
                    + ("was interrupted" if stopped else "ran to the hang cap")
                    + " but the spec says the timeout "
                    + ("interrupts" if expected.timeouts_interrupt else "does not interrupt")
                )
    planned_kills = [e for e in run.attempt_log if e.fault == str(FaultKind.KILLED)]
    if planned_kills and not run.kills:
        problems.append(f"{where}: a kill was planned but no process was killed")
    if expected.month is not None:
        scheduled = run.schedule
        if scheduled is None or scheduled.month != expected.month:
            got = scheduled.month if scheduled else "no month"
            problems.append(f"{where}: the engine's run is for {got}, spec {expected.month}")
        elif scheduled.rerun != expected.rerun:
            problems.append(
                f"{where}: {'a' if scheduled.rerun else 'not a'} re-run, spec "
                f"{'a' if expected.rerun else 'not a'} re-run"
            )
        elif not scheduled.native:
            problems.append(
                f"{where}: no identity of the run from its engine (data interval, scheduled time)"
            )
    if expected.executed is not None and set(logged) != set(expected.executed):
        problems.append(f"{where}: executed {sorted(logged)}, spec {sorted(expected.executed)}")
    return problems


def check_record(record: RunRecord, scenario: Scenario | None = None) -> list[str]:
    """Every way `record` differs from its spec for its engine (the spec of `scenario`, by
    default the catalogue's scenario of the record); empty when it conforms.
    """
    expected = expectations(scenario or get_scenario(record.scenario), record.engine)
    if len(record.runs) != len(expected):
        problems = [f"{len(record.runs)} flow run(s), spec {len(expected)}"]
    else:
        problems = []
        for run, want in zip(record.runs, expected, strict=True):
            problems.extend(_check_run(run, want))
    if problems:
        wiring = wiring_of(record.engine)
        problems.append(
            f"where to fix: the shared expectation of {record.scenario} is in "
            "shared_pipeline/scenarios.py; what "
            + (
                f"{record.engine} adds or does differently is declared in {wiring.where}"
                if wiring
                else f"{record.engine} does differently has no wiring declaration"
            )
            + " (graph: its control tasks; never_created: tasks it does not create; rules and "
            "deviations: its behaviour, each with a reason and a link)"
        )
    return problems
