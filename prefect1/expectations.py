"""What Prefect 1's static graphs add to the shared spec, and where its behaviour differs.

Loaded by file path (shared_pipeline/engine_table.py): imports no Prefect, so the report and the
conformance checks read it without Prefect 1 installed.
"""

from __future__ import annotations

from dataclasses import replace

from shared_pipeline.faults_plan import FaultKind
from shared_pipeline.scenarios import CATALOGUE, TRAIN, VALID, get_scenario
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, RegistryEffect, StepState
from shared_pipeline.wiring import (
    SCHEDULED,
    Deviation,
    Graph,
    Rule,
    Wiring,
    branches_run_past_a_late_month,
    gates,
    joins,
    ran_after,
    unmapped_children,
)

DOCS = "https://github.com/PrefectHQ/prefect/blob/1.4.1/docs/core"
SOURCE = "https://github.com/PrefectHQ/prefect/blob/1.4.1/src/prefect"


def graph(flow: str, steps: dict[str, StepState]) -> Graph:
    """The tasks flows.py declares between the steps, each in the state its trigger gives it."""
    if flow == "monthly":  # the train flow, and the tasks that compute its months at run time
        roles = dict.fromkeys(("run_months", "run_months[0]", "run_months[1]"), StepState.COMPLETED)
        return Graph({**roles, **graph("train", steps).tasks})
    if flow == "retrain":
        rounds = tuple(t for t in steps if t.startswith(("train[round-", "evaluate[round-")))
        return Graph(
            {
                "optional_enrichment": ran_after(steps.get("enrich")),
                "train_until_good": ran_after(steps.get("features")),
                "case(True)": gates(steps.get("register")),
            },
            folded=rounds,
        )
    return Graph(
        {
            "optional_enrichment": ran_after(steps.get("enrich")),  # trigger all_finished
            "plan_candidates": ran_after(steps.get("features")),
            "train": ran_after(steps.get("features")),  # the mapped parent: Mapped
            "keep_trained": joins(steps, "train"),  # FilterTask, trigger any_successful
            "case(True)": gates(steps.get("register")),
        }
    )


LOCAL = Wiring(
    graph=graph,
    never_created=unmapped_children("train"),  # a mapped train that never ran
    graph_note=(
        "A Prefect 1 graph is declared before it runs, so the work between steps is tasks too: "
        "the enrichment fallback (optional_enrichment, trigger all_finished), the planner whose "
        "run-time list `.map` fans out over (plan_candidates), the mapped parent `train` (state "
        "Mapped) beside its children, the FilterTask join (keep_trained, trigger any_successful) "
        "and the `case` comparison that gates register (case(True)). LOOP re-runs one task, not "
        "a pair, so one task, train_until_good, trains and evaluates a round per iteration: the "
        "rounds are its Looped iterations, and the steps' own log has each round's train and "
        "evaluate. None of these runs a step of its own."
    ),
    graph_doc=f"{DOCS}/concepts/mapping.md",
    deviations=(
        Deviation(
            scenario="db_down",
            steps={
                f"extract[{VALID}]": StepState.FAILED,
                "enrich": StepState.COMPLETED,
                "train": StepState.FAILED,  # the mapped parent
            },
            notifications=(
                (NotificationEvent.TASK_FAILED, f"extract[{VALID}]"),
                (NotificationEvent.TASK_FAILED, "train"),
            ),
            reason=(
                "A static graph runs every branch whose upstreams succeeded: the second month's "
                f"extract does not wait for the first ({TRAIN}), so it meets the outage too (and "
                "is notified), and enrich, which needs no database, runs. What needs the data is "
                "TriggerFailed, except the mapped train: Prefect 1 checks mapping before the "
                "trigger and fails it ('No upstream states can be mapped over'), so its failure "
                "handler fires, and its children are never created."
            ),
            doc=f"{SOURCE}/engine/task_runner.py#L453-L461",
        ),
        *branches_run_past_a_late_month(
            steps={"train": StepState.FAILED},
            notifications=((NotificationEvent.TASK_FAILED, "train"),),
            reason=(
                "As in db_down: a static graph runs every branch whose upstreams succeeded, so "
                "the month that is there is extracted and read and enrich runs; what needs the "
                "missing month is TriggerFailed, and the mapped train fails (its handler "
                "notifies). Its targets keep what ran: the month's re-run finds them Cached."
            ),
            doc=f"{SOURCE}/engine/task_runner.py#L453-L461",
        ),
    ),
)

PREPARE = (f"extract[{TRAIN}]", f"extract[{VALID}]", f"read[{TRAIN}]", f"read[{VALID}]")
PREPARE += ("enrich", "features")
LOCAL = replace(
    LOCAL,
    deviations=(
        *LOCAL.deviations,
        Deviation(
            scenario="worker_killed",
            steps={
                t: StepState.LOST for t in ("train_until_good", "case(True)", "gate", "register")
            },
            outcome=FlowOutcome.LOST,
            replaces_notifications=True,
            reason=(
                "flow.run() runs the tasks in its own process, so the kill ends the flow run "
                "too: no flow state comes back, no state handler runs again, nothing is told. "
                "The state changes the handlers had written before say where each task stood: "
                "the looping train_until_good Running, what came after it never reached."
            ),
            doc=f"{DOCS}/concepts/execution.md",
        ),
    ),
)

# On Dask's default (daemonic) worker processes Prefect 1 can only label a timeout.
SOFT_TIMEOUT = Rule(
    name="timeouts only label the work",
    interrupts={FaultKind.HANG: False, FaultKind.BLOCK: False},
    reason=(
        "Prefect 1 enforces `timeout` with SIGALRM on the main thread, or by running the task in "
        "a killable subprocess from a non-daemonic process. Dask's worker processes are daemonic "
        "by default (distributed.worker.daemon), where Prefect 1 falls back to a soft timeout: "
        "it waits on the task in a background thread, marks it TimedOut on time and warns that "
        "it will 'continue running in the background'; the step ran on to the hang cap."
    ),
    doc=f"{SOURCE}/utilities/executors.py#L470-L537",
)
DASK = Wiring(
    **{
        **LOCAL.__dict__,
        # The schedule and its backfill belong to the Flow, the same on either executor.
        "scenarios": tuple(s.id for s in CATALOGUE if s.id not in SCHEDULED),
        "scenarios_reason": (
            "the schedule belongs to the Flow, not to the executor: Prefect 1 local runs its "
            "backfill, and Dask would run the same tasks"
        ),
        "rules": (*LOCAL.rules, SOFT_TIMEOUT),
        "deviations": (
            *(d for d in LOCAL.deviations if d.scenario != "worker_killed"),
            Deviation(
                scenario="worker_killed",
                steps=get_scenario("retrain_until_good").runs[0].steps,
                outcome=FlowOutcome.COMPLETED,
                registry=RegistryEffect.PROMOTED,
                replaces_notifications=True,
                may_be_cached=PREPARE,
                reason=(
                    "Dask's scheduler sees the worker's connection drop, and runs again every "
                    "task that was running on it, on another worker, and every finished task "
                    "whose result lived only in its memory. Prefect 1 never sees the kill: the "
                    "looping task starts again from round 1 and the run completes (the killed "
                    "work ran twice, counted once); a rerun task whose checkpoint exists comes "
                    "back Cached, which ones depends on where Dask had placed them."
                ),
                doc="https://distributed.dask.org/en/stable/killed.html",
            ),
        ),
    }
)
