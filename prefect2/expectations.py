"""Where Prefect 2.x and 3.x behave differently from the shared spec, with the reasons.

A dynamic flow adds no control tasks: it creates a task run when it calls the task. Loaded by
file path (shared_pipeline/engine_table.py): imports no Prefect.
"""

from __future__ import annotations

from dataclasses import replace

from shared_pipeline.faults_plan import FaultKind
from shared_pipeline.scenarios import Notifications, get_scenario
from shared_pipeline.vocabulary import NotificationEvent, StepState
from shared_pipeline.wiring import SCHEDULED, Deviation, Rule, Wiring, deployed, in_test_mode

SOURCE = "https://github.com/PrefectHQ/prefect/blob/{version}/src/prefect"
PREFECT2_SOURCE = SOURCE.format(version="2.20.27")
PREFECT3_SOURCE = SOURCE.format(version="3.9.1")

PREFECT2 = Wiring(
    rules=(
        Rule(
            name="a timeout does not interrupt a blocked call",
            interrupts={FaultKind.BLOCK: False},
            reason=(
                "Prefect 2.x runs a sync task in a worker thread and enforces timeout_seconds "
                "off the main thread by raising CancelledError into that thread "
                "(PyThreadState_SetAsyncExc), which 'will not interrupt long-running system "
                "calls': the read gave up at the hang cap, then the exception landed and the "
                "task was marked TimedOut."
            ),
            doc=f"{PREFECT2_SOURCE}/_internal/concurrency/cancellation.py#L544-L590",
        ),
    ),
)

PREFECT3 = Wiring(
    rules=(
        Rule(
            name="a timeout does not interrupt a blocked call",
            interrupts={FaultKind.BLOCK: False},
            reason=(
                "Prefect 3.x uses SIGALRM only for a task called on the main thread; mapped tasks "
                "run in a thread pool, where the timeout is CancelledError raised into the "
                "thread, which 'will not interrupt long-running system calls': the read gave up "
                "at the hang cap before the task was TimedOut."
            ),
            doc=f"{PREFECT3_SOURCE}/_internal/concurrency/cancellation.py#L570-L616",
        ),
    ),
    deviations=(
        Deviation(
            scenario="api_down",
            steps={"enrich": StepState.TIMED_OUT},
            reason=(
                "Prefect 3 names any TimeoutError a task raises TimedOut, not only its own "
                "timeout_seconds: the last attempt met a hanging API and the HTTP client's read "
                "timeout raised TimeoutError."
            ),
            doc=f"{PREFECT3_SOURCE}/task_engine.py#L767-L780",
        ),
    ),
)

# As deployed (a server, a process worker): the same flows, so the same rules until the runs show
# otherwise.


def _crashed(told: Notifications, reason: str, doc: str) -> Deviation:
    """worker_killed under a process worker: the flow run Crashed, its task run left Running."""
    return Deviation(
        scenario="worker_killed",
        steps={"train[round-1]": StepState.LOST},
        notifications=told,
        replaces_notifications=True,
        reason=(
            "The process worker watches the flow run's process: when it exits by a signal, the "
            "worker reports the flow run Crashed (at once). Nobody ends the task run that "
            "process was running: only the flow run is the worker's, so the task run stays "
            f"Running. {reason}"
        ),
        doc=doc,
    )


def _cached_across_runs() -> tuple[Deviation, ...]:
    """The schedule's runs share a run directory, and the tasks' cache key is a hash of their
    inputs: a month's extract and read that an earlier run did (as its validation month, say)
    come back Cached in a later one.
    """
    deviations = []
    for scenario in (get_scenario(s) for s in SCHEDULED):
        done: set[str] = set()
        for number, run in enumerate(scenario.runs, start=1):
            reused = {
                t: StepState.CACHED
                for t, state in run.steps.items()
                if t.startswith(("extract[", "read["))
                and state is StepState.COMPLETED
                and t in done
            }
            if reused:
                deviations.append(
                    Deviation(
                        scenario=scenario.id,
                        run=number,
                        steps=reused,
                        reason=(
                            "The months' runs share the run directory, and cache_key_fn="
                            "task_input_hash keys a task on its inputs: the month an earlier "
                            "run extracted and read (its validation month) is Cached here."
                        ),
                        doc=f"{PREFECT3_SOURCE}/tasks.py",
                    )
                )
            done |= {
                t
                for t, state in run.steps.items()
                if state in (StepState.COMPLETED, StepState.CACHED)
            }
    return tuple(deviations)


PREFECT2_DEPLOYED = deployed(PREFECT2)
PREFECT2_DEPLOYED = replace(
    PREFECT2_DEPLOYED,
    deviations=(
        *PREFECT2_DEPLOYED.deviations,
        *_cached_across_runs(),
        _crashed(
            (),
            "2.x's worker runs no hook for it (the flow's on_crashed hooks would run only in "
            "the dead process); the server's notification policy on Crashed tells.",
            f"{PREFECT2_SOURCE}/workers/base.py#L957-L1081",
        ),
    ),
)
PREFECT3_DEPLOYED = deployed(PREFECT3)
PREFECT3_DEPLOYED = replace(
    PREFECT3_DEPLOYED,
    deviations=(
        *PREFECT3_DEPLOYED.deviations,
        *_cached_across_runs(),
        _crashed(
            ((NotificationEvent.FLOW_FAILED, None),),
            "3.x's worker then runs the flow's on_crashed hooks, in a process it starts for "
            "them (a few seconds later); the automation on Crashed tells too.",
            f"{PREFECT3_SOURCE}/runner/_flow_run_executor.py#L223-L229",
        ),
    ),
)
# A flow run by a process of its own, no worker: worker_killed only.
PREFECT3_HEARTBEAT = replace(
    PREFECT3_DEPLOYED,
    scenarios=("worker_killed",),
    scenarios_reason="the runtime differs from prefect3-deployed only in who watches a flow run",
    deviations=(
        *(d for d in PREFECT3_DEPLOYED.deviations if d.scenario != "worker_killed"),
        Deviation(
            scenario="worker_killed",
            steps={"train[round-1]": StepState.LOST},
            replaces_notifications=True,
            reason=(
                "Nothing watches a flow run's own process: after the kill the flow run still "
                "says Running until its heartbeats have been missing for the automation's window "
                "(3 heartbeats of 30 s, Prefect's recipe); the automation then marks it Crashed, "
                "and the automation on Crashed tells. No hook runs: there is no process left to "
                "run them. The task run stays Running."
            ),
            doc="https://docs.prefect.io/v3/advanced/detect-zombie-flows",
        ),
    ),
)
PREFECT2, PREFECT3 = in_test_mode(PREFECT2), in_test_mode(PREFECT3)
