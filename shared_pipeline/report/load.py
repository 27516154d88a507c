"""The records the report is made of: results/<engine>/<scenario>.json, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared_pipeline.engine_table import RUNTIME_OF
from shared_pipeline.probes import ProbeRecord, read_probe
from shared_pipeline.records import RunRecord, read_record
from shared_pipeline.report.engines import engine_order
from shared_pipeline.scenarios import CATALOGUE, SCENARIOS, Scenario


@dataclass(frozen=True)
class Records:
    by_engine: dict[str, dict[str, RunRecord]]  # engine -> scenario id -> record
    engines: list[str]  # in the report's column order
    scenarios: list[str]  # catalogue order, then scenarios the catalogue no longer has
    # Runs on another source database (results/<engine>/<backend>/): backend -> Records.
    other_backends: dict[str, Records] = field(default_factory=dict)
    # An engine's second runtime (results/<engine>-deployed/): test-mode engine -> scenario ->
    # record; compared with the test mode in a lesson of its own, not given columns.
    deployed: dict[str, dict[str, RunRecord]] = field(default_factory=dict)
    # Its other runtimes (engine_table.RUNTIME_OF): runtime engine -> scenario -> record.
    variants: dict[str, dict[str, RunRecord]] = field(default_factory=dict)

    def get_deployed(self, engine: str, scenario: str) -> RunRecord | None:
        return self.deployed.get(engine, {}).get(scenario)

    def runtimes(self, engine: str, scenario: str) -> list[RunRecord]:
        """`engine`'s records of `scenario` in each of its runtimes: test mode, deployed, others."""
        found = [self.get(engine, scenario), self.get_deployed(engine, scenario)]
        found += [
            records.get(scenario)
            for variant, records in sorted(self.variants.items())
            if RUNTIME_OF[variant] == engine
        ]
        return [r for r in found if r is not None]

    def of_runtime(self, runtime_engine: str, scenario: str) -> RunRecord | None:
        """The record of `scenario` by the engine named `runtime_engine` in records (prefect3,
        prefect3-deployed, airflow-supervisor), whichever runtime that is.
        """
        if runtime_engine in self.variants:
            return self.variants[runtime_engine].get(scenario)
        if runtime_engine.endswith(DEPLOYED):
            return self.get_deployed(runtime_engine.removesuffix(DEPLOYED), scenario)
        return self.get(runtime_engine, scenario)

    def get(self, engine: str, scenario: str) -> RunRecord | None:
        return self.by_engine.get(engine, {}).get(scenario)

    def all(self) -> list[RunRecord]:
        """Every record, on every source database and runtime."""
        runtimes = [*self.by_engine.values(), *self.deployed.values(), *self.variants.values()]
        own = [r for records in runtimes for r in records.values()]
        return own + [r for other in self.other_backends.values() for r in other.all()]

    def count(self) -> int:
        return len(self.all())


DEPLOYED = "-deployed"  # the engine name of a test-mode engine's deployed runtime


def _index(paths: list[Path]) -> Records:
    by_engine: dict[str, dict[str, RunRecord]] = {}
    deployed: dict[str, dict[str, RunRecord]] = {}
    variants: dict[str, dict[str, RunRecord]] = {}
    for path in paths:
        record = read_record(path)
        if record.engine.endswith(DEPLOYED):
            deployed.setdefault(record.engine.removesuffix(DEPLOYED), {})[record.scenario] = record
        elif record.engine in RUNTIME_OF:
            variants.setdefault(record.engine, {})[record.scenario] = record
        else:
            by_engine.setdefault(record.engine, {})[record.scenario] = record
    seen = {scenario for records in by_engine.values() for scenario in records}
    scenarios = [s.id for s in CATALOGUE if s.id in seen] + sorted(seen - set(SCENARIOS))
    return Records(
        by_engine, engine_order(list(by_engine)), scenarios, deployed=deployed, variants=variants
    )


def load_records(results: Path) -> Records:
    """results/<engine>/<scenario>.json (the default database), and beside them
    results/<engine>/<backend>/<scenario>.json for runs on another one. results/bench/ holds
    benchmark figures, results/probes/ the probes' answers and results/ui/ the manifests of the
    UIs' screenshots, not run records.
    """
    apart = {"bench", "probes", "ui"}  # not run records
    default = sorted(p for p in results.glob("*/*.json") if p.parent.name not in apart)
    others: dict[str, list[Path]] = {}
    for path in sorted(results.glob("*/*/*.json")):
        if path.parent.parent.name not in apart:
            others.setdefault(path.parent.name, []).append(path)
    records = _index(default)
    records.other_backends.update({backend: _index(paths) for backend, paths in others.items()})
    return records


def scenario_of(scenario_id: str) -> Scenario | None:
    return SCENARIOS.get(scenario_id)


def load_probes(results: Path) -> dict[tuple[str, str], ProbeRecord]:
    """results/probes/<engine>/<probe>.json, by (engine, probe)."""
    found = {}
    for path in sorted(results.glob("probes/*/*.json")):
        record = read_probe(path)
        found[record.engine, record.probe] = record
    return found
