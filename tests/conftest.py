"""Fixtures shared by the suites: which engine this nox session tests, and where records go."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from filelock import FileLock

from shared_pipeline.cli import load_adapter
from shared_pipeline.records import RunRecord, read_record, record_path
from shared_pipeline.scenarios import get_scenario
from shared_pipeline.wiring import wiring_of

if TYPE_CHECKING:  # the xdist controller loads this file too, and runs no scenario: it need not
    # import the harness (pandas, scikit-learn, SQLAlchemy: 1.5 CPU-seconds before any worker).
    from shared_pipeline.harness import EngineAdapter


@pytest.fixture(scope="session")
def engine_name() -> str:
    return os.environ.get("PIPELINE_ENGINE", "python")


@pytest.fixture(scope="session")
def adapter(engine_name: str, pipeline_out: Path) -> Iterator[EngineAdapter]:
    adapter = load_adapter(engine_name, pipeline_out)
    yield adapter
    adapter.close()


@pytest.fixture(scope="session")
def pipeline_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The nox sessions point this at the checkout, so the records they assert on are kept."""
    configured = os.environ.get("PIPELINE_OUT")
    return Path(configured) if configured else tmp_path_factory.mktemp("pipeline-out")


# The session's default source database (PIPELINE_DB, as for the CLI), and the scenarios every
# engine session also runs on PostgreSQL (the control runs all of them on both).
DEFAULT_DB = os.environ.get("PIPELINE_DB", "sqlite")
POSTGRES_SCENARIOS = ("happy_path", "db_maintenance", "db_down")


def databases_for(engine: str, scenario_id: str) -> list[str]:
    """The databases `engine` runs `scenario_id` on (none: not a scenario its wiring runs)."""
    wiring = wiring_of(engine)
    if wiring is not None and wiring.scenarios is not None and scenario_id not in wiring.scenarios:
        return []
    if wiring is not None and not wiring.other_databases:
        return [DEFAULT_DB]
    extra = engine == "python" or scenario_id in POSTGRES_SCENARIOS
    return sorted({DEFAULT_DB, "postgres"} if extra else {DEFAULT_DB})


# One id for the whole test run, the same in every xdist worker.
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


class ScenarioRuns:
    """Each scenario runs once per test run and database; later tests read the same record (one
    run, two uses), also in the other xdist worker, which waits if the run is under way.
    """

    def __init__(self, adapter: EngineAdapter, out: Path) -> None:
        self.adapter, self.out = adapter, out
        self.records: dict[tuple[str, str], RunRecord] = {}
        self.marks = out / "runs" / adapter.name / ".scenario-runs"
        self.marks.mkdir(parents=True, exist_ok=True)

    def __call__(self, scenario_id: str, db: str = DEFAULT_DB) -> RunRecord:
        from shared_pipeline.harness import DATABASES, run_scenario

        if (scenario_id, db) not in self.records:
            mark = self.marks / f"{scenario_id}.{db}"
            with FileLock(mark.with_name(mark.name + ".lock")):
                if mark.exists() and mark.read_text() == RUN_ID:
                    path = record_path(
                        self.out / "results", self.adapter.name, scenario_id, DATABASES[db]
                    )
                    record = read_record(path)
                else:
                    scenario = get_scenario(scenario_id)
                    record = run_scenario(self.adapter, scenario, self.out, db=db)
                    mark.write_text(RUN_ID)
            self.records[scenario_id, db] = record
        return self.records[scenario_id, db]


@pytest.fixture(scope="session")
def scenario_run(adapter: EngineAdapter, pipeline_out: Path) -> ScenarioRuns:
    return ScenarioRuns(adapter, pipeline_out)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run a scenario in a process of their own go first (see the own_process marker)."""
    items.sort(key=lambda item: item.get_closest_marker("own_process") is None)
