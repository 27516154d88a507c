"""The scenario catalogue: fault plan plus expected outcome, once for every wiring."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared_pipeline.faults_plan import FaultKind, FaultRule
from shared_pipeline.settings import Settings
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, RegistryEffect, StepState

TRAIN, VALID = Settings().train_month, Settings().valid_month
CANDIDATES = ("linear", "ridge", "ridge_heavy")

# Where an engine's behaviour is only documented by its code, the override links the code.
PREFECT2_SOURCE = "https://github.com/PrefectHQ/prefect/blob/2.20.27/src/prefect"
PREFECT3_SOURCE = "https://github.com/PrefectHQ/prefect/blob/3.9.1/src/prefect"

C = StepState.COMPLETED
NOT_RUN = StepState.NOT_RUN_UPSTREAM_FAILED


class ScenarioError(ValueError):
    """The scenario cannot run as asked (for example a fault the database cannot have)."""


class RunExpectation(BaseModel):
    """What one flow run of a scenario must end in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: dict[str, StepState]
    outcome: FlowOutcome
    notifications: tuple[tuple[NotificationEvent, str | None], ...] = ()
    registry: RegistryEffect
    # Tasks whose step really executed in this run (from the step-side attempt log).
    executed: tuple[str, ...] | None = None
    # Tasks an engine has beyond the pipeline's steps (added by its override: a mapped parent,
    # a join, a loop): they run no step under their own id, so they are checked by state only.
    engine_tasks: tuple[str, ...] = ()
    # For planned hangs: True if the engine's timeout stops the work itself, False if the work
    # runs on to the hang cap (the timeout only labels it); None where no hang is planned.
    timeouts_interrupt: bool | None = None


class Override(BaseModel):
    """An engine's documented deviation from the shared expectation, with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: int = 1
    # Tasks whose expected state differs, or that only this engine has (its own graph tasks).
    steps: dict[str, StepState] = Field(default_factory=dict)
    # Spec tasks the engine does not have as tasks of their own (e.g. loop rounds run inside one).
    absent: tuple[str, ...] = ()
    outcome: FlowOutcome | None = None
    notifications: tuple[tuple[NotificationEvent, str | None], ...] | None = None
    registry: RegistryEffect | None = None
    executed: tuple[str, ...] | None = None
    timeouts_interrupt: bool | None = None
    reason: str
    doc: str


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    description: str
    flow: str = "train"  # "train" (fan-out over candidates) or "retrain" (loop until good)
    faults: tuple[FaultRule, ...] = ()
    corrupt_months: tuple[str, ...] = ()
    runs: tuple[RunExpectation, ...]
    overrides: dict[str, tuple[Override, ...]] = Field(default_factory=dict)

    def expected(self, engine: str) -> list[RunExpectation]:
        """The shared expectation with `engine`'s documented overrides applied."""
        runs = list(self.runs)
        for override in self.overrides.get(engine, ()):
            base = runs[override.run - 1]
            unknown = set(override.absent) - set(base.steps)
            if unknown:
                raise ScenarioError(f"{self.id}: {engine} override drops unknown tasks {unknown}")
            kept = {t: state for t, state in base.steps.items() if t not in override.absent}
            added = [t for t in override.steps if t not in self.runs[override.run - 1].steps]
            runs[override.run - 1] = base.model_copy(
                update={
                    "steps": {**kept, **override.steps},
                    "outcome": override.outcome or base.outcome,
                    "notifications": base.notifications
                    if override.notifications is None
                    else override.notifications,
                    "registry": override.registry or base.registry,
                    "executed": base.executed if override.executed is None else override.executed,
                    "engine_tasks": tuple(dict.fromkeys((*base.engine_tasks, *added))),
                    "timeouts_interrupt": base.timeouts_interrupt
                    if override.timeouts_interrupt is None
                    else override.timeouts_interrupt,
                }
            )
        return runs


