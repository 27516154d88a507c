"""A task-runner state handler that keeps every state change Prefect 1 reports, for the records.

`flow.run()` returns only each task's final state; retries, loops and their times are seen only
by state handlers. Under Dask they run in the worker processes, so each change is one line
appended to a file in the run directory.
"""

from __future__ import annotations

from typing import Any

import prefect

from shared_pipeline.context import append_event, read_events

LOG = "prefect1-transitions.jsonl"


def record_transition(task_runner: Any, old_state: Any, new_state: Any) -> Any:
    ctx = prefect.context
    run_dir = ctx.parameters["run_dir"]
    append_event(
        run_dir,
        LOG,
        {
            "task": task_runner.task.name,
            "map_index": ctx.get("map_index"),
            "run_name": ctx.get("task_run_name"),
            "old": type(old_state).__name__,
            "new": type(new_state).__name__,
            "message": new_state.message,
            "run_count": ctx.get("task_run_count", 1),
            "loop_count": getattr(new_state, "loop_count", None),
        },
    )
    return new_state


def read_transitions(run_dir: str, run: int) -> list[dict[str, Any]]:
    return read_events(run_dir, LOG, run)
