"""The records the report is made of: results/<engine>/<scenario>.json, nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared_pipeline.records import RunRecord, read_record
from shared_pipeline.report.engines import engine_order
from shared_pipeline.scenarios import CATALOGUE, SCENARIOS, Scenario


@dataclass(frozen=True)
class Records:
    by_engine: dict[str, dict[str, RunRecord]]  # engine -> scenario id -> record
    engines: list[str]  # in the report's column order
    scenarios: list[str]  # catalogue order, then scenarios the catalogue no longer has

    def get(self, engine: str, scenario: str) -> RunRecord | None:
        return self.by_engine.get(engine, {}).get(scenario)

    def count(self) -> int:
        return sum(len(records) for records in self.by_engine.values())


def load_records(results: Path) -> Records:
    by_engine: dict[str, dict[str, RunRecord]] = {}
    for path in sorted(results.glob("*/*.json")):
        if path.parent.name == "bench":
            continue
        record = read_record(path)
        by_engine.setdefault(record.engine, {})[record.scenario] = record
    seen = {scenario for records in by_engine.values() for scenario in records}
    scenarios = [s.id for s in CATALOGUE if s.id in seen] + sorted(seen - set(SCENARIOS))
    return Records(by_engine, engine_order(list(by_engine)), scenarios)


def scenario_of(scenario_id: str) -> Scenario | None:
    return SCENARIOS.get(scenario_id)
