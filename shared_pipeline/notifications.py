"""The notification sink: a JSON-lines file in the run directory that failure hooks write."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from shared_pipeline.context import current_run, run_path
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
    line = json.dumps(
        {
            "run": current_run(run_dir),
            "event": str(NotificationEvent(event)),
            "task": task,
            "engine_state": engine_state,
            "message": message[:500],
            "at": datetime.now(UTC).isoformat(),
        }
    )
    fd = os.open(run_path(run_dir, SINK), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_notifications(run_dir: str | Path, run: int | None = None) -> list[dict]:
    path = run_path(run_dir, SINK)
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if run is None or e["run"] == run]
