"""The pipeline steps as plain functions: every wiring calls exactly these.

Each takes the run directory first and returns small JSON-able values (paths, numbers), so any
engine can pass them between tasks and processes. Each logs its own attempts (see faults.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared_pipeline import ml, registry, schedule
from shared_pipeline.context import load_context
from shared_pipeline.data import read_month_sql
from shared_pipeline.enrichment_api import fetch_zone_congestion
from shared_pipeline.faults import step_attempt

Candidate = dict[str, Any]


def _atomic_pickle(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        pickle.dump(obj, handle)
    tmp.replace(path)


def _load_pickle(path: str | Path) -> Any:
    with Path(path).open("rb") as handle:
        return pickle.load(handle)


def run_months(run_dir: str, due: Any = None) -> list[str]:
    """The months this flow run trains and validates on: for a run of the monthly schedule due
    at `due` (its scheduled time, or its data interval's end), the month that just ended and the
    next; for a run started by hand (None), the configured ones.
    """
    settings = load_context(run_dir).settings
    return list(schedule.run_months(due, (settings.train_month, settings.valid_month)))


def extract(run_dir: str, month: str) -> str:
    """Read one month of trips from the SQL database into a parquet file; returns its path."""
    with step_attempt(run_dir, "extract", month) as attempt:
        settings = attempt.ctx.settings
        trips = read_month_sql(
            attempt.db_url, month, timeout_s=settings.db_busy_timeout_s, lock_wait=attempt.clock
        )
        path = attempt.ctx.path / "data" / f"green_tripdata_{month}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        trips.to_parquet(tmp, index=False)
        tmp.replace(path)
        return str(path)


def read(run_dir: str, month: str, parquet_path: str) -> dict[str, Any]:
    """Load with pandas, compute durations, keep 1..60 minute trips."""
    with step_attempt(run_dir, "read", month) as attempt:
        raw = pd.read_parquet(parquet_path)
        clean = ml.clean_trips(raw)
        path = attempt.ctx.path / "data" / f"clean_{month}.parquet"
        clean.to_parquet(path, index=False)
        return {"month": month, "path": str(path), "rows_in": len(raw), "rows_kept": len(clean)}


def enrich(run_dir: str, months: list[str]) -> dict[str, dict[str, float]]:
    """Fetch each month's zone congestion from the enrichment HTTP API."""
    with step_attempt(run_dir, "enrich") as attempt:
        url, timeout = attempt.ctx.api_url, attempt.ctx.settings.api_timeout_s
        congestion = {}
        for month in months:
            with attempt.clock():  # the client's timeout guards each request
                zones = fetch_zone_congestion(url, month, timeout=timeout)
            congestion[month] = {str(zone): value for zone, value in zones.items()}
        return congestion


def features(
    run_dir: str,
    train: dict[str, Any],
    valid: dict[str, Any],
    enrichment: dict[str, dict[str, float]] | None,
) -> dict[str, Any]:
    """PU_DO + trip_distance (+ congestion when enrichment is available) as DictVectorizer rows,
    and both months vectorized once: every candidate fits on the training matrix and is scored
    on the validation matrix, each saved apart so that a step loads only what it uses.
    """
    with step_attempt(run_dir, "features") as attempt:
        bundle: dict[str, Any] = {}
        for split, read_result in (("train", train), ("valid", valid)):
            frame = pd.read_parquet(read_result["path"])
            congestion = enrichment[read_result["month"]] if enrichment else None
            bundle[split] = (ml.feature_dicts(frame, congestion), frame["duration"].to_numpy())
        vectorizer, matrix = ml.vectorize(bundle["train"][0])
        valid_matrix = vectorizer.transform(bundle["valid"][0])
        path = attempt.ctx.path / "data" / "features.pkl"
        matrix_path = path.with_name("train_matrix.pkl")
        valid_path = path.with_name("valid_matrix.pkl")
        _atomic_pickle(bundle, path)
        _atomic_pickle((vectorizer, matrix, bundle["train"][1]), matrix_path)
        _atomic_pickle((vectorizer.feature_names_, valid_matrix, bundle["valid"][1]), valid_path)
        return {
            "path": str(path),
            "matrix_path": str(matrix_path),
            "valid_matrix_path": str(valid_path),
            "enriched": enrichment is not None,
            "month": train["month"],  # trained on (the registry tags the model with it)
            "n_train": len(bundle["train"][1]),
            "n_valid": len(bundle["valid"][1]),
        }


def plan_candidates(run_dir: str, features_result: dict[str, Any]) -> list[Candidate]:
    """The candidate models, known only at run time: the grid follows the training set size."""
    n_train = features_result["n_train"]
    return [
        {"key": "linear", "model": "linear"},
        {"key": "ridge", "model": "ridge", "alpha": 1.0},
        # Heavier shrinkage for larger months: the grid is sized from the data at run time.
        {"key": "ridge_heavy", "model": "ridge", "alpha": round(n_train / 1_000, 1)},
    ]


def retrain_candidate(run_dir: str, round_number: int) -> Candidate:
    """Round N of retrain_until_good: the same model on twice the sample of round N-1."""
    settings = load_context(run_dir).settings
    fraction = min(1.0, settings.retrain_first_fraction * 2 ** (round_number - 1))
    return {
        "key": f"round-{round_number}",
        "model": "ridge",
        "alpha": 1.0,
        "sample_fraction": fraction,
    }


def train(run_dir: str, features_result: dict[str, Any], candidate: Candidate) -> dict[str, Any]:
    """Fit one candidate's regressor on the features' matrix; saves it with the features'
    DictVectorizer as one model (rows in, minutes out) and returns where.
    """
    with step_attempt(run_dir, "train", candidate["key"]) as attempt:
        vectorizer, matrix, target = _load_pickle(features_result["matrix_path"])
        fraction = candidate.get("sample_fraction", 1.0)
        if fraction < 1.0:
            # Nested samples (a prefix of one fixed permutation): round N+1 sees all of round N.
            # Zones outside the sample are all-zero columns: the regressor gives them no weight.
            count = max(int(len(target) * fraction), 50)
            rows = np.random.default_rng(0).permutation(len(target))[:count]
            matrix, target = matrix[rows], target[rows]
        target = attempt.corrupt_if_planned(target)
        attempt.hang_if_planned()
        model = ml.fit_on_matrix(candidate, vectorizer, matrix, target)
        path = attempt.ctx.path / "models" / f"{candidate['key']}.pkl"
        _atomic_pickle(model, path)
        return {"key": candidate["key"], "model_path": str(path), "n_rows": len(target)}


def evaluate(
    run_dir: str,
    features_result: dict[str, Any],
    trained: list[dict[str, Any]],
    key: str | None = None,
) -> dict[str, Any]:
    """RMSE of each trained candidate on the following month; the best one wins."""
    with step_attempt(run_dir, "evaluate", key):
        if not trained:
            raise ValueError("no trained candidate to evaluate")
        names, matrix, target = _load_pickle(features_result["valid_matrix_path"])
        scores = {
            t["key"]: ml.rmse_on_matrix(_load_pickle(t["model_path"]), names, matrix, target)
            for t in trained
        }
        best = min(scores, key=scores.__getitem__)
        winner = next(t for t in trained if t["key"] == best)
        return {
            "best": best,
            "rmse": round(scores[best], 4),
            "model_path": winner["model_path"],
            "rmses": {k: round(v, 4) for k, v in scores.items()},
        }


def good_enough(run_dir: str, evaluation: dict[str, Any], round_number: int) -> bool:
    """Stop retraining once the target RMSE is reached or the rounds are used up."""
    settings = load_context(run_dir).settings
    return (
        evaluation["rmse"] <= settings.retrain_target_rmse
        or round_number >= settings.retrain_max_rounds
    )


def gate(run_dir: str, train_read: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """Data and model quality gate: enough clean rows and a sane RMSE, or no registration."""
    with step_attempt(run_dir, "gate") as attempt:
        settings = attempt.ctx.settings
        kept = train_read["rows_kept"] / max(train_read["rows_in"], 1)
        reasons = []
        if kept < settings.min_kept_fraction:
            reasons.append(
                f"only {kept:.0%} of {train_read['month']} trips are 1-60 min"
                f" (need {settings.min_kept_fraction:.0%})"
            )
        if not evaluation["rmse"] <= settings.max_rmse:
            reasons.append(f"RMSE {evaluation['rmse']} above {settings.max_rmse}")
        return {"passed": not reasons, "reasons": reasons, "kept_fraction": round(kept, 4)}


def register(
    run_dir: str,
    features_result: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """Register the winner in MLflow; move `production` only if it beats the current model (on
    this run's validation month) and was trained on a month no older than production's.

    A model trained without the enrichment (the fallback) is tagged degraded.
    """
    degraded = not features_result["enriched"]
    month = features_result.get("month", "")  # trained on
    with step_attempt(run_dir, "register") as attempt:
        dicts, target = _load_pickle(features_result["path"])["valid"]
        production_rmse, production_month = None, None
        if registry.production_version(run_dir) is not None:
            production_rmse = round(ml.rmse(registry.load_production(run_dir), dicts, target), 4)
            production_month = registry.production_tags(run_dir).get("month")
        version = registry.log_and_register(
            run_dir,
            _load_pickle(evaluation["model_path"]),
            metrics={"rmse": evaluation["rmse"]},
            tags={
                "scenario": attempt.ctx.scenario,
                "engine": attempt.ctx.engine,
                "candidate": evaluation["best"],
                "degraded": str(degraded).lower(),
                "month": month,
            },
        )
        # A re-run of an older month (a late month's data) never replaces a newer month's model,
        # even where it scores better on its own, older, validation month.
        newer = production_month is None or month >= production_month
        promoted = newer and (production_rmse is None or evaluation["rmse"] < production_rmse)
        if promoted:
            registry.promote(run_dir, version)
        # The registry keeps the decision beside the version: an audit trail a reader can check.
        registry.tag_version(
            run_dir,
            version,
            {"promoted": str(promoted).lower(), "production_rmse": production_rmse},
        )
        return {
            "version": version,
            "promoted": promoted,
            "rmse": evaluation["rmse"],
            "production_rmse": production_rmse,
        }
