"""What each engine does when its user sets nothing, per lesson, with a link to where it says so.

These are the engines' documented defaults (not measurements): the lessons print them beside the
setting this suite used, which comes from the records.
"""

from __future__ import annotations

P1 = "https://docs-v1.prefect.io"
P1_SRC = "https://github.com/PrefectHQ/prefect/blob/1.4.1/src/prefect"
P2 = "https://docs-2.prefect.io/latest"
P3 = "https://www.prefect.io/docs/v3"
P3_SRC = "https://github.com/PrefectHQ/prefect/blob/3.9.1/src/prefect"
AF = "https://airflow.apache.org/docs/apache-airflow/stable"
PY = "https://docs.python.org/3"

PREFECT = {
    "downstream": (
        "no trigger rules: a task given a failed upstream's future is not run (`NotReady`), "
        "and code after an exception is not reached, so those tasks are never created "
        f"([flows]({P2}/concepts/flows/))"
    ),
    "retries": f"`retries=0`, `retry_delay_seconds=0` ([tasks]({P2}/concepts/tasks/#retries))",
    "timeouts": f"`timeout_seconds=None`: no timeout ([tasks]({P2}/concepts/tasks/#timeouts))",
    "notifications": f"no hooks ([state change hooks]({P2}/guides/state-change-hooks/))",
    "fanout": (
        "`.map()` gives one future per item; reading a failed one's result raises "
        f"([map]({P2}/concepts/tasks/#map))"
    ),
    "loop": f"a Python `while` in the flow ([flows]({P2}/concepts/flows/))",
}

DEFAULTS: dict[str, dict[str, str]] = {
    "python": {
        "downstream": (
            f"an exception stops the code after it unless caught ([errors]({PY}/tutorial/"
            "errors.html#handling-exceptions))"
        ),
        "retries": "none: a retry is a loop written by hand",
        "timeouts": f"none: the control arms [`signal.setitimer`]({PY}/library/signal.html)",
        "resume": "none: the control writes and reads its own checkpoints",
        "notifications": "none: a function called where the exception is caught",
        "final-state": "whatever the code returns or raises",
    },
    "prefect1": {
        "downstream": (
            "trigger `all_successful`: a task whose upstream failed ends `TriggerFailed` "
            f"([triggers]({P1}/core/concepts/execution.html#triggers))"
        ),
        "retries": (
            f"`max_retries=0` ([config.toml]({P1_SRC}/config.toml#L148-L153), "
            f"[retries]({P1}/core/concepts/tasks.html#retries))"
        ),
        "timeouts": f"`timeout=None`: no timeout ([Task]({P1}/api/latest/core/task.html))",
        "resume": (
            "checkpointing off in a local `flow.run()` (`flows.checkpointing = false`): a "
            "`target` takes effect once it is on ([persistence]"
            f"({P1}/core/concepts/persistence.html))"
        ),
        "notifications": (
            f"no state handlers ([notifications]({P1}/core/concepts/notifications.html))"
        ),
        "fanout": (
            "a failed mapped child fails its downstream tasks (trigger `all_successful`) "
            f"([mapping]({P1}/core/concepts/mapping.html))"
        ),
        "loop": f"no loops: one task raises `LOOP` ([task looping]({P1}/core/advanced_tutorials/"
        "task-looping.html))",
        "final-state": (
            "the flow's state is its reference tasks' states, by default its terminal tasks "
            f"([reference tasks]({P1}/core/concepts/flows.html#reference-tasks))"
        ),
    },
    "prefect2": {
        **PREFECT,
        "resume": (
            "no cache unless a task has a `cache_key_fn` (and its result is persisted) "
            f"([caching]({P2}/concepts/tasks/#caching))"
        ),
        "final-state": (
            "a flow that returns nothing fails if any of its task runs failed "
            f"([final state]({P2}/concepts/flows/#final-state-determination))"
        ),
    },
    "prefect3": {
        **PREFECT,
        "retries": (
            f"`retries=0`, `retry_delay_seconds=0` ([retries]({P3}/how-to-guides/workflows/"
            "retries))"
        ),
        "resume": (
            "the default cache policy keys on the inputs, the task's source and the flow run "
            "id, and results are not persisted: nothing is reused across flow runs "
            f"([cache_policies.py]({P3_SRC}/cache_policies.py#L434), [caching]({P3}/concepts/"
            "caching))"
        ),
        "final-state": (
            "a flow fails only if an exception leaves it or it returns a failed state: a failed "
            f"task run that the flow does not raise does not fail it ([final state]({P3}/"
            "concepts/states#final-state-determination))"
        ),
    },
    "airflow": {
        "downstream": (
            "`trigger_rule='all_success'`: a task whose upstream failed ends `upstream_failed` "
            f"([trigger rules]({AF}/core-concepts/dags.html#trigger-rules))"
        ),
        "retries": (
            "`retries=0`, `retry_delay` 300 s (`[core] default_task_retries`, "
            f"`default_task_retry_delay`; [configuration]({AF}/configurations-ref.html"
            "#default-task-retries))"
        ),
        "timeouts": (
            "`execution_timeout=None` (`[core] default_task_execution_timeout` is empty) "
            f"([timeouts]({AF}/core-concepts/tasks.html#timeouts))"
        ),
        "resume": (
            "a DAG run keeps its task instances: clearing the failed ones runs only them again, "
            f"in the same DAG run ([re-run tasks]({AF}/core-concepts/dag-run.html#re-run-tasks))"
        ),
        "notifications": (
            f"no callbacks ([callbacks]({AF}/administration-and-deployment/logging-monitoring/"
            "callbacks.html))"
        ),
        "fanout": (
            "the join's default trigger rule `all_success` makes one failed mapped instance "
            f"fail the join ([dynamic task mapping]({AF}/authoring-and-scheduling/"
            "dynamic-task-mapping.html))"
        ),
        "loop": (
            "no loops in a DAG run: the graph is fixed when the run starts "
            f"([DAGs]({AF}/core-concepts/dags.html))"
        ),
        "final-state": (
            "a DAG run succeeds when every leaf task succeeded or was skipped, and fails when a "
            f"leaf failed or was upstream_failed ([DAG run status]({AF}/core-concepts/"
            "dag-run.html#dag-run-status))"
        ),
    },
}
DEFAULTS["prefect1-dask"] = DEFAULTS["prefect1"]
