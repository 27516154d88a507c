"""State handlers that write failures to the run's notification sink.

Prefect 1 calls a task's handlers on every state change, also for a failed attempt that will be
retried and for the `TriggerFailed` of tasks downstream of a failure: only a task's last failure
is a notification. Under Dask they run in the worker processes, so they write to files.
"""

from __future__ import annotations

from typing import Any

import prefect
from prefect.engine.state import State, TriggerFailed

from shared_pipeline.notifications import notify
from shared_pipeline.vocabulary import NotificationEvent


# report: begin notifications
def notify_task_failed(task: Any, old_state: State, new_state: State) -> State:
    retries_left = prefect.context.get("task_run_count", 1) <= task.max_retries
    if new_state.is_failed() and not isinstance(new_state, TriggerFailed) and not retries_left:
        notify(
            prefect.context.parameters["run_dir"],
            NotificationEvent.TASK_FAILED,
            # A mapped child's templated run name (train[ridge]), else the task's own name.
            task=prefect.context.get("task_run_name") or prefect.context.get("task_full_name"),
            engine_state=type(new_state).__name__,
            message=new_state.message or "",
        )
    return new_state


def notify_flow_failed(flow: Any, old_state: State, new_state: State) -> State:
    if new_state.is_failed():
        notify(
            prefect.context.parameters["run_dir"],
            NotificationEvent.FLOW_FAILED,
            task=None,
            engine_state=type(new_state).__name__,
            message=new_state.message or "",
        )
    return new_state


# Every task and flow of flows.py is declared with these.
NOTIFIED: dict[str, Any] = dict(state_handlers=[notify_task_failed])
FLOW_NOTIFIED: dict[str, Any] = dict(state_handlers=[notify_flow_failed])
# report: end notifications
