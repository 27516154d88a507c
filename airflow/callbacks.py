"""Task and DAG callbacks that write failures and retries to the run's notification sink."""

from __future__ import annotations

from typing import Any

from shared_pipeline import steps
from shared_pipeline.notifications import notify
from shared_pipeline.vocabulary import NotificationEvent

# The monthly DAG's task groups, named by the role of their month in a run.
ROLES = ("train_month", "valid_month")


def shared_task_id(task_id: str, map_label: str | None = None, months: tuple[str, ...] = ()) -> str:
    """The shared id of a task instance: `2024-02.extract` -> `extract[2024-02]`.

    Task groups hold the key of a static task, or the role of a monthly run's month (given its
    `months`: `train_month.extract` -> `extract[2024-05]`); a mapped instance is named by its
    rendered map index (`train` + `ridge` -> `train[ridge]`).
    """
    group, _, name = task_id.rpartition(".")
    key = map_label or dict(zip(ROLES, months, strict=False)).get(group, group)
    return f"{name}[{key}]" if key else name


def _map_label(ti: Any) -> str | None:
    if getattr(ti, "map_index", -1) < 0:
        return None
    return getattr(ti, "rendered_map_index", None) or str(ti.map_index)


def _months(context: Any) -> tuple[str, ...]:
    """The months of a monthly run (from its data interval), for its tasks named by role."""
    if context["dag"].dag_id != "monthly_training":
        return ()
    return tuple(steps.run_months(context["params"]["run_dir"], context["data_interval_end"]))


# report: begin notifications
def _task_event(context: Any, event: NotificationEvent, state: str) -> None:
    ti = context["ti"]
    exception = context.get("exception")
    notify(
        context["params"]["run_dir"],
        event,
        task=shared_task_id(ti.task_id, _map_label(ti), _months(context)),
        engine_state=state,
        message=f"{type(exception).__name__}: {exception}" if exception else "",
    )


def notify_task_failed(context: Any) -> None:
    _task_event(context, NotificationEvent.TASK_FAILED, "failed")


def notify_task_retry(context: Any) -> None:
    _task_event(context, NotificationEvent.TASK_RETRY, "up_for_retry")


def notify_dag_failed(context: Any) -> None:
    notify(
        context["params"]["run_dir"],
        NotificationEvent.FLOW_FAILED,
        task=None,
        engine_state="failed",
        message=str(context.get("reason") or ""),
    )


# report: end notifications
