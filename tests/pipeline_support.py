"""Helpers for the step-level suites: a prepared run directory, as harness.run_scenario makes one.

Not a test module: imported by test_faults, test_steps and test_registry.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shared_pipeline import harness, registry, steps
from shared_pipeline.context import RunContext
from shared_pipeline.data import generate_month, load_months
from shared_pipeline.enrichment_api import EnrichmentAPI
from shared_pipeline.faults import init_attempt_log
from shared_pipeline.faults_plan import FaultRule
from shared_pipeline.settings import Settings

SMALL = Settings(trips_per_month=2000)


def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated empty MLflow store per test session (migrating a new one takes seconds)."""
    return tmp_path_factory.getbasetemp() / "mlflow-cache" / "mlflow-empty.db"


@functools.cache
def month_frame(month: str, n_trips: int, corrupt: bool = False) -> pd.DataFrame:
    """Cached generated month; callers must not mutate it."""
    return generate_month(month, n_trips, corrupt=corrupt)


def prepare_run_dir(
    run_dir: Path,
    api: EnrichmentAPI,
    *,
    settings: Settings = SMALL,
    faults: tuple[FaultRule, ...] = (),
    corrupt_months: tuple[str, ...] = (),
    seed_production: bool = False,
    mlflow_template: Path | None = None,
    scenario: str = "unit-test",
) -> RunContext:
    """A run directory with its own SQLite source, attempt log, saved context (and registry)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    source = run_dir / "source" / "trips.db"
    source.parent.mkdir()
    db_url = f"sqlite:///{source}"
    months = (settings.production_month, settings.train_month, settings.valid_month)
    load_months(
        db_url,
        {m: month_frame(m, settings.trips_per_month, m in corrupt_months) for m in months},
    )
    init_attempt_log(run_dir)
    if seed_production:
        registry.create_store(run_dir, template=mlflow_template)
        harness._seed_production(run_dir, settings)
    ctx = RunContext(
        run_dir=str(run_dir),
        scenario=scenario,
        engine="unit-test",
        db_url=db_url,
        api_url=api.url,
        api_control_url=api.control_url,
        settings=settings,
        faults=faults,
    )
    ctx.save()
    return ctx


def read_both(ctx: RunContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """extract + read of the training and validation months, through the real steps."""
    run_dir, s = ctx.run_dir, ctx.settings
    train, valid = (
        steps.read(run_dir, month, steps.extract(run_dir, month))
        for month in (s.train_month, s.valid_month)
    )
    return train, valid


def unenriched_features(ctx: RunContext) -> dict[str, Any]:
    """extract, read and features without enrichment: what train/evaluate/register need."""
    train_read, valid_read = read_both(ctx)
    return steps.features(ctx.run_dir, train_read, valid_read, None)
