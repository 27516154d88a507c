"""Where Prefect 2.x and 3.x behave differently from the shared spec, with the reasons.

A dynamic flow adds no control tasks: it creates a task run when it calls the task. Loaded by
file path (shared_pipeline/engine_table.py): imports no Prefect.
"""

from __future__ import annotations

from shared_pipeline.faults_plan import FaultKind
from shared_pipeline.vocabulary import StepState
from shared_pipeline.wiring import Deviation, Rule, Wiring, deployed

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
PREFECT2_DEPLOYED = deployed(PREFECT2)
PREFECT3_DEPLOYED = deployed(PREFECT3)