def train_tasks(*keys: str) -> list[str]:
    return [f"train[{key}]" for key in keys]


MAIN_TASKS = [
    f"extract[{TRAIN}]",
    f"extract[{VALID}]",
    f"read[{TRAIN}]",
    f"read[{VALID}]",
    "enrich",
    "features",
    *train_tasks(*CANDIDATES),
    "evaluate",
    "gate",
    "register",
]


def steps(default: StepState = C, **states: StepState) -> dict[str, StepState]:
    """All tasks of the main flow in `default`, with some set otherwise (keys as task ids)."""
    return {task: states.get(task, default) for task in MAIN_TASKS} | states


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
        overrides={
            "prefect3": (
                Override(
                    steps={"enrich": StepState.TIMED_OUT},
                    reason=(
                        "Prefect 3 names any TimeoutError a task raises TimedOut, not only its own "
                        "timeout_seconds: the last attempt met a hanging API and the HTTP "
                        "client's read timeout raised TimeoutError."
                    ),
                    doc=f"{PREFECT3_SOURCE}/task_engine.py#L767-L780",
                ),
            ),
        },
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
        overrides={
            "prefect2": (
                Override(
                    timeouts_interrupt=False,
                    reason=(
                        "Prefect 2.x runs a sync task in a worker thread and enforces "
                        "timeout_seconds off the main thread by raising CancelledError into "
                        "that thread (PyThreadState_SetAsyncExc), which 'will not interrupt "
                        "long-running system calls': the read gave up at the hang cap, then the "
                        "exception landed and the task was marked TimedOut."
                    ),
                    doc=f"{PREFECT2_SOURCE}/_internal/concurrency/cancellation.py#L544-L590",
                ),
            ),
            "prefect3": (
                Override(
                    timeouts_interrupt=False,
                    reason=(
                        "Prefect 3.x uses SIGALRM only for a task called on the main thread; "
                        "mapped tasks run in a thread pool, where the timeout is CancelledError "
                        "raised into the thread, which 'will not interrupt long-running system "
                        "calls': the read gave up at the hang cap before the task was TimedOut."
                    ),
                    doc=f"{PREFECT3_SOURCE}/_internal/concurrency/cancellation.py#L570-L616",
                ),
            ),
        },
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
)


# Prefect 1 static graphs (prefect1 on the local executor, prefect1-dask on a Dask cluster) ---

PREFECT1 = ("prefect1", "prefect1-dask")
PREFECT1_DOCS = "https://github.com/PrefectHQ/prefect/blob/1.4.1/docs/core"
PREFECT1_SOURCE = "https://github.com/PrefectHQ/prefect/blob/1.4.1/src/prefect"
PREFECT1_GRAPH_REASON = (
    "A Prefect 1 graph is declared before it runs, so the work between steps is tasks too: the "
    "enrichment fallback (optional_enrichment, trigger all_finished), the planner whose run-time "
    "list `.map` fans out over (plan_candidates), the mapped parent `train` (state Mapped) beside "
    "its children, the FilterTask join (keep_trained, trigger any_successful) and the `case` "
    "comparison that gates register (case(True)). They run no step of their own."
)


PREFECT1_GRAPH_TASKS = (
    "optional_enrichment",
    "plan_candidates",
    "train",
    "keep_trained",
    "case(True)",
)


def prefect1_graph(changed: dict[str, StepState] | None = None) -> dict[str, StepState]:
    """The train flow's own graph tasks: completed, unless `changed` says otherwise."""
    return {task: C for task in PREFECT1_GRAPH_TASKS} | (changed or {})


def _prefect1_graph_only(changed: dict[str, StepState] | None = None, run: int = 1) -> Override:
    return Override(
        run=run,
        steps=prefect1_graph(changed),
        reason=PREFECT1_GRAPH_REASON,
        doc=f"{PREFECT1_DOCS}/concepts/mapping.md",
    )


