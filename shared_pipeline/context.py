"""The run context: everything a step needs, saved as JSON in the run directory.

Engines pass only `run_dir` (a string) to tasks, so any process can rebuild the context.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared_pipeline.faults_plan import FaultRule
from shared_pipeline.settings import Settings

CONTEXT_FILE = "context.json"
RUN_NUMBER_FILE = "current_run"


class RunContext(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: str
    scenario: str
    engine: str
    db_url: str
    api_url: str
    api_control_url: str
    settings: Settings
    faults: tuple[FaultRule, ...] = ()

    @property
    def path(self) -> Path:
        return Path(self.run_dir)

    def save(self) -> None:
        (self.path / CONTEXT_FILE).write_text(self.model_dump_json(indent=2))


@functools.lru_cache(maxsize=32)
def _load(run_dir: str, mtime_ns: int) -> RunContext:
    return RunContext.model_validate_json((Path(run_dir) / CONTEXT_FILE).read_text())


def load_context(run_dir: str | Path) -> RunContext:
    path = Path(run_dir) / CONTEXT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a prepared run directory?")
    return _load(str(Path(run_dir)), path.stat().st_mtime_ns)


def run_path(run_dir: str | Path, *parts: str) -> Path:
    return Path(run_dir).joinpath(*parts)


def current_run(run_dir: str | Path) -> int:
    """Which flow run of the scenario is in progress (1, or 2 after a fix); set by the harness."""
    path = run_path(run_dir, RUN_NUMBER_FILE)
    return int(path.read_text()) if path.exists() else 1


def set_current_run(run_dir: str | Path, run: int) -> None:
    run_path(run_dir, RUN_NUMBER_FILE).write_text(str(run))


def append_event(run_dir: str | Path, log: str, entry: dict[str, Any]) -> None:
    """Append `entry` (stamped with the flow run and the time) to the run's JSON-lines `log`.

    One O_APPEND write per line, so hooks in other processes (Dask workers) never interleave.
    """
    line = json.dumps({"run": current_run(run_dir), **entry, "at": datetime.now(UTC).isoformat()})
    fd = os.open(run_path(run_dir, log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_events(run_dir: str | Path, log: str, run: int | None = None) -> list[dict[str, Any]]:
    """The entries of `log` (of flow run `run` only, if given), in the order they were written."""
    path = run_path(run_dir, log)
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if run is None or e["run"] == run]
