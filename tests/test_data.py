"""Tests for shared_pipeline.data: the synthetic trips' ML properties and the SQL load/read path."""

from __future__ import annotations

import functools
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error

from shared_pipeline.data import generate_month, load_months, read_month_sql, table_name
from shared_pipeline.zones import ZONE_IDS, zone_congestion

EXPECTED_DTYPES = {
    "VendorID": "int",
    "lpep_pickup_datetime": "datetime",
    "lpep_dropoff_datetime": "datetime",
    "store_and_fwd_flag": "string",
    "RatecodeID": "int",
    "PULocationID": "int",
    "DOLocationID": "int",
    "passenger_count": "int",
    "trip_distance": "float",
    "fare_amount": "float",
    "tip_amount": "float",
    "total_amount": "float",
    "payment_type": "int",
    "trip_type": "int",
}
_DTYPE_CHECKS = {
    "int": pd.api.types.is_integer_dtype,
    "float": pd.api.types.is_float_dtype,
    "datetime": pd.api.types.is_datetime64_any_dtype,
    "string": pd.api.types.is_string_dtype,
}


@functools.cache
def _month(month: str, corrupt: bool = False) -> pd.DataFrame:
    # Cached: several tests train on the same months; callers must not mutate the result.
    return generate_month(month, corrupt=corrupt)


def _durations(df: pd.DataFrame) -> pd.Series:
    return (df["lpep_dropoff_datetime"] - df["lpep_pickup_datetime"]).dt.total_seconds() / 60


def _prepare(
    df: pd.DataFrame, congestion: dict[int, float] | None
) -> tuple[list[dict], np.ndarray]:
    """The NYC taxi course's features: PU_DO one-hot + trip_distance, durations kept in 1..60."""
    df = df.assign(duration=_durations(df))
    df = df[(df["duration"] >= 1) & (df["duration"] <= 60)]
    features = pd.DataFrame(
        {
            "PU_DO": df["PULocationID"].astype(str) + "_" + df["DOLocationID"].astype(str),
            "trip_distance": df["trip_distance"],
        }
    )
    if congestion is not None:
        # What the enrichment API would add: that month's congestion of both zones.
        features["pu_congestion"] = df["PULocationID"].map(congestion)
        features["do_congestion"] = df["DOLocationID"].map(congestion)
        mean = (features["pu_congestion"] + features["do_congestion"]) / 2
        features["distance_x_congestion"] = df["trip_distance"] * mean
    return features.to_dict(orient="records"), df["duration"].to_numpy()


@functools.cache
def _rmse(train: str, valid: str, *, enriched: bool = False, fraction: float = 1.0) -> float:
    train_df = _month(train)
    if fraction < 1.0:
        train_df = train_df.sample(frac=fraction, random_state=0)
    x_train, y_train = _prepare(train_df, zone_congestion(train) if enriched else None)
    x_valid, y_valid = _prepare(_month(valid), zone_congestion(valid) if enriched else None)
    vectorizer = DictVectorizer()
    model = LinearRegression().fit(vectorizer.fit_transform(x_train), y_train)
    return float(root_mean_squared_error(y_valid, model.predict(vectorizer.transform(x_valid))))


def test_generate_month_is_deterministic() -> None:
    pd.testing.assert_frame_equal(generate_month("2024-02"), generate_month("2024-02"))
    pd.testing.assert_frame_equal(
        generate_month("2024-02", 500, corrupt=True), generate_month("2024-02", 500, corrupt=True)
    )
    february = _month("2024-02")
    assert not february.equals(_month("2024-03"))
    assert not february.equals(generate_month("2024-02", seed=8))


def test_schema_and_values() -> None:
    df = _month("2024-02")
    assert list(df.columns) == list(EXPECTED_DTYPES)
    assert len(df) == 30_000
    for column, kind in EXPECTED_DTYPES.items():
        assert _DTYPE_CHECKS[kind](df[column]), (column, df[column].dtype)

    assert set(df["PULocationID"]) <= set(ZONE_IDS)
    assert set(df["DOLocationID"]) <= set(ZONE_IDS)
    assert df["trip_distance"].gt(0).all()
    assert set(df["store_and_fwd_flag"]) <= {"N", "Y"}
    assert set(df["payment_type"]) <= {1, 2, 3, 4}
    assert (df["total_amount"] >= df["fare_amount"] + df["tip_amount"]).all()
    assert (df.loc[df["payment_type"] != 1, "tip_amount"] == 0).all()

    pickup = df["lpep_pickup_datetime"]
    assert pickup.min() >= pd.Timestamp("2024-02-01")
    assert pickup.max() < pd.Timestamp("2024-03-01")
    assert pickup.dt.day.nunique() == 29  # 2024 is a leap year
    assert pickup.dt.hour.nunique() == 24
    assert pickup.is_monotonic_increasing

    minutes = _durations(df)
    assert (minutes >= 0).all()
    # A small share of outliers on both sides of the 1..60 window, as in the real exports.
    assert 0.01 < (minutes < 1).mean() < 0.04
    assert 0.005 < (minutes > 60).mean() < 0.03
    assert np.corrcoef(df["trip_distance"], minutes.clip(1, 60))[0, 1] > 0.8


