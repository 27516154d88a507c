"""Who appears in the report: each engine's label, its wiring's sources and its documentation.

An engine appears as soon as `results/<key>/` holds records; its row here gives it a label,
the files its code excerpts come from, documentation links, and its "choose this when" points.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_pipeline.records import RunRecord

# Failure-handling features, as marked in the wirings: `# report: begin <feature>`.
FEATURES: dict[str, str] = {
    "retries": "Retries",
    "fallback": "Fallback on failure",
    "timeout": "Timeouts",
    "notifications": "Failure notifications",
    "fanout": "Run-time fan-out",
    "quality_gate": "Quality gate",
    "resume": "Resume after a fix",
    "loop": "Loop of unknown length",
    "schedule": "Monthly schedule and backfill",
}

# The features each scenario exercises (its code excerpts); a scenario not listed shows none.
SCENARIO_FEATURES: dict[str, tuple[str, ...]] = {
    "happy_path": (),
    "db_maintenance": ("retries",),
    "db_down": ("retries", "notifications"),
    "api_down": ("fallback", "retries"),
    "api_bad_body": ("fallback", "retries"),
    "train_hangs": ("timeout", "notifications"),
    "train_blocks": ("timeout", "notifications"),
    "bad_data": ("quality_gate",),
    "fanout_partial": ("fanout",),
    "resume_after_fix": ("resume",),
    "retrain_until_good": ("loop",),
    "worker_killed": ("notifications",),
    "monthly_backfill": ("schedule",),
    "late_month": ("schedule", "notifications"),
}


@dataclass(frozen=True)
class Wiring:
    """One code base; several engines may run it (Prefect 2.x and 3.x; Prefect 1 on 2 executors)."""

    key: str
    label: str
    sources: tuple[str, ...]  # the files a user of the engine writes: flows or DAGs, hooks
    # Harness code that works around the engine's test mode (excerpted, counted apart).
    workarounds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Point:
    """One "choose this when" point: a trade-off, and the lessons (their keys) that show it."""

    text: str
    lessons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Engine:
    key: str  # results/<key>/
    label: str
    wiring: str
    docs: dict[str, str]  # "home" and one link per feature: the engine's own documentation
    choose_when: tuple[Point, ...] = ()
    kind: str = ""  # one line: what kind of orchestration this is
    graph_note: str = ""  # how to read this engine's recorded graph
    bench_note: str = ""  # where its overhead comes from, to read beside the measured shares
    bench_why: str = ""  # the same in one sentence, for the ranking
    bench_regime: str = ""  # when its figures hold, where that is not obvious


WIRINGS: dict[str, Wiring] = {
    w.key: w
    for w in (
        Wiring("python", "plain Python", ("shared_pipeline/control.py",)),
        Wiring(
            "prefect1",
            "Prefect 1",
            ("prefect1/flows.py", "prefect1/hooks.py"),
            ("prefect1/adapter.py",),
        ),
        Wiring(
            "prefect2",
            "Prefect 2.x / 3.x",
            ("prefect2/flows.py", "prefect2/hooks.py"),
            ("prefect2/deployed.py",),
        ),
        Wiring(
            "airflow",
            "Airflow 3",
            (
                "airflow/train_pipeline.py",
                "airflow/retrain_until_good.py",
                "airflow/pipeline_tasks.py",
                "airflow/callbacks.py",
            ),
            ("airflow/adapter.py", "airflow/deployed.py"),
        ),
    )
}

PY = "https://docs.python.org/3/library"
P1 = "https://docs-v1.prefect.io/core"
P2 = "https://docs-2.prefect.io/latest"
P3 = "https://www.prefect.io/docs/v3"
AF = "https://airflow.apache.org/docs/apache-airflow/stable"

PREFECT1_DOCS = {
    "home": f"{P1}/",
    "retries": f"{P1}/concepts/tasks.html#retries",
    "fallback": f"{P1}/concepts/execution.html#triggers",
    "timeout": "https://docs-v1.prefect.io/api/latest/core/task.html#task-2",
    "notifications": f"{P1}/concepts/notifications.html#state-handlers",
    "fanout": f"{P1}/concepts/mapping.html",
    "quality_gate": f"{P1}/idioms/conditional.html",
    "resume": f"{P1}/concepts/persistence.html#output-caching-based-on-a-file-target",
    "loop": f"{P1}/advanced_tutorials/task-looping.html",
}

PREFECT_GRAPH = (
    "Prefect records a task run's inputs that came from other task runs: futures and states, "
    "and plain values it traces back to a task run's result by object identity (the result and "
    "its top-level items). A value that is merely the same object as an earlier result (a month "
    "string, a model path) therefore draws an edge as well."
)

ENGINES: dict[str, Engine] = {
    e.key: e
    for e in (
        Engine(
            key="python",
            label="plain Python",
            wiring="python",
            kind="the control: failure handling written by hand",
            bench_note="The baseline: plain function calls, the cost of the work itself.",
            docs={
                "home": f"{PY}/",
                "retries": "https://docs.python.org/3/tutorial/errors.html#handling-exceptions",
                "fallback": "https://docs.python.org/3/tutorial/errors.html#handling-exceptions",
                "timeout": f"{PY}/signal.html#signal.setitimer",
                "notifications": "https://docs.python.org/3/tutorial/errors.html",
                "fanout": f"{PY}/contextlib.html#contextlib.suppress",
                "quality_gate": "https://docs.python.org/3/tutorial/controlflow.html#if-statements",
                "resume": f"{PY}/json.html",
                "loop": "https://docs.python.org/3/reference/compound_stmts.html#while",
            },
            bench_why="The baseline: plain function calls.",
            choose_when=(
                Point(
                    "Choose plain Python when the pipeline is small and runs on one machine: every "
                    "retry, timeout and checkpoint is code you own and can read, at the price of "
                    "writing each of them, and of no UI, state store or notification you did not "
                    "write yourself",
                    ("retries", "timeouts", "resume", "cost"),
                ),
            ),
        ),
        Engine(
            key="prefect1",
            label="Prefect 1 (local executor)",
            wiring="prefect1",
            kind="static graph, built before the run",
            bench_note=(
                "flow.run() keeps every state in memory: no API, no database. Each task run gets "
                "a TaskRunner in the flow's own thread, which builds a fresh prefect.context (a "
                "merged copy of the configuration) and takes the task through Pending, Running "
                "and Success with its state-change handling: a fixed cost per task. The chain "
                "pays once more per run: Flow.sorted_tasks orders the graph by repeated passes "
                "over a list of the remaining tasks, testing each upstream task's membership in "
                "that list ([flow.py](https://github.com/PrefectHQ/prefect/blob/1.4.1/src/"
                "prefect/core/flow.py#L869-L938)), a cost that grows faster than N. "
                "Prefect caches that order on the Flow object; each measured run declares its "
                "graph afresh, as a flow-run process does."
            ),
            docs=PREFECT1_DOCS,
            bench_why=(
                "States stay in memory, but each task gets a task runner and a fresh context, "
                "and a chain's graph sort grows faster than N."
            ),
            choose_when=(
                Point(
                    "Choose Prefect 1 when the graph is known before the run and you want it "
                    "checked and drawn before anything executes; the price: every task of the "
                    "graph exists in every run (a failure leaves its downstream tasks "
                    "`TriggerFailed`, not absent), and a run-time list or loop must be bent into "
                    "mapping and `LOOP`",
                    ("downstream", "fanout", "loop"),
                ),
            ),
        ),
        Engine(
            key="prefect1-dask",
            label="Prefect 1 (Dask executor)",
            wiring="prefect1",
            kind="static graph, executed by Dask worker processes",
            bench_note=(
                "The same flow runner, graph sort and per-task state handling as the local "
                "executor, but every task is a Dask future run by one of 2 worker processes, "
                "its inputs and result pickled across; each flow run also connects a Dask client "
                "to the cluster. The samples cover this process only (submitting tasks and "
                "waiting on futures), not the workers; their memory counts in the peak."
            ),
            docs={**PREFECT1_DOCS, "home": f"{P1}/concepts/engine.html#executors"},
            bench_why=(
                "The same runner, and every task a Dask future whose inputs and result are "
                "pickled to and from a worker process."
            ),
            choose_when=(
                Point(
                    "Choose the Dask executor when the same static graph must run in parallel "
                    "worker processes; the price: a timeout there marks the task failed on time "
                    "but does not stop its work, and each task costs more",
                    ("timeouts", "cost"),
                ),
            ),
        ),
        Engine(
            key="prefect2",
            label="Prefect 2.x",
            wiring="prefect2",
            kind="dynamic flow: the graph is whatever the Python code calls",
            graph_note=PREFECT_GRAPH,
            bench_note=(
                "Every task run is created and moved through its states (Pending, Running, "
                "Completed) by calls to Prefect's API, which 2.x serves in-process from SQLite: "
                "each task pays those writes before the next can start."
            ),
            docs={
                "home": f"{P2}/",
                "retries": f"{P2}/concepts/tasks/#retries",
                "fallback": f"{P2}/concepts/states/#return-prefect-state",
                "timeout": f"{P2}/concepts/tasks/#timeouts",
                "notifications": f"{P2}/guides/state-change-hooks/",
                "fanout": f"{P2}/concepts/tasks/#map",
                "quality_gate": f"{P2}/concepts/flows/#final-state-determination",
                "resume": f"{P2}/concepts/tasks/#caching",
                "loop": f"{P2}/concepts/flows/",
            },
            bench_why=(
                "Every state change of every task run is a call to Prefect's API, which 2.x "
                "serves in-process from SQLite."
            ),
            bench_regime=(
                "one regime. Its API runs inside the flow's own process and each task run's "
                "states are written to its SQLite database before the task goes on, so a run "
                "leaves the next one nothing to wait for; the bench counts the task-run states "
                "in that database against those the flows ran, before and after every run:"
            ),
            choose_when=(
                Point(
                    "Choose Prefect 2.x when the shape of the work is only known at run time (a "
                    "list of candidates, a loop until good) and you want to write it as plain "
                    "Python, with a cache to skip finished work after a fix; the price: an API "
                    "write per state change of every task",
                    ("fanout", "loop", "resume", "cost"),
                ),
            ),
        ),
        Engine(
            key="prefect3",
            label="Prefect 3.x",
            wiring="prefect2",
            kind="dynamic flow, events recorded by an API server",
            graph_note=PREFECT_GRAPH,
            bench_note=(
                "3.x runs the task engine in the client and reports states to its API server "
                "(another process, not sampled here) as events, so the flow's own thread does "
                "less bookkeeping per task; the figures include waiting until the events are "
                "sent."
            ),
            docs={
                "home": f"{P3}/get-started/index",
                "retries": f"{P3}/how-to-guides/workflows/retries",
                "fallback": f"{P3}/concepts/states#task-return-values",
                "timeout": f"{P3}/how-to-guides/workflows/write-and-run#task-timeout-behavior",
                "notifications": f"{P3}/how-to-guides/workflows/state-change-hooks",
                "fanout": f"{P3}/api-ref/python/prefect-tasks",
                "quality_gate": f"{P3}/concepts/states#final-state-determination",
                "resume": f"{P3}/concepts/caching",
                "loop": f"{P3}/how-to-guides/workflows/write-and-run",
            },
            bench_why=(
                "The task engine runs in the client and sends its states to a separate API "
                "server as events."
            ),
            bench_regime=(
                "two regimes. Its task engine runs in the flow's process and sends each task "
                "run's states as events; the API server stores them afterwards ([task-run "
                f"events]({P3}/api-ref/events/task-run-events): task states are managed by the "
                "task engine, not proposed to the server), its task-run recorder writing them "
                "to the server's database in batches, long after the flow returned. On SQLite "
                f"(the default, recommended for lightweight single-server use: [the Prefect "
                f"database]({P3}/concepts/server)) those writes hold its one write lock: a run "
                "that starts meanwhile has its flow-run creation refused with 503 (retryable) "
                "and the client retries after about 2, 4, 8… s ([client/base.py](https://"
                "github.com/PrefectHQ/prefect/blob/3.9.1/src/prefect/client/base.py#L546-L656)), "
                "so such a run costs the backlog, not its N. Counted in the server's database "
                "and log, before and after every run:"
            ),
            choose_when=(
                Point(
                    "Choose Prefect 3.x for the dynamic flows of 2.x on the current major: the "
                    "same code ran unchanged to the same outcomes here, but the rules behind them "
                    "changed (a flow no longer fails because a task run failed; any TimeoutError "
                    "is `TimedOut`), and a run started while its server still stores the last "
                    "run's events waits for it",
                    ("final-state", "fallback", "cost"),
                ),
            ),
        ),
        Engine(
            key="airflow",
            label="Airflow 3",
            wiring="airflow",
            kind="static DAG of TaskFlow tasks, scheduled from a metadata database",
            bench_note=(
                "dag.test() runs every task in this process but schedules as Airflow does, "
                "through the metadata database (SQLite): each pass of its loop reads all the "
                "DAG run's task instances to find those whose upstreams are done, and each "
                "task instance is moved through its states and stores its result as an XCom "
                "row, over the in-process Execution API. A chain frees one task per pass, so "
                "its passes re-read N task instances N times and its time grows faster than N; "
                "a fan-out's mapped instances are all ready in one pass, and the join reads "
                "their XComs one request per item. Each run also parses the DAG file twice, as "
                "`python dag_file.py` ending in dag.test() does: to build the DAG, then to sync "
                "the DAGs folder to the database (a scheduler's DAG processor does that ahead of "
                "runs). The first flow run's figure adds `airflow db migrate` of a fresh "
                "metadata database (a subprocess) and, in the first dag.test(), the in-process "
                "Execution API. The chain of 1,000 ran once: its one run takes most of the "
                "bench's budget (`BENCH_BUDGET_S` in noxfile.py)."
            ),
            docs={
                "home": f"{AF}/",
                "retries": f"{AF}/core-concepts/tasks.html",
                "fallback": f"{AF}/core-concepts/dags.html#trigger-rules",
                "timeout": f"{AF}/core-concepts/tasks.html#timeouts",
                "notifications": (
                    f"{AF}/administration-and-deployment/logging-monitoring/callbacks.html"
                ),
                "fanout": f"{AF}/authoring-and-scheduling/dynamic-task-mapping.html",
                "quality_gate": (
                    "https://airflow.apache.org/docs/apache-airflow-providers-standard/stable/"
                    "operators/python.html#shortcircuitoperator"
                ),
                "resume": f"{AF}/core-concepts/dag-run.html#re-run-tasks",
                "loop": f"{AF}/core-concepts/dags.html#branching",
            },
            bench_why=(
                "dag.test() schedules through the metadata database: each pass reads the DAG "
                "run's task instances, and each result is an XCom row."
            ),
            choose_when=(
                Point(
                    "Choose Airflow 3 for scheduled, operated pipelines whose shape is fixed "
                    "when the run starts: a failed run is repaired in place by clearing only "
                    "its failed tasks, and a callback can tell of every retry; the price: no "
                    "degraded state, a loop declared up front as rounds, and a database "
                    "round-trip per task",
                    ("resume", "notifications", "fallback", "loop", "cost"),
                ),
            ),
        ),
    )
}


def engine(key: str) -> Engine:
    """The engine's row, or a plain one for an engine that has records but no row yet."""
    return ENGINES.get(key) or Engine(key=key, label=key, wiring=key, docs={})


def engine_order(keys: list[str]) -> list[str]:
    known = [k for k in ENGINES if k in keys]
    return known + sorted(k for k in keys if k not in ENGINES)


# How an engine's other runtimes are named beside its label (a record's `runtime` says it all).
RUNTIME_LABELS = {
    "prefect2-deployed": "under a process worker",
    "prefect3-deployed": "under a process worker",
    "prefect3-heartbeat": "a process of its own, heartbeats",
    "airflow-deployed": "scheduler, task process killed",
    "airflow-supervisor": "scheduler, supervisor killed",
}


def runtime_label(record: RunRecord) -> str:
    """Beside the engine's label: which of its runtimes ran (nothing for its own column's)."""
    return RUNTIME_LABELS.get(record.engine, "")
