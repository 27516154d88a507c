"""The shared steps end to end on a small run directory: the files and values each one promises."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pipeline_support import SMALL, mlflow_template, month_frame, prepare_run_dir, read_both

from shared_pipeline import ml, registry, steps
from shared_pipeline.context import RunContext
from shared_pipeline.data import COLUMNS
from shared_pipeline.enrichment_api import EnrichmentAPI
from shared_pipeline.scenarios import CANDIDATES, RETRAIN_ROUNDS
from shared_pipeline.settings import Settings
from shared_pipeline.zones import zone_congestion

TRAIN, VALID = SMALL.train_month, SMALL.valid_month
N = SMALL.trips_per_month
BASE_KEYS = {"PU_DO", "trip_distance"}


def load_pickle(path: str | Path) -> Any:
    with Path(path).open("rb") as handle:
        return pickle.load(handle)


def minutes(frame: pd.DataFrame) -> pd.Series:
    return (frame["lpep_dropoff_datetime"] - frame["lpep_pickup_datetime"]).dt.total_seconds() / 60


@pytest.fixture(scope="module")
def api() -> Iterator[EnrichmentAPI]:
    with EnrichmentAPI() as running:
        yield running


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, api: EnrichmentAPI) -> dict[str, Any]:
    """Every step once, in flow order, on a run directory with a seeded production model."""
    ctx = prepare_run_dir(
        tmp_path_factory.mktemp("pipeline") / "run",
        api,
        seed_production=True,
        mlflow_template=mlflow_template(tmp_path_factory),
    )
    run_dir = ctx.run_dir
    out: dict[str, Any] = {"ctx": ctx}
    out["extract"] = {m: steps.extract(run_dir, m) for m in (TRAIN, VALID)}
    out["read"] = {m: steps.read(run_dir, m, out["extract"][m]) for m in (TRAIN, VALID)}
    out["enrich"] = steps.enrich(run_dir, [TRAIN, VALID])
    out["features"] = steps.features(run_dir, out["read"][TRAIN], out["read"][VALID], out["enrich"])
    out["bundle"] = load_pickle(out["features"]["path"])
    out["candidates"] = steps.plan_candidates(run_dir, out["features"])
    out["trained"] = [steps.train(run_dir, out["features"], c) for c in out["candidates"]]
    out["evaluation"] = steps.evaluate(run_dir, out["features"], out["trained"])
    out["gate"] = steps.gate(run_dir, out["read"][TRAIN], out["evaluation"])
    out["production_before"] = registry.production_version(run_dir)
    out["register"] = steps.register(run_dir, out["features"], out["evaluation"])
    return out


def test_extract_writes_the_month_from_the_database_as_parquet(pipeline: dict[str, Any]) -> None:
    ctx: RunContext = pipeline["ctx"]
    for month in (TRAIN, VALID):
        path = Path(pipeline["extract"][month])
        assert path == ctx.path / "data" / f"green_tripdata_{month}.parquet"
        frame = pd.read_parquet(path)
        assert list(frame.columns) == list(COLUMNS)
        pd.testing.assert_frame_equal(frame, month_frame(month, N), check_dtype=False)
    assert not list((ctx.path / "data").glob("*.tmp"))


def test_read_keeps_only_one_to_sixty_minute_trips(pipeline: dict[str, Any]) -> None:
    for month in (TRAIN, VALID):
        result = pipeline["read"][month]
        raw = month_frame(month, N)
        raw_minutes = minutes(raw)
        in_window = raw_minutes.between(1, 60)
        assert (~in_window).sum() > 0  # the generated month has outliers to drop

        assert result["month"] == month
        assert result["rows_in"] == N
        assert result["rows_kept"] == int(in_window.sum())
        clean = pd.read_parquet(result["path"])
        assert len(clean) == result["rows_kept"]
        assert clean["duration"].between(1, 60).all()
        np.testing.assert_allclose(clean["duration"], minutes(clean))
        expected_pairs = clean["PULocationID"].astype(str) + "_" + clean["DOLocationID"].astype(str)
        assert (clean["PU_DO"] == expected_pairs).all()


def test_enrich_returns_each_months_zone_congestion(pipeline: dict[str, Any]) -> None:
    assert pipeline["enrich"] == {
        month: {str(zone): value for zone, value in zone_congestion(month).items()}
        for month in (TRAIN, VALID)
    }


def test_features_are_enriched_rows_for_each_kept_trip(pipeline: dict[str, Any]) -> None:
    result, bundle = pipeline["features"], pipeline["bundle"]
    assert Path(result["path"]) == pipeline["ctx"].path / "data" / "features.pkl"
    assert result["enriched"] is True
    assert result["n_train"] == pipeline["read"][TRAIN]["rows_kept"]
    assert result["n_valid"] == pipeline["read"][VALID]["rows_kept"]
    for split, n in (("train", result["n_train"]), ("valid", result["n_valid"])):
        dicts, target = bundle[split]
        assert len(dicts) == len(target) == n
        assert all(set(row) == BASE_KEYS | set(ml.ENRICHED) for row in dicts)
        assert np.all((target >= 1) & (target <= 60))


def test_features_without_enrichment_have_no_congestion_keys(
    tmp_path: Path, api: EnrichmentAPI
) -> None:
    ctx = prepare_run_dir(tmp_path / "run", api)
    train_read, valid_read = read_both(ctx)

    result = steps.features(ctx.run_dir, train_read, valid_read, None)

    assert result["enriched"] is False
    bundle = load_pickle(result["path"])
    for split in ("train", "valid"):
        dicts, _ = bundle[split]
        assert dicts and all(set(row) == BASE_KEYS for row in dicts)


def test_plan_candidates_follows_the_training_set_size(pipeline: dict[str, Any]) -> None:
    candidates = pipeline["candidates"]
    n_train = pipeline["features"]["n_train"]
    assert tuple(c["key"] for c in candidates) == CANDIDATES
    heavy = next(c for c in candidates if c["key"] == "ridge_heavy")
    assert heavy["alpha"] == round(n_train / 1_000, 1)

    def heavy_alpha(n: int) -> float:
        planned = steps.plan_candidates(pipeline["ctx"].run_dir, {"n_train": n})
        return next(c["alpha"] for c in planned if c["key"] == "ridge_heavy")

    assert heavy_alpha(2_000) == 2.0
    assert heavy_alpha(30_000) == 30.0


def test_train_saves_a_fitted_model_per_candidate(pipeline: dict[str, Any]) -> None:
    dicts, _ = pipeline["bundle"]["valid"]
    for candidate, trained in zip(pipeline["candidates"], pipeline["trained"], strict=True):
        assert trained["key"] == candidate["key"]
        assert trained["n_rows"] == pipeline["features"]["n_train"]
        path = Path(trained["model_path"])
        assert path == pipeline["ctx"].path / "models" / f"{candidate['key']}.pkl"
        predictions = load_pickle(path).predict(dicts)
        assert predictions.shape == (len(dicts),) and np.isfinite(predictions).all()


def test_the_validation_matrix_is_the_valid_rows_through_the_models_own_vectorizer(
    pipeline: dict[str, Any],
) -> None:
    names, matrix, target = load_pickle(pipeline["features"]["valid_matrix_path"])
    dicts, valid_target = pipeline["bundle"]["valid"]
    model = load_pickle(pipeline["trained"][0]["model_path"])
    assert names == model[0].feature_names_
    assert (matrix != model[0].transform(dicts)).nnz == 0
    assert np.array_equal(target, valid_target)
    # A model with a vectorizer of its own (production's, fitted on another month) is refused.
    other = ml.make_model({"model": "linear"}).fit(dicts[:500], valid_target[:500])
    with pytest.raises(ValueError, match="not the one that made the matrix"):
        ml.rmse_on_matrix(other, names, matrix, target)


def test_evaluate_picks_the_lowest_rmse_on_the_next_month(pipeline: dict[str, Any]) -> None:
    evaluation = pipeline["evaluation"]
    dicts, target = pipeline["bundle"]["valid"]
    recomputed = {
        t["key"]: ml.rmse(load_pickle(t["model_path"]), dicts, target) for t in pipeline["trained"]
    }
    assert evaluation["rmses"] == pytest.approx(recomputed, abs=1e-4)
    assert evaluation["best"] == min(recomputed, key=recomputed.__getitem__)
    assert evaluation["rmse"] == evaluation["rmses"][evaluation["best"]]
    assert evaluation["model_path"] == str(
        pipeline["ctx"].path / "models" / f"{evaluation['best']}.pkl"
    )
    assert evaluation["rmse"] < pipeline["ctx"].settings.max_rmse


def test_gate_passes_clean_data_and_a_sane_model(pipeline: dict[str, Any]) -> None:
    train_read = pipeline["read"][TRAIN]
    assert pipeline["gate"] == {
        "passed": True,
        "reasons": [],
        "kept_fraction": round(train_read["rows_kept"] / train_read["rows_in"], 4),
    }


def test_register_promotes_the_better_new_model(pipeline: dict[str, Any]) -> None:
    result, run_dir = pipeline["register"], pipeline["ctx"].run_dir
    assert pipeline["production_before"] == 1  # the seeded model trained on an older month
    assert result["version"] == 2
    assert result["promoted"] is True
    assert result["rmse"] == pipeline["evaluation"]["rmse"]
    assert result["production_rmse"] > result["rmse"]
    assert registry.snapshot(run_dir) == {"versions": [1, 2], "production_version": 2}
    dicts, _ = pipeline["bundle"]["valid"]
    winner = load_pickle(pipeline["evaluation"]["model_path"])
    np.testing.assert_allclose(
        registry.load_production(run_dir).predict(dicts[:200]), winner.predict(dicts[:200])
    )


def test_gate_fails_on_a_corrupt_month_with_a_reason(tmp_path: Path, api: EnrichmentAPI) -> None:
    ctx = prepare_run_dir(tmp_path / "run", api, corrupt_months=(TRAIN,))
    train_read, valid_read = read_both(ctx)
    features = steps.features(ctx.run_dir, train_read, valid_read, None)
    trained = steps.train(ctx.run_dir, features, {"key": "linear", "model": "linear"})
    evaluation = steps.evaluate(ctx.run_dir, features, [trained])

    verdict = steps.gate(ctx.run_dir, train_read, evaluation)

    assert verdict["passed"] is False
    assert verdict["kept_fraction"] < ctx.settings.min_kept_fraction
    assert any(TRAIN in reason and "1-60 min" in reason for reason in verdict["reasons"])


@pytest.mark.parametrize("rmse", [12.5, math.nan], ids=["too_high", "nan"])
def test_gate_fails_a_model_whose_rmse_is_not_below_the_limit(
    tmp_path: Path, api: EnrichmentAPI, rmse: float
) -> None:
    ctx = prepare_run_dir(tmp_path / "run", api)
    clean_read = {"month": TRAIN, "rows_in": 100, "rows_kept": 100}

    verdict = steps.gate(ctx.run_dir, clean_read, {"rmse": rmse})

    assert verdict["passed"] is False
    assert verdict["kept_fraction"] == 1.0
    assert verdict["reasons"] == [f"RMSE {rmse} above {ctx.settings.max_rmse}"]


@pytest.mark.timeout(120)
def test_retrain_until_good_needs_the_catalogued_number_of_rounds(
    tmp_path: Path, api: EnrichmentAPI
) -> None:
    """The loop of control.Pipeline.retrain_flow, on the embedded defaults (full-size months)."""
    settings = Settings()
    ctx = prepare_run_dir(tmp_path / "run", api, settings=settings)
    run_dir = ctx.run_dir
    train_read, valid_read = read_both(ctx)
    enrichment = steps.enrich(run_dir, [settings.train_month, settings.valid_month])
    features = steps.features(run_dir, train_read, valid_read, enrichment)

    rmses, sizes = [], []
    round_number = 0
    while True:
        round_number += 1
        candidate = steps.retrain_candidate(run_dir, round_number)
        model = steps.train(run_dir, features, candidate)
        evaluation = steps.evaluate(run_dir, features, [model], candidate["key"])
        rmses.append(evaluation["rmse"])
        sizes.append(model["n_rows"])
        if steps.good_enough(run_dir, evaluation, round_number):
            break

    assert round_number == RETRAIN_ROUNDS
    # It stopped because the target was reached, not because the rounds ran out.
    assert round_number < settings.retrain_max_rounds
    assert rmses[-1] <= settings.retrain_target_rmse < min(rmses[:-1])
    # Each round trains on twice the sample of the one before.
    n_train = features["n_train"]
    assert sizes == [
        max(int(n_train * settings.retrain_first_fraction * 2**i), 50) for i in range(round_number)
    ]
