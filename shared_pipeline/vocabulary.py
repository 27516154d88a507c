"""The shared vocabulary that every engine's native states are mapped onto."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

_T = TypeVar("_T")


class StepState(StrEnum):
    """Final state of one task (step, or one branch of a fanned-out step) in one flow run."""

    COMPLETED = "completed"
    COMPLETED_AFTER_RETRY = "completed_after_retry"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    NOT_RUN_UPSTREAM_FAILED = "not_run_upstream_failed"
    SKIPPED = "skipped"
    CACHED = "cached"
    # Its process was killed and the engine never ended it: it still says running, or nothing
    # recorded it at all.
    LOST = "lost"


class FlowOutcome(StrEnum):
    """Final outcome of one flow run."""

    COMPLETED = "completed"
    # Completed, but through a fallback path (the engine's state says so, e.g. a state name).
    DEGRADED = "degraded"
    FAILED = "failed"
    # The process running the flow died and nothing ever ended the run.
    LOST = "lost"


class RegistryEffect(StrEnum):
    """What a flow run did to the model registry's production alias."""

    PROMOTED = "promoted"  # a new version was registered and became production
    REGISTERED_NOT_PROMOTED = "registered_not_promoted"  # registered, production kept
    UNCHANGED = "unchanged"  # nothing registered, production kept


class NotificationEvent(StrEnum):
    TASK_FAILED = "task_failed"
    TASK_RETRY = "task_retry"  # an engine's callback for a try that will be retried
    FLOW_FAILED = "flow_failed"


# The pipeline's steps, in order. A fanned-out or looped step appears once per key ("train[ridge]").
STEPS: tuple[str, ...] = (
    "extract",
    "read",
    "enrich",
    "features",
    "train",
    "evaluate",
    "gate",
    "register",
)


def task_id(step: str, key: str | None = None) -> str:
    """The id of one task in records and expectations: `train[ridge]`, or `extract`."""
    return f"{step}[{key}]" if key else step


def split_task_id(task: str) -> tuple[str, str | None]:
    """`train[ridge]` -> ("train", "ridge"); `enrich` -> ("enrich", None)."""
    step, _, key = task.partition("[")
    return step, key.removesuffix("]") or None


def task_state(table: Mapping[str, StepState], name: str, attempts: int, what: str) -> StepState:
    """`table[name]` (see map_native), and a task that completed after more than one attempt
    completed after a retry: the rule every adapter applies to its engine's attempt count.
    """
    state = map_native(table, name, what)
    if state is StepState.COMPLETED and attempts > 1:
        return StepState.COMPLETED_AFTER_RETRY
    return state


def map_native(table: Mapping[str, _T], name: str, what: str) -> _T:
    """`table[name]`: an adapter's explicit mapping table refuses a native name it does not know
    (`what` names it in the error, e.g. "shared state for task instance state").
    """
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"no {what} {name!r}") from None
