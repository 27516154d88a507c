"""The scenario catalogue: fault plan plus expected outcome, once for every wiring."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared_pipeline.faults_plan import FaultKind, FaultRule
from shared_pipeline.schedule import next_month
from shared_pipeline.settings import Settings
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, RegistryEffect, StepState

TRAIN, VALID = Settings().train_month, Settings().valid_month
SCHEDULE, LATE = Settings().schedule_months, Settings().late_month
CANDIDATES = ("linear", "ridge", "ridge_heavy")

C = StepState.COMPLETED
NOT_RUN = StepState.NOT_RUN_UPSTREAM_FAILED


class ScenarioError(ValueError):
    """The scenario cannot run as asked (for example a fault the database cannot have)."""


Notifications = tuple[tuple[NotificationEvent, str | None], ...]


class RunExpectation(BaseModel):
    """What one flow run of a scenario must end in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: dict[str, StepState]
    outcome: FlowOutcome
    notifications: Notifications = ()
    registry: RegistryEffect
    # Tasks whose step really executed in this run (from the step-side attempt log).
    executed: tuple[str, ...] | None = None
    # For planned hangs: True if the engine's timeout stops the work itself, False if the work
    # runs on to the hang cap (the timeout only labels it); None where no hang is planned.
    timeouts_interrupt: bool | None = None
    # Filled in from a wiring's declaration (shared_pipeline/wiring.py), never by the spec:
    # its control tasks (checked by state only), the expected tasks its engine may not create,
    # and whether it notifies every retried try.
    engine_tasks: tuple[str, ...] = ()
    may_be_absent: tuple[str, ...] = ()
    notifies_retries: bool = False
    # Tasks whose result the engine may have lost and recomputed from their checkpoint: their
    # state may be cached instead, though their step ran.
    may_be_cached: tuple[str, ...] = ()
    # A run of the monthly schedule: the month it trains on (validated on the next), and whether
    # it re-runs that month's failed run.
    month: str | None = None
    rerun: bool = False


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    description: str
    # "train" (fan-out over candidate models), "retrain" (loop until good), or "monthly" (the
    # train flow on its monthly schedule: each run's months come from the schedule).
    flow: str = "train"
    faults: tuple[FaultRule, ...] = ()
    corrupt_months: tuple[str, ...] = ()
    # The months the engine's schedule is backfilled over (one run each, in order), and the
    # months whose table is missing until the first pass is over; their failed months re-run.
    schedule: tuple[str, ...] = ()
    late_months: tuple[str, ...] = ()
    runs: tuple[RunExpectation, ...]


def train_tasks(*keys: str) -> list[str]:
    return [f"train[{key}]" for key in keys]


def main_tasks(train: str = TRAIN, valid: str = VALID) -> list[str]:
    return [
        f"extract[{train}]",
        f"extract[{valid}]",
        f"read[{train}]",
        f"read[{valid}]",
        "enrich",
        "features",
        *train_tasks(*CANDIDATES),
        "evaluate",
        "gate",
        "register",
    ]


MAIN_TASKS = main_tasks()


def steps(
    default: StepState = C, months: tuple[str, str] = (TRAIN, VALID), **states: StepState
) -> dict[str, StepState]:
    """All tasks of the main flow on `months` in `default`, with some set otherwise (task ids)."""
    return {task: states.get(task, default) for task in main_tasks(*months)} | states


def _after(task: str, state: StepState) -> dict[str, StepState]:
    """`state` for every main-flow task after `task` in program order."""
    return {t: state for t in MAIN_TASKS[MAIN_TASKS.index(task) + 1 :]}


TASK_FAILED, FLOW_FAILED = NotificationEvent.TASK_FAILED, NotificationEvent.FLOW_FAILED
ALL_TRAINS_FAILED = tuple((TASK_FAILED, t) for t in train_tasks(*CANDIDATES))


def every_candidate_ends(
    state: StepState, timeouts_interrupt: bool | None = None
) -> RunExpectation:
    """No candidate trains: nothing after training runs, the flow fails, everyone is told."""
    return RunExpectation(
        timeouts_interrupt=timeouts_interrupt,
        steps=steps(
            **{t: state for t in train_tasks(*CANDIDATES)},
            evaluate=NOT_RUN,
            gate=NOT_RUN,
            register=NOT_RUN,
        ),
        outcome=FlowOutcome.FAILED,
        notifications=(*ALL_TRAINS_FAILED, (FLOW_FAILED, None)),
        registry=RegistryEffect.UNCHANGED,
    )


RETRAIN_ROUNDS = 5  # rounds retrain_until_good needs on the embedded data (a unit test checks)


def _retrain_steps() -> dict[str, StepState]:
    tasks = [t for t in MAIN_TASKS if not t.startswith(("train[", "evaluate"))]
    rounds = range(1, RETRAIN_ROUNDS + 1)
    looped = [f"{step}[round-{n}]" for n in rounds for step in ("train", "evaluate")]
    return {task: C for task in tasks + looped}


