"""What a wiring declares beside its flows, and the expectation that makes for its engine.

The spec (scenarios.py) knows no engine. Each wiring declares what its engine adds or does
differently: the control tasks its graph has between the steps (a join, a `case`, a loop task),
each with a rule that derives its state from the shared expectation; the tasks its engine may
never create; behaviour rules that hold in every scenario (no timed-out state, say); and
deviations in one scenario, each with its reason and a link. Only rules and deviations are
behaviour (the report's †); control tasks are structure, explained once per wiring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache

from pydantic import BaseModel, ConfigDict

from shared_pipeline.faults_plan import HANG_FAULTS, FaultKind
from shared_pipeline.loading import load_module
from shared_pipeline.records import FlowRunRecord
from shared_pipeline.scenarios import (
    CATALOGUE,
    Notifications,
    RunExpectation,
    Scenario,
    get_scenario,
)
from shared_pipeline.schedule import next_month
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, RegistryEffect, StepState

C = StepState.COMPLETED
NOT_RUN = StepState.NOT_RUN_UPSTREAM_FAILED
RAN = {C, StepState.COMPLETED_AFTER_RETRY}
NOT_EXECUTED = {StepState.CACHED, StepState.SKIPPED, NOT_RUN}


class Deviation(BaseModel):
    """One documented behavioural difference from the spec in one flow run of one scenario.

    `steps` may name spec tasks and the wiring's control tasks; `notifications` are added to
    the spec's (an engine that notifies more says only what it adds), or replace them where
    `replaces_notifications` (what one that tells less sends instead).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str
    run: int = 1
    steps: dict[str, StepState] = {}
    outcome: FlowOutcome | None = None
    notifications: Notifications = ()
    replaces_notifications: bool = False
    registry: RegistryEffect | None = None
    may_be_cached: tuple[str, ...] = ()  # see RunExpectation.may_be_cached
    reason: str
    doc: str


@dataclass(frozen=True)
class Rule:
    """A behaviour of the engine in every scenario where it applies, with the reason and a link:
    its own names for states or outcomes, whether its timeouts interrupt each kind of hang, a
    notification for every try it retries.
    """

    name: str  # a few words, for the places that only point at it
    reason: str
    doc: str
    states: Mapping[StepState, StepState] = field(default_factory=dict)
    outcomes: Mapping[FlowOutcome, FlowOutcome] = field(default_factory=dict)
    interrupts: Mapping[FaultKind, bool] = field(default_factory=dict)
    notifies_retries: bool = False


@dataclass(frozen=True)
class Graph:
    """The control tasks a flow's graph has for one flow run, and the spec tasks it folds into a
    task of its own (their steps are checked against the steps' own log, not as tasks).
    """

    tasks: dict[str, StepState] = field(default_factory=dict)
    folded: tuple[str, ...] = ()


def called_only(task: str, state: StepState) -> bool:
    """A dynamic flow creates a task when it calls it: one it never got to is never created (nor
    one its process died with, as nothing may have recorded it).
    """
    return state in (NOT_RUN, StepState.SKIPPED, StepState.LOST)


def unmapped_children(step: str) -> Callable[[str, StepState], bool]:
    """A static graph's mapped `step` that never ran has no children: they are never created."""

    def never_created(task: str, state: StepState) -> bool:
        # Nor any task its run's process died with: nothing may have recorded it.
        return (task.startswith(f"{step}[") and state is NOT_RUN) or state is StepState.LOST

    return never_created


@dataclass(frozen=True)
class Wiring:
    """A wiring's declaration. `graph(flow, steps)` gives its control tasks from the expected
    steps; `never_created(task, state)` says which expected tasks its engine may not create.
    """

    never_created: Callable[[str, StepState], bool] = called_only
    graph: Callable[[str, dict[str, StepState]], Graph] | None = None
    graph_note: str = ""  # what the control tasks are: structure, explained once
    graph_doc: str = ""
    rules: tuple[Rule, ...] = ()
    deviations: tuple[Deviation, ...] = ()
    where: str = "shared_pipeline/wiring.py"  # the file that declares it, for error messages
    # The catalogue's scenarios this wiring runs (None: all) and on which source databases
    # beyond the default: a second runtime of an engine runs those where it can change an answer.
    scenarios: tuple[str, ...] | None = None
    scenarios_reason: str = ""
    other_databases: bool = True

    def applied(
        self, scenario: Scenario, runs: Iterable[FlowRunRecord] = ()
    ) -> list[Rule | Deviation]:
        """The rules and deviations that change `scenario`'s expectation (the report's †); a
        retry notification rule applies where the recorded `runs` had retries.
        """
        spec = list(scenario.runs)
        found: list[Rule | Deviation] = [d for d in self.deviations if d.scenario == scenario.id]
        retried = any(retry_notifications(run) for run in runs)
        for rule in self.rules:
            plain = replace(rule, notifies_retries=False)
            ruled = [_apply_rule(scenario, run, plain) for run in spec]
            if ruled != spec or (rule.notifies_retries and retried):
                found.append(rule)
        return found


