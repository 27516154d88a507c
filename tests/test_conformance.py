"""The conformance suite: every scenario through the engine of this nox session, checked against
the shared spec and the steps' own attempt log. These runs' records are the ones the report uses.

Every scenario runs on the session's database (PIPELINE_DB, SQLite by default); the database
scenarios also run on PostgreSQL, and the control runs the whole catalogue on both.
"""

from __future__ import annotations

import os

import pytest
from conftest import databases_for

from shared_pipeline.conformance import check_record
from shared_pipeline.faults_plan import HANG_FAULTS
from shared_pipeline.records import read_record, record_path
from shared_pipeline.scenarios import CATALOGUE, Scenario

ENGINE = os.environ.get("PIPELINE_ENGINE", "python")


# Under `pytest -n 2` (the nox sessions): one worker runs the scenarios that mostly wait (hangs
# run to their timeouts), one after the other, while the other worker's work overlaps their
# waiting; one worker runs every PostgreSQL case, so one server is started, not two.
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
    return "waiting" if _waits(scenario) else None


# The groups go out first, longest first (pytest-xdist hands out work in this order): each
# worker starts on a long group and the single cases fill in around them. Sent last, Prefect 1's
# schedule group (19 s) followed the waiting group's 22 s on the same worker's heels.
ORDER = {"waiting": 0, "schedule": 1, "postgres": 2, None: 3}
CASES = [
    pytest.param(
        scenario.id,
        db,
        id=f"{scenario.id}-{db}",
        marks=[pytest.mark.xdist_group(group)] if group else [],
    )
    for group, scenario, db in sorted(
        (
            (_group(scenario, db), scenario, db)
            for scenario in CATALOGUE
            for db in databases_for(ENGINE, scenario.id)
        ),
        key=lambda case: ORDER[case[0]],
    )
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