def _killed_loop_steps() -> dict[str, StepState]:
    """The retraining loop's first round failed: nothing after it runs."""
    tasks = [t for t in MAIN_TASKS if not t.startswith(("train[", "evaluate", "gate", "register"))]
    return {
        **{task: C for task in tasks},
        "train[round-1]": StepState.FAILED,
        "evaluate[round-1]": NOT_RUN,
        "gate": NOT_RUN,
        "register": NOT_RUN,
    }


# What each month of the schedule did to the registry, on the embedded data: promoted where its
# model beat production on the month after (the control's conformance run checks them).
SCHEDULE_REGISTRY = dict.fromkeys(SCHEDULE, RegistryEffect.PROMOTED)


def month_run(month: str, registry: RegistryEffect | None = None) -> RunExpectation:
    """The schedule's run for `month`: it trains on it, validates on the next, completes."""
    return RunExpectation(
        month=month,
        steps=steps(months=(month, next_month(month))),
        outcome=FlowOutcome.COMPLETED,
        registry=registry or SCHEDULE_REGISTRY[month],
    )


def missing_month_runs(late: str) -> tuple[RunExpectation, ...]:
    """The runs that need `late`'s missing table: the month before validates on it, its own run
    trains on it. Each stops at that extract (after its retries), in the flow's order: whatever
    comes after it in the code is not run, and nothing is registered.
    """
    before = SCHEDULE[SCHEDULE.index(late) - 1]
    validates = steps(
        NOT_RUN,
        months=(before, late),
        **{f"extract[{before}]": C, f"read[{before}]": C, f"extract[{late}]": StepState.FAILED},
    )
    trains = steps(
        NOT_RUN, months=(late, next_month(late)), **{f"extract[{late}]": StepState.FAILED}
    )
    failed = ((TASK_FAILED, f"extract[{late}]"), (FLOW_FAILED, None))
    return tuple(
        RunExpectation(
            month=month,
            steps=run_steps,
            outcome=FlowOutcome.FAILED,
            notifications=failed,
            registry=RegistryEffect.UNCHANGED,
        )
        for month, run_steps in ((before, validates), (late, trains))
    )


def rerun(failed: RunExpectation, registry: RegistryEffect) -> RunExpectation:
    """A failed month run again once its data arrived: what had succeeded is reused."""
    assert failed.month is not None
    kept = [t for t, state in failed.steps.items() if state is C]
    return RunExpectation(
        month=failed.month,
        rerun=True,
        steps=steps(
            months=(failed.month, next_month(failed.month)), **dict.fromkeys(kept, StepState.CACHED)
        ),
        outcome=FlowOutcome.COMPLETED,
        registry=registry,
        executed=tuple(
            t for t in main_tasks(failed.month, next_month(failed.month)) if t not in kept
        ),
    )


def _late_month_runs() -> tuple[RunExpectation, ...]:
    missing = missing_month_runs(LATE)
    first_pass = [
        missing[[r.month for r in missing].index(m)]
        if m in {r.month for r in missing}
        else month_run(m, LATE_REGISTRY[m])
        for m in SCHEDULE
    ]
    return (*first_pass, *(rerun(r, LATE_REGISTRY[f"{r.month} again"]) for r in missing))


# What each run of late_month did to the registry (the months that ran past the gap compare with
# an older production; the re-runs with the latest one).
LATE_REGISTRY: dict[str, RegistryEffect] = {
    **dict.fromkeys(SCHEDULE, RegistryEffect.PROMOTED),
    **dict.fromkeys((f"{m} again" for m in SCHEDULE), RegistryEffect.REGISTERED_NOT_PROMOTED),
}