# Helpers for a wiring's graph rules: a control task's state from the steps it stands between.


def ran_after(state: StepState | None) -> StepState:
    """A task downstream of a step that ran (whatever its outcome): not run if that step was not."""
    return NOT_RUN if state in (None, NOT_RUN) else C


def as_step(state: StepState | None) -> StepState:
    """A task that runs with a step and, like it, keeps a success from before a resume."""
    return StepState.CACHED if state is StepState.CACHED else ran_after(state)


def joins(steps: dict[str, StepState], step: str) -> StepState:
    """A join that runs once any branch of `step` completed."""
    branches = [s for t, s in steps.items() if t.startswith(f"{step}[")]
    return C if any(s in RAN for s in branches) else NOT_RUN


def gates(state: StepState | None) -> StepState:
    """A branch point in front of a step: skipped or not run as that step is, else completed."""
    return state if state in (StepState.SKIPPED, NOT_RUN) else C


# Applying a declaration.


def _hang_kinds(scenario: Scenario) -> set[FaultKind]:
    return {rule.kind for rule in scenario.faults if rule.kind in HANG_FAULTS}


def _apply_rule(scenario: Scenario, run: RunExpectation, rule: Rule) -> RunExpectation:
    update: dict = {}
    if rule.states:
        update["steps"] = {t: rule.states.get(s, s) for t, s in run.steps.items()}
    if rule.outcomes:
        update["outcome"] = rule.outcomes.get(run.outcome, run.outcome)
    if rule.interrupts and run.timeouts_interrupt is not None:
        verdicts = {rule.interrupts[k] for k in _hang_kinds(scenario) if k in rule.interrupts}
        if verdicts:
            update["timeouts_interrupt"] = all(verdicts) and run.timeouts_interrupt
    if rule.notifies_retries:
        update["notifies_retries"] = True
    return run.model_copy(update=update)


def expected(scenario: Scenario, wiring: Wiring | None) -> list[RunExpectation]:
    """The shared expectation of each flow run with `wiring`'s declaration applied."""
    if wiring is None:
        return list(scenario.runs)
    runs = []
    for number, base in enumerate(scenario.runs, start=1):
        run = base
        for rule in wiring.rules:
            run = _apply_rule(scenario, run, rule)
        steps, outcome, notes = dict(run.steps), run.outcome, list(run.notifications)
        registry, recomputed = run.registry, run.may_be_cached
        for deviation in wiring.deviations:
            if deviation.scenario == scenario.id and deviation.run == number:
                steps.update(deviation.steps)
                outcome = deviation.outcome or outcome
                registry = deviation.registry or registry
                recomputed += deviation.may_be_cached
                if deviation.replaces_notifications:
                    notes = []
                notes += deviation.notifications
        graph = wiring.graph(scenario.flow, steps) if wiring.graph else Graph()
        overridden = {
            t: s
            for d in wiring.deviations
            for t, s in d.steps.items()
            if d.scenario == scenario.id and d.run == number and t in graph.tasks
        }
        control = {**graph.tasks, **overridden}
        executed = run.executed
        if graph.folded:
            kept = {t: s for t, s in steps.items() if t not in graph.folded}
            executed = tuple(
                t
                for t, s in steps.items()
                # A step lost with its run's process never began (the one killed is failed).
                if s not in NOT_EXECUTED and s is not StepState.LOST and t not in control
            )
            steps = kept
        steps = {**steps, **control}
        if executed is not None:  # a deviation may find more of the steps already done
            executed = tuple(t for t in executed if steps.get(t) is not StepState.CACHED)
        absent = tuple(
            t
            for t, s in steps.items()
            if (t not in control or s is StepState.LOST) and wiring.never_created(t, s)
        )
        runs.append(
            run.model_copy(
                update={
                    "steps": steps,
                    "outcome": outcome,
                    "notifications": tuple(notes),
                    "registry": registry,
                    "may_be_cached": recomputed,
                    "executed": executed,
                    "engine_tasks": tuple(control),
                    "may_be_absent": absent,
                }
            )
        )
    return runs


def retry_notifications(run: FlowRunRecord) -> Counter[tuple[str, str | None]]:
    """One retry notification per failed attempt the step logged that another attempt followed."""
    tries: dict[str, int] = Counter(entry.task for entry in run.attempt_log)
    seen: Counter[str] = Counter()
    notes: Counter[tuple[str, str | None]] = Counter()
    for entry in run.attempt_log:
        seen[entry.task] += 1
        if entry.outcome != "completed" and seen[entry.task] < tries[entry.task]:
            notes[(str(NotificationEvent.TASK_RETRY), entry.task)] += 1
    return notes


# Which wiring declares each engine: the engine table (engine_table.py) names the files.


def _load(target: str) -> Wiring:
    module, _, name = target.partition(":")
    where = module if module.endswith(".py") else module.replace(".", "/") + ".py"
    wiring = getattr(load_module(module), name)
    return Wiring(**{**wiring.__dict__, "where": where})


@cache
def wiring_of(engine: str) -> Wiring | None:
    from shared_pipeline.engine_table import WIRINGS

    target = WIRINGS.get(engine)
    return _load(target) if target else None