def test_duration_follows_zone_congestion() -> None:
    df = _month("2024-03")
    minutes = _durations(df)
    keep = (minutes >= 1) & (minutes <= 60)
    congestion = zone_congestion("2024-03")
    mean_congestion = (df["PULocationID"].map(congestion) + df["DOLocationID"].map(congestion)) / 2
    pace = (minutes / df["trip_distance"])[keep & (df["trip_distance"] > 2)]
    assert np.corrcoef(mean_congestion[pace.index], pace)[0, 1] > 0.5


def test_drift_makes_older_training_month_worse() -> None:
    stale = _rmse("2024-01", "2024-03")
    recent = _rmse("2024-02", "2024-03")
    assert stale > 1.05 * recent


def test_enrichment_features_lower_rmse() -> None:
    plain = _rmse("2024-02", "2024-03")
    enriched = _rmse("2024-02", "2024-03", enriched=True)
    assert enriched < plain / 1.05


def test_rmse_falls_with_training_sample_size() -> None:
    fractions = (0.02, 0.05, 0.2, 1.0)
    rmses = [_rmse("2024-02", "2024-03", fraction=fraction) for fraction in fractions]
    assert rmses == sorted(rmses, reverse=True), dict(zip(fractions, rmses, strict=True))
    assert rmses[1] > rmses[-1]  # 5% is worse than 100%: "retrain with more data" pays off
    assert rmses[0] > 1.05 * rmses[-1]


def test_corrupt_month_is_broken_like_a_bad_export() -> None:
    clean = _month("2024-02")
    broken = _month("2024-02", corrupt=True)
    assert list(broken.columns) == list(clean.columns)
    assert (broken.dtypes == clean.dtypes).all()
    # Same trips underneath: only timestamps and distances are damaged.
    pd.testing.assert_frame_equal(
        broken[["PULocationID", "DOLocationID", "fare_amount"]],
        clean[["PULocationID", "DOLocationID", "fare_amount"]],
    )

    minutes = _durations(broken)
    damaged = (minutes < 0) | (minutes > 3 * 60)
    assert 0.6 <= damaged.mean() <= 0.7
    assert (minutes < 0).mean() > 0.25
    assert (minutes > 3 * 60).mean() > 0.25
    assert broken["trip_distance"].isna().mean() > 0.02
    assert (broken["trip_distance"] < 0).mean() > 0.02

    kept_broken = _durations(broken).between(1, 60).mean()
    assert _durations(clean).between(1, 60).mean() > 0.95
    assert kept_broken < 0.5


def test_table_name() -> None:
    assert table_name("2024-02") == "green_tripdata_2024_02"
    assert table_name("2023-12") == "green_tripdata_2023_12"
    for bad in ("2024-2", "2024-13", "202402", "2024_02"):
        with pytest.raises(ValueError):
            table_name(bad)
        with pytest.raises(ValueError):
            generate_month(bad, 10)


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_load_and_read_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "trips.db"
    frames = {
        "2024-01": generate_month("2024-01", 2_000),
        "2024-02": generate_month("2024-02", 2_000, corrupt=True),
    }
    load_months(_sqlite_url(db), frames)

    with closing(sqlite3.connect(db)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert tables == {"green_tripdata_2024_01", "green_tripdata_2024_02"}
    assert journal_mode == "delete"
    for month, frame in frames.items():
        # Exact, dtypes included: datetimes come back parsed, NaN and negative distances kept.
        pd.testing.assert_frame_equal(read_month_sql(_sqlite_url(db), month), frame)

    # Loading a month again replaces its table instead of appending to it.
    smaller = generate_month("2024-01", 300)
    load_months(_sqlite_url(db), {"2024-01": smaller})
    pd.testing.assert_frame_equal(read_month_sql(_sqlite_url(db), "2024-01"), smaller)


def test_load_months_undoes_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    load_months(_sqlite_url(db), {"2024-01": generate_month("2024-01", 100)})
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_read_missing_sqlite_file_fails_without_creating_it(tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    with pytest.raises(sa.exc.OperationalError, match="unable to open database file"):
        read_month_sql(_sqlite_url(db), "2024-02")
    assert not db.exists()


def test_read_missing_table_is_an_operational_error(tmp_path: Path) -> None:
    db = tmp_path / "trips.db"
    load_months(_sqlite_url(db), {"2024-01": generate_month("2024-01", 100)})
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        read_month_sql(_sqlite_url(db), "2024-02")


def test_read_fails_fast_while_another_connection_holds_an_exclusive_lock(tmp_path: Path) -> None:
    db = tmp_path / "trips.db"
    frame = generate_month("2024-02", 500)
    load_months(_sqlite_url(db), {"2024-02": frame})

    locker = sqlite3.connect(db, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        start = time.perf_counter()
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            read_month_sql(_sqlite_url(db), "2024-02", timeout_s=0.2)
        # The busy timeout (0.2 s) ends the wait; a reader that waited forever would fail here.
        assert time.perf_counter() - start < 5.0
        locker.execute("ROLLBACK")
        pd.testing.assert_frame_equal(read_month_sql(_sqlite_url(db), "2024-02"), frame)
    finally:
        locker.close()
