"""The notification sink: a JSON-lines file in the run directory that failure hooks write."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shared_pipeline.context import append_event, current_run, read_events
from shared_pipeline.vocabulary import NotificationEvent

SINK = "notifications.jsonl"


def notify(
    run_dir: str | Path,
    event: NotificationEvent | str,
    *,
    task: str | None,
    engine_state: str,
    message: str = "",
) -> None:
    """Append one notification; safe across processes (one O_APPEND write per line)."""
    append_event(
        run_dir,
        SINK,
        {
            "event": str(NotificationEvent(event)),
            "task": task,
            "engine_state": engine_state,
            "message": message[:500],
            "pid": os.getpid(),  # where the hook ran: the runner, a task's process, a service
        },
    )


def read_notifications(run_dir: str | Path, run: int | None = None) -> list[dict]:
    return read_events(run_dir, SINK, run)


def wait_for_flow_failed(run_dir: str | Path, limit_s: float, count: int = 1) -> bool:
    """Wait at most `limit_s` for `count` flow_failed notifications of the current flow run: from
    a hook an engine runs in another process after the run has ended (so it lands in this run).
    """
    run = current_run(run_dir)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        failed = [
            n
            for n in read_notifications(run_dir, run)
            if n["event"] == NotificationEvent.FLOW_FAILED
        ]
        if len(failed) >= count:
            return True
        time.sleep(0.2)
    return False