def _lost(scenario_id: str) -> dict[str, StepState]:
    """Every task of the scenario's first flow run: lost with the process that ran it."""
    return {task: StepState.LOST for task in get_scenario(scenario_id).runs[0].steps}


# The plain-Python control: a dynamic flow, nothing added; what it knew lived in its process.
DYNAMIC = Wiring(
    deviations=(
        Deviation(
            scenario="worker_killed",
            steps=_lost("worker_killed"),
            outcome=FlowOutcome.LOST,
            replaces_notifications=True,
            reason=(
                "The control is the process that was killed: SIGKILL cannot be caught or "
                "handled, so its ledger and its hooks die with it and nothing records the run. "
                "What remains are the checkpoints of the steps that finished (resume_after_fix "
                "shows a rerun reusing them)."
            ),
            doc="https://man7.org/linux/man-pages/man7/signal.7.html",
        ),
    )
)


def branches_run_past_a_late_month(
    notifications: Notifications = (),
    steps: Mapping[str, StepState] | None = None,
    *,
    reason: str,
    doc: str,
) -> tuple[Deviation, ...]:
    """late_month in a graph that runs every task whose upstreams succeeded: the runs that need
    the missing month still read the month they have and enrich (which needs no database), and
    their re-runs find those done. `steps` and `notifications` are what else its failed runs
    show (a mapped parent's state, its handler).
    """
    scenario = get_scenario("late_month")
    deviations = []
    for number, run in enumerate(scenario.runs, start=1):
        if run.outcome is not FlowOutcome.FAILED:
            continue
        month = run.month or ""
        late = next(t for t, s in run.steps.items() if s is StepState.FAILED)[len("extract[") : -1]
        other = next(m for m in (month, next_month(month)) if m != late)
        ran = {f"extract[{other}]", f"read[{other}]", "enrich"}
        deviations.append(
            Deviation(
                scenario=scenario.id,
                run=number,
                steps={**dict.fromkeys(ran, C), **(steps or {})},
                notifications=notifications,
                reason=reason,
                doc=doc,
            )
        )
        again = next(
            n for n, r in enumerate(scenario.runs, start=1) if r.rerun and r.month == month
        )
        deviations.append(
            Deviation(
                scenario=scenario.id,
                run=again,
                steps=dict.fromkeys(ran, StepState.CACHED),
                reason=(
                    "A failed month's re-run keeps what its failed run did without the missing "
                    "month: the other month's extract and read, and enrich."
                ),
                doc=doc,
            )
        )
    return tuple(deviations)


# What a second runtime of an engine (its servers and workers) runs: the scenarios where the
# runtime can change an answer (timeouts, retries and their delays, hooks, parallel branches,
# resume), on the default database.
RUNTIME_SCENARIOS = (
    "happy_path",
    "db_maintenance",
    "db_down",
    "api_down",
    "train_hangs",
    "train_blocks",
    "fanout_partial",
    "resume_after_fix",
    "worker_killed",
)
# The scenarios of the monthly schedule: its runs are the engine's own (a deployment's scheduled
# times, a scheduler's backfill), which an engine's in-process test mode does not make.
SCHEDULED = ("monthly_backfill", "late_month")
RUNTIME_SCENARIOS += SCHEDULED
RUNTIME_REASON = (
    "the runtime changes where a flow runs (a process a worker starts, its main thread), not "
    "what the steps read: the scenarios about data (a bad body, bad data) and the loop answer "
    "the same; the source database is the test mode's concern"
)


# A kill of the process running a task, in a test mode that runs tasks in the calling process
# (Prefect's flow call, Airflow's dag.test()), is a kill of the test: its deployed runtime has it.
KILLED_IN_TEST_MODE = (
    "in test mode the tasks run in the test's own process, so killing the process running a task "
    "kills the run's reader too; the deployed runtime, where a worker or scheduler runs them, has "
    "this scenario"
)


SCHEDULED_IN_TEST_MODE = (
    "a run of the schedule is one its engine makes for a scheduled time or data interval (a "
    "deployment's run, a scheduler's backfill): the deployed runtime has these scenarios"
)


def in_test_mode(wiring: Wiring) -> Wiring:
    """A wiring's engine in its in-process test mode: every scenario but worker_killed and the
    schedule's.
    """
    runs = tuple(s.id for s in CATALOGUE if s.id not in ("worker_killed", *SCHEDULED))
    reason = f"{KILLED_IN_TEST_MODE}; {SCHEDULED_IN_TEST_MODE}"
    return replace(wiring, scenarios=runs, scenarios_reason=reason)


def deployed(wiring: Wiring) -> Wiring:
    """A wiring's engine as deployed: the same declarations, on RUNTIME_SCENARIOS only."""
    return replace(
        wiring, scenarios=RUNTIME_SCENARIOS, scenarios_reason=RUNTIME_REASON, other_databases=False
    )


def expectations(scenario: Scenario, engine: str) -> list[RunExpectation]:
    return expected(scenario, wiring_of(engine))
