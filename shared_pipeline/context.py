"""The run context: everything a step needs, saved as JSON in the run directory.

Engines pass only `run_dir` (a string) to tasks, so any process can rebuild the context.
"""

from __future__ import annotations

import functools
from pathlib import Path

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