_NO_CANDIDATE_TRAINED = {"keep_trained": NOT_RUN, "case(True)": NOT_RUN}
_PREFECT1_OVERRIDES: dict[str, tuple[Override, ...]] = {
    "happy_path": (_prefect1_graph_only(),),
    "db_maintenance": (_prefect1_graph_only(),),
    "db_down": (
        Override(
            steps={
                f"extract[{VALID}]": StepState.FAILED,
                "enrich": C,
                **prefect1_graph(dict.fromkeys(PREFECT1_GRAPH_TASKS[1:], NOT_RUN)),
                "train": StepState.FAILED,
            },
            notifications=(
                (TASK_FAILED, f"extract[{TRAIN}]"),
                (TASK_FAILED, f"extract[{VALID}]"),
                (TASK_FAILED, "train"),
                (FLOW_FAILED, None),
            ),
            reason=(
                "A static graph runs every branch whose upstreams succeeded: the second month's "
                "extract does not wait for the first, so it meets the outage too (and is "
                "notified), and enrich, which needs no database, runs. What needs the data is "
                "TriggerFailed, except the mapped train: Prefect 1 checks mapping before the "
                "trigger and fails it ('No upstream states can be mapped over'), so its failure "
                "handler fires, and its children are never created. " + PREFECT1_GRAPH_REASON
            ),
            doc=f"{PREFECT1_SOURCE}/engine/task_runner.py#L453-L461",
        ),
    ),
    "api_down": (_prefect1_graph_only(),),
    "train_hangs": (_prefect1_graph_only(_NO_CANDIDATE_TRAINED),),
    "train_blocks": (_prefect1_graph_only(_NO_CANDIDATE_TRAINED),),
    "bad_data": (_prefect1_graph_only({"case(True)": StepState.SKIPPED}),),
    "fanout_partial": (_prefect1_graph_only(),),
    "resume_after_fix": (
        _prefect1_graph_only(_NO_CANDIDATE_TRAINED, run=1),
        _prefect1_graph_only(run=2),
    ),
    "retrain_until_good": (
        Override(
            steps={"optional_enrichment": C, "train_until_good": C, "case(True)": C},
            absent=tuple(t for t in _retrain_steps() if t.startswith(("train[", "evaluate["))),
            executed=tuple(_retrain_steps()),
            reason=(
                "Prefect 1 loops one task, not a pair (LOOP re-runs the task that raised it), so "
                "one task, train_until_good, trains and evaluates a round per iteration: the "
                "rounds are its Looped iterations, not tasks of their own; the steps' own log "
                "has each round's train and evaluate. " + PREFECT1_GRAPH_REASON
            ),
            doc=f"{PREFECT1_DOCS}/advanced_tutorials/task-looping.md",
        ),
    ),
}


# On Dask's default (daemonic) worker processes Prefect 1 can only label a timeout.
_PREFECT1_DASK_SOFT_TIMEOUT = Override(
    timeouts_interrupt=False,
    reason=(
        "Prefect 1 enforces `timeout` with SIGALRM on the main thread, or by running the task in "
        "a killable subprocess from a non-daemonic process. Dask's worker processes are daemonic "
        "by default (distributed.worker.daemon), where Prefect 1 falls back to a soft timeout: "
        "it waits on the task in a background thread, marks it TimedOut on time and warns that "
        "it will 'continue running in the background'; the step ran on to the hang cap."
    ),
    doc=f"{PREFECT1_SOURCE}/utilities/executors.py#L470-L537",
)
_PREFECT1_DASK_OVERRIDES = {
    "train_hangs": (_PREFECT1_DASK_SOFT_TIMEOUT,),
    "train_blocks": (_PREFECT1_DASK_SOFT_TIMEOUT,),
}


