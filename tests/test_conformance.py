"""The conformance suite: every scenario through the engine of this nox session, checked against
the shared spec and the steps' own attempt log. These runs' records are the ones the report uses.
"""

from __future__ import annotations

import pytest

from shared_pipeline.conformance import check_record
from shared_pipeline.records import read_record, record_path
from shared_pipeline.scenarios import CATALOGUE, Scenario


@pytest.mark.parametrize("scenario", CATALOGUE, ids=lambda s: s.id)
def test_scenario_conforms_to_spec(adapter, pipeline_out, scenario_run, scenario: Scenario) -> None:
    record = scenario_run(scenario.id)

    stored = read_record(record_path(pipeline_out / "results", adapter.name, scenario.id))
    assert stored == record
    assert check_record(stored) == []
