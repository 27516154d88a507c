"""A task-runner state handler that keeps every state change Prefect 1 reports, for the records.

`flow.run()` returns only each task's final state; retries, loops and their times are seen only
by state handlers. Under Dask they run in the worker processes, so each change is one line
appended to a file in the run directory.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import prefect

from shared_pipeline.context import current_run, run_path

LOG = "prefect1-transitions.jsonl"


def record_transition(task_runner: Any, old_state: Any, new_state: Any) -> Any:
    ctx = prefect.context
    run_dir = ctx.parameters["run_dir"]
    line = json.dumps(
        {
            "run": current_run(run_dir),
            "task": task_runner.task.name,
            "map_index": ctx.get("map_index"),
            "run_name": ctx.get("task_run_name"),
            "old": type(old_state).__name__,
            "new": type(new_state).__name__,
            "message": new_state.message,
            "run_count": ctx.get("task_run_count", 1),
            "loop_count": getattr(new_state, "loop_count", None),
            "at": datetime.now(UTC).isoformat(),
        }
    )
    fd = os.open(run_path(run_dir, LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return new_state


def read_transitions(run_dir: str, run: int) -> list[dict[str, Any]]:
    path = Path(run_dir) / LOG
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if e["run"] == run]