def with_engine_overrides(
    catalogue: tuple[Scenario, ...],
    engines: tuple[str, ...],
    table: dict[str, tuple[Override, ...]],
) -> tuple[Scenario, ...]:
    """The catalogue with `table`'s overrides (by scenario id) added for each of `engines`."""
    return tuple(
        scenario.model_copy(
            update={
                "overrides": scenario.overrides
                | {
                    engine: (*scenario.overrides.get(engine, ()), *table[scenario.id])
                    for engine in engines
                    if scenario.id in table
                }
            }
        )
        for scenario in catalogue
    )


CATALOGUE = with_engine_overrides(CATALOGUE, PREFECT1, _PREFECT1_OVERRIDES)
CATALOGUE = with_engine_overrides(CATALOGUE, ("prefect1-dask",), _PREFECT1_DASK_OVERRIDES)


# Airflow 3 (airflow/): where its DAGs differ from the shared spec, and why. -----------------------
AIRFLOW_DOCS = "https://airflow.apache.org/docs/apache-airflow/stable"
AIRFLOW_SOURCE = "https://github.com/apache/airflow/blob/3.3.2/airflow-core/src/airflow"
TASK_RETRY = NotificationEvent.TASK_RETRY


def _airflow_control(run: int = 1, **states: StepState) -> Override:
    """States of the DAG's own control tasks, which run no pipeline step."""
    return Override(
        run=run,
        steps=states,
        reason=(
            "A DAG declares its control flow as tasks: enrichment_or_none (trigger rule "
            "all_done) lets features go on without the API, candidates computes the list "
            "that train is mapped over, trained_models is the join (all_done_min_one_success) "
            "that still runs when one mapped instance failed."
        ),
        doc=f"{AIRFLOW_DOCS}/core-concepts/dags.html#trigger-rules",
    )


def _airflow_retries(*tasks: str, per_task: int) -> tuple[tuple[NotificationEvent, str], ...]:
    return tuple((TASK_RETRY, task) for task in tasks for _ in range(per_task))


_RETRY_NOTE = (
    "on_retry_callback also writes to the sink: Airflow calls it for every failed try that "
    "will be retried, which the shared spec (failures only) does not list."
)
_CALLBACKS = f"{AIRFLOW_DOCS}/administration-and-deployment/logging-monitoring/callbacks.html"
_TIMEOUTS = (
    "Airflow has no timed-out state: execution_timeout raises AirflowTaskTimeout in the task "
    "and the task instance ends `failed` like any other failure (the callback's exception "
    "names the timeout)."
)
_TIMEOUT_DOC = f"{AIRFLOW_DOCS}/core-concepts/tasks.html#timeouts"
_EXTRACT_RETRIES = _airflow_retries(f"extract[{TRAIN}]", f"extract[{VALID}]", per_task=2)
_TRAINS_FAILED = {t: StepState.FAILED for t in train_tasks(*CANDIDATES)}
_EVERYTHING_RAN = _airflow_control(enrichment_or_none=C, candidates=C, trained_models=C)
_NO_CANDIDATE_TRAINED = _airflow_control(enrichment_or_none=C, candidates=C, trained_models=NOT_RUN)