CATALOGUE: tuple[Scenario, ...] = (
    Scenario(
        id="happy_path",
        title="Happy path",
        description=(
            "Nothing goes wrong. The baseline every failure is measured against: which tasks the "
            "engine creates, how long its bookkeeping takes, and that a better model trained on "
            "the newer month replaces the production model trained on an older one."
        ),
        runs=(
            RunExpectation(
                steps=steps(), outcome=FlowOutcome.COMPLETED, registry=RegistryEffect.PROMOTED
            ),
        ),
    ),
    Scenario(
        id="db_maintenance",
        title="Transient database outage",
        description=(
            "The source database is under maintenance: another connection holds an exclusive "
            "lock, so the first two reads of each month fail with `database is locked`. This is "
            "the most common failure in production pipelines and the one retries exist for: the "
            "run should heal itself without anyone being paged."
        ),
        faults=(FaultRule(step="extract", kind=FaultKind.DB_LOCKED, attempts=(1, 2)),),
        runs=(
            RunExpectation(
                steps=steps(
                    **{
                        f"extract[{TRAIN}]": StepState.COMPLETED_AFTER_RETRY,
                        f"extract[{VALID}]": StepState.COMPLETED_AFTER_RETRY,
                    }
                ),
                outcome=FlowOutcome.COMPLETED,
                registry=RegistryEffect.PROMOTED,
            ),
        ),
    ),
    Scenario(
        id="db_down",
        title="Permanent database outage",
        description=(
            "The database cannot be opened at all, on every attempt. Retries cannot help; what "
            "matters is that nothing downstream runs on missing data, that someone is notified, "
            "and that the model in production stays exactly where it was."
        ),
        faults=(FaultRule(step="extract", kind=FaultKind.DB_UNREACHABLE),),
        runs=(
            RunExpectation(
                steps=steps(
                    **{f"extract[{TRAIN}]": StepState.FAILED},
                    **_after(f"extract[{TRAIN}]", NOT_RUN),
                ),
                outcome=FlowOutcome.FAILED,
                notifications=((TASK_FAILED, f"extract[{TRAIN}]"), (FLOW_FAILED, None)),
                registry=RegistryEffect.UNCHANGED,
            ),
        ),
    ),
    Scenario(
        id="api_down",
        title="Enrichment API down: fall back",
        description=(
            "The enrichment API answers HTTP 503, then refuses connections, then accepts and "
            "never answers. The pipeline should not die for an optional input: it trains without "
            "the enrichment features and says so, marking the run degraded."
        ),
        faults=(
            FaultRule(step="enrich", kind=FaultKind.API_503, attempts=(1,)),
            FaultRule(step="enrich", kind=FaultKind.API_REFUSED, attempts=(2,)),
            FaultRule(step="enrich", kind=FaultKind.API_HANG, attempts=(3,)),
        ),
        runs=(
            RunExpectation(
                steps=steps(enrich=StepState.FAILED),
                outcome=FlowOutcome.DEGRADED,
                notifications=((TASK_FAILED, "enrich"),),
                registry=RegistryEffect.PROMOTED,
            ),
        ),
    ),
    Scenario(
        id="api_bad_body",
        title="Enrichment API answers garbage: fall back",
        description=(
            "The enrichment API answers 200 OK, but with an HTML maintenance page where the JSON "
            "should be, on every attempt. Nothing in the transport fails: the client has to "
            "notice, and the pipeline falls back as it does when the API is down, training "
            "without the enrichment features and marking the run degraded."
        ),
        faults=(FaultRule(step="enrich", kind=FaultKind.API_BAD_BODY),),
        runs=(
            RunExpectation(
                steps=steps(enrich=StepState.FAILED),
                outcome=FlowOutcome.DEGRADED,
                notifications=((TASK_FAILED, "enrich"),),
                registry=RegistryEffect.PROMOTED,
            ),
        ),
    ),
    Scenario(
        id="train_hangs",
        title="Training stops making progress: timeout",
        description=(
            "Every training candidate spins in a Python loop that never gets anywhere (a retry "
            "loop polling for a lock that never frees, say). Only a timeout ends it. The loop "
            "runs Python statements all the time, so any timeout can get in between two of "
            "them: this is the easy case, and every engine should stop the work on time. "
            "Compare train_blocks."
        ),
        faults=(FaultRule(step="train", kind=FaultKind.HANG),),
        runs=(every_candidate_ends(StepState.TIMED_OUT, timeouts_interrupt=True),),
    ),
    Scenario(
        id="train_blocks",
        title="Training blocks inside one call: timeout",
        description=(
            "Every training candidate blocks in one read from a server that accepted the "
            "connection and never answers, as a job does on a dead network mount or a stalled "
            "feature store. A thread stuck in a C call runs no Python, so a timeout that works "
            "by raising an exception inside the thread only lands when the call returns; a "
            "signal (SIGALRM on the main thread) or a killed process stops it on time. The "
            "record shows when the engine declared the timeout and when the work really "
            "stopped (the read gives up by itself at the hang cap)."
        ),
        faults=(FaultRule(step="train", kind=FaultKind.BLOCK),),
        runs=(every_candidate_ends(StepState.TIMED_OUT, timeouts_interrupt=True),),
    ),
    Scenario(
        id="bad_data",
        title="Data-quality gate",
        description=(
            "The month arrives corrupt from upstream: most trips end before they start or last "
            "for hours. Nothing crashes, which is the danger. The quality gate must stop the "
            "model trained on it from being registered, and production must be kept."
        ),
        corrupt_months=(TRAIN,),
        runs=(
            RunExpectation(
                steps=steps(register=StepState.SKIPPED),
                outcome=FlowOutcome.COMPLETED,
                registry=RegistryEffect.UNCHANGED,
            ),
        ),
    ),
    Scenario(
        id="fanout_partial",
        title="Run-time fan-out with a failing branch",
        description=(
            "The candidate models are a list computed at run time, and one of them "
            "(ridge_heavy) gets NaNs in its training target, which scikit-learn refuses. "
            "The other branches must still finish, and the best of them is registered: one "
            "bad branch must not sink the run."
        ),
        faults=(FaultRule(step="train", key="ridge_heavy", kind=FaultKind.CORRUPT_FEATURES),),
        runs=(
            RunExpectation(
                steps=steps(**{"train[ridge_heavy]": StepState.FAILED}),
                outcome=FlowOutcome.COMPLETED,
                notifications=((TASK_FAILED, "train[ridge_heavy]"),),
                registry=RegistryEffect.PROMOTED,
            ),
        ),
    ),
    Scenario(
        id="resume_after_fix",
        title="Resume after a fix",
        description=(
            "The first run fails at training (every candidate gets corrupt input). Someone fixes "
            "the cause and runs the pipeline again. The second run should not pay again for the "
            "steps that already succeeded: extraction, reading, enrichment and features are "
            "reused, only training onwards runs."
        ),
        faults=(FaultRule(step="train", kind=FaultKind.CORRUPT_FEATURES, until_fixed=True),),
        runs=(
            every_candidate_ends(StepState.FAILED),
            RunExpectation(
                steps=steps(
                    default=StepState.CACHED,
                    **{t: C for t in [*train_tasks(*CANDIDATES), "evaluate", "gate", "register"]},
                ),
                outcome=FlowOutcome.COMPLETED,
                registry=RegistryEffect.PROMOTED,
                executed=(*train_tasks(*CANDIDATES), "evaluate", "gate", "register"),
            ),
        ),
    ),
    Scenario(
        id="retrain_until_good",
        title="Retrain until good",
        description=(
            "A loop whose number of iterations nobody knows in advance: train on a sample, "
            "evaluate, and double the sample until the RMSE is below target (or rounds run out). "
            "Dynamic flows write this as a while loop; a static graph has to be told the shape "
            "of the loop before it runs."
        ),
        flow="retrain",
        runs=(
            RunExpectation(
                steps=_retrain_steps(),
                outcome=FlowOutcome.COMPLETED,
                registry=RegistryEffect.PROMOTED,
            ),
        ),
    ),
    Scenario(
        id="worker_killed",
        title="A worker killed mid-task",
        description=(
            "The process running the first round of the retraining loop is killed midway "
            "(kill -9), as the kernel's OOM killer or a lost node kills it. Nothing in that "
            "process can react: no exception, no `finally`, no hook. Only someone outside can "
            "notice: the spec asks that the engine does, marks the task failed, stops the loop "
            "that needed it and tells someone, and that the production model survives. How "
            "long noticing takes, and whether the killed work runs again, is each engine's "
            "answer."
        ),
        flow="retrain",
        faults=(FaultRule(step="train", key="round-1", kind=FaultKind.KILLED, attempts=(1,)),),
        runs=(
            RunExpectation(
                steps=_killed_loop_steps(),
                outcome=FlowOutcome.FAILED,
                notifications=((TASK_FAILED, "train[round-1]"), (FLOW_FAILED, None)),
                registry=RegistryEffect.UNCHANGED,
            ),
        ),
    ),
    Scenario(
        id="monthly_backfill",
        title="Monthly schedule, backfilled",
        description=(
            "The model goes stale as the zones' congestion drifts month after month, so the "
            "training flow runs on a monthly schedule. The source database holds six months "
            "that were never trained on: the engine backfills its schedule over them in its own "
            "way, one run per month, in order. Each run takes its month from the run's scheduled "
            "time or data interval (nobody passes it), trains on it, is validated on the month "
            "after, and replaces production only if it beats production on that month."
        ),
        flow="monthly",
        schedule=SCHEDULE,
        runs=tuple(month_run(month) for month in SCHEDULE),
    ),
    Scenario(
        id="late_month",
        title="A month's data arrives late",
        description=(
            f"The backfill again, but {LATE}'s table is not in the database when the runs "
            "start: it lands after they are over. The runs that need it (the month before "
            "validates on it, its own run trains on it) must fail, tell someone and leave "
            "production alone rather than train on a gap; the later months run on. Once the data "
            "is in, the failed months are re-run alone: the months that succeeded are not run "
            "again."
        ),
        flow="monthly",
        schedule=SCHEDULE,
        late_months=(LATE,),
        runs=_late_month_runs(),
    ),
)


SCENARIOS: dict[str, Scenario] = {scenario.id: scenario for scenario in CATALOGUE}


def get_scenario(scenario_id: str) -> Scenario:
    try:
        return SCENARIOS[scenario_id]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise KeyError(f"unknown scenario {scenario_id!r} (known: {known})") from None
