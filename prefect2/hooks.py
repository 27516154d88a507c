"""State-change hooks that write failures to the run's notification sink.

Prefect 2.x calls hooks with keyword arguments, so the parameter names must be exactly these.
"""

from __future__ import annotations

from typing import Any

from prefect import runtime

from shared_pipeline.notifications import notify
from shared_pipeline.vocabulary import NotificationEvent


# report: begin notifications
def notify_task_failed(task: Any, task_run: Any, state: Any) -> None:
    notify(
        runtime.flow_run.parameters["run_dir"],
        NotificationEvent.TASK_FAILED,
        task=task_run.name,
        engine_state=state.name,
        message=state.message or "",
    )


def notify_flow_failed(flow: Any, flow_run: Any, state: Any) -> None:
    notify(
        flow_run.parameters["run_dir"],
        NotificationEvent.FLOW_FAILED,
        task=None,
        engine_state=state.name,
        message=state.message or "",
    )
    # report: end notifications