AIRFLOW_OVERRIDES: dict[str, tuple[Override, ...]] = {
    "happy_path": (_EVERYTHING_RAN,),
    "db_maintenance": (
        _EVERYTHING_RAN,
        Override(notifications=_EXTRACT_RETRIES, reason=_RETRY_NOTE, doc=_CALLBACKS),
    ),
    "db_down": (
        _airflow_control(enrichment_or_none=C, candidates=NOT_RUN, trained_models=NOT_RUN),
        Override(
            steps={f"extract[{VALID}]": StepState.FAILED, "enrich": C},
            notifications=(
                (TASK_FAILED, f"extract[{TRAIN}]"),
                (TASK_FAILED, f"extract[{VALID}]"),
                *_airflow_retries(f"extract[{TRAIN}]", f"extract[{VALID}]", per_task=3),
                (FLOW_FAILED, None),
            ),
            reason=(
                "A DAG run does not stop at the first failure: every task whose trigger rule "
                "is met still runs. The second month's extract and enrich do not depend on the "
                "first month's extract, so they run (the extract fails too, on the same dead "
                "database) and only their downstream tasks become upstream_failed. " + _RETRY_NOTE
            ),
            doc=f"{AIRFLOW_DOCS}/core-concepts/dags.html#trigger-rules",
        ),
        Override(
            steps={"train": NOT_RUN},
            reason=(
                "A mapped task whose upstream failed is never expanded: Airflow keeps one "
                "unmapped task instance (map_index -1) in upstream_failed, and no instance per "
                "candidate exists (the candidates are recorded as never created)."
            ),
            doc=f"{AIRFLOW_SOURCE}/models/dagrun.py#L1535-L1593",
        ),
    ),
    "api_down": (
        _EVERYTHING_RAN,
        Override(
            outcome=FlowOutcome.COMPLETED,
            notifications=((TASK_FAILED, "enrich"), *_airflow_retries("enrich", per_task=2)),
            reason=(
                "A DAG run ends success or failed, decided by its leaf tasks; Airflow has no "
                "degraded state. The fallback path shows in the task instances: enrich failed, "
                "features and everything after it succeeded (and the registered model is "
                "tagged degraded). " + _RETRY_NOTE
            ),
            doc=f"{AIRFLOW_DOCS}/core-concepts/dag-run.html#dag-run-status",
        ),
    ),
    "train_hangs": (
        _NO_CANDIDATE_TRAINED,
        Override(steps=_TRAINS_FAILED, reason=_TIMEOUTS, doc=_TIMEOUT_DOC),
    ),
    # execution_timeout is SIGALRM in the task's process: it interrupts the blocked read too.
    "train_blocks": (
        _NO_CANDIDATE_TRAINED,
        Override(steps=_TRAINS_FAILED, reason=_TIMEOUTS, doc=_TIMEOUT_DOC),
    ),
    "bad_data": (_EVERYTHING_RAN,),
    "fanout_partial": (_EVERYTHING_RAN,),
    "resume_after_fix": (
        _NO_CANDIDATE_TRAINED,
        _airflow_control(
            run=2,
            enrichment_or_none=StepState.CACHED,
            candidates=StepState.CACHED,
            trained_models=C,
        ),
    ),
    "retrain_until_good": (
        Override(
            steps={
                "enrichment_or_none": C,
                **{f"keep_going[round-{n}]": C for n in range(1, RETRAIN_ROUNDS + 1)},
                **{
                    f"{step}[round-{n}]": StepState.SKIPPED
                    for n in range(RETRAIN_ROUNDS + 1, Settings().retrain_max_rounds + 1)
                    for step in ("train", "evaluate", "keep_going")
                    if not (step == "keep_going" and n == Settings().retrain_max_rounds)
                },
                "last_evaluation": C,
            },
            reason=(
                "A DAG run cannot loop: the loop is declared as retrain_max_rounds rounds, each "
                "with a short-circuit check (keep_going) that skips every later round once the "
                "model is good enough; last_evaluation (none_failed_min_one_success) picks the "
                "evaluation of the last round that ran."
            ),
            doc="https://airflow.apache.org/docs/apache-airflow-providers-standard/stable/"
            "operators/python.html#shortcircuitoperator",
        ),
    ),
}

CATALOGUE = with_engine_overrides(CATALOGUE, ("airflow",), AIRFLOW_OVERRIDES)
SCENARIOS: dict[str, Scenario] = {scenario.id: scenario for scenario in CATALOGUE}


def get_scenario(scenario_id: str) -> Scenario:
    try:
        return SCENARIOS[scenario_id]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise KeyError(f"unknown scenario {scenario_id!r} (known: {known})") from None
