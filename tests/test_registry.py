"""The registry invariant: a failed run or a worse model never removes or replaces production."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from pipeline_support import (
    SMALL,
    mlflow_template,
    month_frame,
    prepare_run_dir,
    unenriched_features,
)

from shared_pipeline import ml, registry, steps
from shared_pipeline.conformance import check_record
from shared_pipeline.context import RunContext
from shared_pipeline.control import ControlAdapter
from shared_pipeline.enrichment_api import EnrichmentAPI
from shared_pipeline.harness import run_scenario
from shared_pipeline.records import RegistrySnapshot
from shared_pipeline.scenarios import SCENARIOS
from shared_pipeline.vocabulary import FlowOutcome, RegistryEffect, StepState


@pytest.fixture(scope="module")
def api() -> Iterator[EnrichmentAPI]:
    with EnrichmentAPI() as running:
        yield running


@pytest.fixture
def seeded(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, api: EnrichmentAPI
) -> tuple[RunContext, dict[str, Any]]:
    """A run directory whose registry holds the seeded production model (version 1)."""
    ctx = prepare_run_dir(
        tmp_path / "run",
        api,
        seed_production=True,
        mlflow_template=mlflow_template(tmp_path_factory),
    )
    return ctx, unenriched_features(ctx)


def valid_dicts(features: dict[str, Any]) -> list[dict[str, Any]]:
    with Path(features["path"]).open("rb") as handle:
        return pickle.load(handle)["valid"][0][:300]


def production_artifacts(run_dir: str | Path) -> Path:
    """Where the production version's model files are stored (a local folder)."""
    from mlflow import MlflowClient  # after shared_pipeline.registry, which configures MLflow

    uri = registry.tracking_uri(run_dir)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = registry.production_version(run_dir)
    assert version is not None
    location = client.get_model_version_download_uri(registry.MODEL_NAME, str(version))
    return Path(urlparse(location).path)


def seed_model_predictions(dicts: list[dict[str, Any]]) -> np.ndarray:
    """What the seeded production model predicts: linear, on the older month, no enrichment."""
    trips = ml.clean_trips(month_frame(SMALL.production_month, SMALL.trips_per_month))
    model = ml.make_model({"model": "linear"}).fit(
        ml.feature_dicts(trips, None), trips["duration"].to_numpy()
    )
    return model.predict(dicts)


def register_bad_model(ctx: RunContext, features: dict[str, Any]) -> dict[str, Any]:
    """A deliberately bad model (predicts 500 minutes for every trip), evaluated and registered."""
    with Path(features["path"]).open("rb") as handle:
        dicts, target = pickle.load(handle)["train"]
    bad = ml.make_model({"model": "linear"}).fit(dicts, np.full(len(target), 500.0))
    path = ctx.path / "models" / "bad.pkl"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(bad))
    evaluation = steps.evaluate(ctx.run_dir, features, [{"key": "bad", "model_path": str(path)}])
    return steps.register(ctx.run_dir, features, evaluation)


def test_a_worse_model_is_registered_but_production_stays(
    seeded: tuple[RunContext, dict[str, Any]],
) -> None:
    ctx, features = seeded
    dicts = valid_dicts(features)
    before = registry.load_production(ctx.run_dir).predict(dicts)
    np.testing.assert_allclose(before, seed_model_predictions(dicts))

    result = register_bad_model(ctx, features)

    assert result["promoted"] is False
    assert result["version"] == 2
    assert result["rmse"] > 100 > result["production_rmse"]
    # The new version exists; production is still version 1, with its files, predicting as before.
    assert registry.snapshot(ctx.run_dir) == {"versions": [1, 2], "production_version": 1}
    assert (production_artifacts(ctx.run_dir) / "MLmodel").is_file()
    np.testing.assert_allclose(registry.load_production(ctx.run_dir).predict(dicts), before)


def test_a_better_model_is_promoted_and_a_later_worse_one_does_not_replace_it(
    seeded: tuple[RunContext, dict[str, Any]],
) -> None:
    ctx, features = seeded
    dicts = valid_dicts(features)
    trained = steps.train(ctx.run_dir, features, {"key": "ridge", "model": "ridge", "alpha": 1.0})
    evaluation = steps.evaluate(ctx.run_dir, features, [trained])

    result = steps.register(ctx.run_dir, features, evaluation)

    assert result["promoted"] is True
    assert result["rmse"] < result["production_rmse"]
    assert registry.snapshot(ctx.run_dir) == {"versions": [1, 2], "production_version": 2}
    with Path(trained["model_path"]).open("rb") as handle:
        new_predictions = pickle.load(handle).predict(dicts)
    np.testing.assert_allclose(
        registry.load_production(ctx.run_dir).predict(dicts), new_predictions
    )

    worse = register_bad_model(ctx, features)

    assert worse["promoted"] is False
    assert worse["production_rmse"] == result["rmse"]
    assert registry.snapshot(ctx.run_dir) == {"versions": [1, 2, 3], "production_version": 2}
    np.testing.assert_allclose(
        registry.load_production(ctx.run_dir).predict(dicts), new_predictions
    )


@pytest.mark.timeout(120)
def test_a_failed_run_leaves_production_and_its_artifacts_in_place(tmp_path: Path) -> None:
    record = run_scenario(ControlAdapter(), SCENARIOS["db_down"], tmp_path, base_settings=SMALL)

    (run,) = record.runs
    assert run.outcome is FlowOutcome.FAILED
    assert run.task("register").state is StepState.NOT_RUN_UPSTREAM_FAILED
    assert run.registry_effect is RegistryEffect.UNCHANGED
    seeded = RegistrySnapshot(versions=[1], production_version=1)
    assert run.registry_before == run.registry_after == seeded
    assert check_record(record) == []

    run_dir = tmp_path / record.run_dir
    assert registry.snapshot(run_dir) == {"versions": [1], "production_version": 1}
    artifacts = production_artifacts(run_dir)
    assert artifacts.is_relative_to(run_dir)
    assert {"MLmodel", "model.skops"} <= {p.name for p in artifacts.iterdir()}
    dicts = ml.feature_dicts(
        ml.clean_trips(month_frame(SMALL.valid_month, SMALL.trips_per_month)), None
    )[:300]
    np.testing.assert_allclose(
        registry.load_production(run_dir).predict(dicts), seed_model_predictions(dicts)
    )


def test_an_older_month_is_never_promoted_over_a_newer_production(
    seeded: tuple[RunContext, dict[str, Any]],
) -> None:
    """A late month's re-run may score better on its own, older, validation month: production,
    trained on a newer month, stays; the registry's tags say why.
    """
    ctx, features = seeded
    trained = steps.train(ctx.run_dir, features, {"key": "ridge", "model": "ridge", "alpha": 1.0})
    evaluation = steps.evaluate(ctx.run_dir, features, [trained])
    older = {**features, "month": "2023-12"}  # before the seeded production's month

    result = steps.register(ctx.run_dir, older, evaluation)

    assert result["rmse"] < result["production_rmse"]  # better where it was validated
    assert result["promoted"] is False
    assert registry.snapshot(ctx.run_dir) == {"versions": [1, 2], "production_version": 1}
    tags = registry.versions(ctx.run_dir)[-1]["tags"]
    assert tags["month"] == "2023-12" and tags["promoted"] == "false"

    newer = steps.register(ctx.run_dir, features, evaluation)

    assert newer["promoted"] is True
    assert registry.production_tags(ctx.run_dir)["month"] == features["month"]
