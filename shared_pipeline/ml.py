"""The machine learning itself, as the well-known NYC-taxi course scripts do it; no I/O."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import root_mean_squared_error
from sklearn.pipeline import Pipeline, make_pipeline
from threadpoolctl import threadpool_limits

# One BLAS/OpenMP thread per process. Test workers, Dask workers and engine task processes
# already share 2 cores; OpenBLAS's own threads then spin against each other: beside a busy
# test run a fit took up to 0.5 s with two threads, and at most 0.06 s with one. The variables
# reach the processes this one starts (set before their numpy loads); the limit covers the
# libraries loaded here.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _name in THREAD_VARIABLES:
    os.environ[_name] = "1"
threadpool_limits(1)

CATEGORICAL = ["PU_DO"]
NUMERICAL = ["trip_distance"]
ENRICHED = ["pu_congestion", "do_congestion", "distance_x_congestion"]


def clean_trips(df: pd.DataFrame) -> pd.DataFrame:
    """Duration in minutes, keep 1..60 min trips, zone pair as a category."""
    df = df.copy()
    df["duration"] = (
        df["lpep_dropoff_datetime"] - df["lpep_pickup_datetime"]
    ).dt.total_seconds() / 60
    df = df[(df["duration"] >= 1) & (df["duration"] <= 60)].copy()
    df = df[df["trip_distance"].notna() & (df["trip_distance"] >= 0)]
    df["PU_DO"] = df["PULocationID"].astype(str) + "_" + df["DOLocationID"].astype(str)
    return df


def feature_dicts(df: pd.DataFrame, congestion: dict[str, float] | None) -> list[dict[str, Any]]:
    """Rows for DictVectorizer; with enrichment, add the zones' congestion of that month."""
    frame = df[CATEGORICAL + NUMERICAL].copy()
    if congestion is not None:
        lookup = {int(zone): value for zone, value in congestion.items()}
        frame["pu_congestion"] = df["PULocationID"].astype(int).map(lookup).fillna(1.0)
        frame["do_congestion"] = df["DOLocationID"].astype(int).map(lookup).fillna(1.0)
        mean = (frame["pu_congestion"] + frame["do_congestion"]) / 2
        frame["distance_x_congestion"] = frame["trip_distance"] * mean
    return frame.to_dict(orient="records")


def vectorize(dicts: list[dict[str, Any]]) -> tuple[DictVectorizer, Any]:
    """Fit the DictVectorizer once on the training rows: its matrix serves every candidate."""
    vectorizer = DictVectorizer()
    return vectorizer, vectorizer.fit_transform(dicts)


def make_model(candidate: dict[str, Any], vectorizer: DictVectorizer | None = None) -> Pipeline:
    """DictVectorizer (a new one, or `vectorizer`) + regressor: a model that predicts from rows."""
    kind = candidate["model"]
    if kind == "linear":
        # On a sparse matrix LinearRegression iterates (scipy's lsqr) until `tol`: Ridge's default
        # precision takes about a quarter of the time of its own 1e-6, and moves RMSE by under
        # 0.002 min.
        regressor = LinearRegression(tol=1e-4)
    elif kind == "ridge":
        regressor = Ridge(alpha=candidate.get("alpha", 1.0))
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return make_pipeline(vectorizer or DictVectorizer(), regressor)


def fit_on_matrix(
    candidate: dict[str, Any], vectorizer: DictVectorizer, matrix: Any, target: np.ndarray
) -> Pipeline:
    """The candidate with `vectorizer`, which made `matrix`: only its regressor is fitted."""
    model = make_model(candidate, vectorizer)
    model[-1].fit(matrix, target)
    return model


def rmse(model: Pipeline, dicts: list[dict[str, Any]], target: np.ndarray) -> float:
    return float(root_mean_squared_error(target, model.predict(dicts)))


def rmse_on_matrix(model: Pipeline, names: list[str], matrix: Any, target: np.ndarray) -> float:
    """`rmse` on rows already vectorized by a DictVectorizer with feature names `names`: the
    model's own (fit_on_matrix) must be that one, so only its regressor predicts.
    """
    if model[0].feature_names_ != names:
        raise ValueError("the model's DictVectorizer is not the one that made the matrix")
    return float(root_mean_squared_error(target, model[-1].predict(matrix)))
