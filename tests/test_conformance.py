"""The conformance suite: every scenario through the engine of this nox session, checked against
the shared spec and the steps' own attempt log. These runs' records are the ones the report uses.

Every scenario runs on the session's database (PIPELINE_DB, SQLite by default); the database
scenarios also run on PostgreSQL, and the control runs the whole catalogue on both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import databases_for

from shared_pipeline.conformance import check_record
from shared_pipeline.faults_plan import HANG_FAULTS
from shared_pipeline.records import DATABASES, read_record, record_path
from shared_pipeline.scenarios import CATALOGUE, Scenario

ENGINE = os.environ.get("PIPELINE_ENGINE", "python")
OUT = Path(os.environ.get("PIPELINE_OUT", "."))


# Under `pytest -n 2` (most nox sessions): one worker runs the scenarios that mostly wait (hangs
# run to their timeouts), one after the other, while the other worker's work overlaps their
# waiting. With more workers (Airflow's session) each goes to a worker of its own, longest
# first. One worker runs every PostgreSQL case, so one server is started, not two.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def _waits(scenario: Scenario) -> bool:
    return any(rule.kind in HANG_FAULTS for rule in scenario.faults)


def _group(scenario: Scenario, db: str) -> str | None:
    if db == "postgres":
        return "postgres"
    if scenario.schedule:
        # The schedule's scenarios backfill the same months: where an engine keeps one run per
        # month of a flow (Airflow's DAG runs by data interval), one may start only once the
        # other has finished.
        return "schedule"
    return "waiting" if WORKERS <= 2 and _waits(scenario) else None


def _recorded_s(scenario_id: str, db: str) -> float:
    """How long this engine's last committed run of the case took (0 if it has none)."""
    path = record_path(OUT / "results", ENGINE, scenario_id, DATABASES[db])
    try:
        return float(json.loads(path.read_text())["wall_seconds"])
    except (OSError, ValueError, KeyError):
        return 0.0


def _cases() -> list[tuple[str | None, Scenario, str]]:
    """The cases in the order pytest-xdist hands them out: longest work first (a group counts as
    its cases together), so that the last case sent is short and no worker finishes long after
    the other. The lengths are the engine's last committed records (one run each: a guide, not a
    measurement). Sent in catalogue order, Prefect 1's schedule group (19 s) and its Dask kill
    (10 s) went last, each onto the worker that was already the longer.
    """
    cases = [
        (_group(scenario, db), scenario, db)
        for scenario in CATALOGUE
        for db in databases_for(ENGINE, scenario.id)
    ]
    length: dict[str, float] = {}
    for group, scenario, db in cases:
        key = group or f"{scenario.id}-{db}"
        length[key] = length.get(key, 0.0) + _recorded_s(scenario.id, db)
    # Without records (a new engine, or PIPELINE_OUT elsewhere): the groups first, as they wait.
    return sorted(cases, key=lambda c: (-length[c[0] or f"{c[1].id}-{c[2]}"], c[0] is None))


CASES = [
    pytest.param(
        scenario.id,
        db,
        id=f"{scenario.id}-{db}",
        marks=[pytest.mark.xdist_group(group)] if group else [],
    )
    for group, scenario, db in _cases()
]


@pytest.mark.parametrize(("scenario_id", "db"), CASES)
def test_scenario_conforms_to_spec(
    adapter, pipeline_out, scenario_run, scenario_id: str, db: str
) -> None:
    record = scenario_run(scenario_id, db)

    stored = read_record(
        record_path(pipeline_out / "results", adapter.name, scenario_id, record.db_backend)
    )
    assert stored == record
    problems = check_record(stored)
    assert not problems, "\n".join(problems)  # the whole message, and where to fix it
