"""Deterministic synthetic NYC green-taxi months (durations driven by zones.zone_congestion),
and loading/reading them per month through SQLAlchemy."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from shared_pipeline.schedule import parse_month
from shared_pipeline.zones import ZONE_IDS, zone_congestion

DATETIME_COLUMNS: tuple[str, ...] = ("lpep_pickup_datetime", "lpep_dropoff_datetime")
COLUMNS: tuple[str, ...] = (
    "VendorID",
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "store_and_fwd_flag",
    "RatecodeID",
    "PULocationID",
    "DOLocationID",
    "passenger_count",
    "trip_distance",
    "fare_amount",
    "tip_amount",
    "total_amount",
    "payment_type",
    "trip_type",
)

_ZONES = np.asarray(ZONE_IDS, dtype=np.int64)

# Fixed zone layout (miles on a plane) and popularity: PU_DO pairs imply a typical distance, and
# some pairs are far more common than others, as in the real data. Same for every month.
_layout_rng = np.random.default_rng(4242)
_ZONE_XY = _layout_rng.uniform(0.0, 6.0, size=(len(ZONE_IDS), 2))
_ZONE_WEIGHT = _layout_rng.gamma(2.0, 1.0, size=len(ZONE_IDS))
_ZONE_WEIGHT /= _ZONE_WEIGHT.sum()
del _layout_rng

# Relative travel time by hour of day: rush hours are slow, nights are fast.
_HOUR_FACTOR = np.array(
    [0.88, 0.87, 0.87, 0.87, 0.88, 0.91, 0.97, 1.09, 1.15, 1.09, 1.00, 1.00,
     1.01, 1.01, 1.03, 1.07, 1.13, 1.15, 1.11, 1.03, 0.97, 0.94, 0.92, 0.89]
)  # fmt: skip
# Share of pickups by hour of day (unnormalised): few at night, peaks in the evening.
_HOUR_SHARE = np.array(
    [1.5, 1.0, 0.7, 0.5, 0.5, 0.8, 1.8, 3.5, 4.5, 4.2, 4.0, 4.2,
     4.4, 4.5, 4.8, 5.2, 5.6, 5.8, 5.5, 4.8, 4.0, 3.4, 2.8, 2.1]
)  # fmt: skip
_HOUR_SHARE = _HOUR_SHARE / _HOUR_SHARE.sum()

_MINUTES_PER_MILE = 3.4  # free-flow pace at congestion 1.0 and hour factor 1.0
_SHARE_SHORT_OUTLIERS = 0.02  # cancelled / same-spot trips under a minute
_SHARE_LONG_OUTLIERS = 0.012  # meter left running: over an hour


def table_name(month: str) -> str:
    """SQL table holding `month` ("YYYY-MM"), e.g. "green_tripdata_2024_02"."""
    year, mon = parse_month(month)
    return f"green_tripdata_{year:04d}_{mon:02d}"


def generate_month(
    month: str, n_trips: int = 30_000, *, seed: int = 7, corrupt: bool = False
) -> pd.DataFrame:
    """Deterministic green-taxi-like trips picked up in `month` ("YYYY-MM").

    Duration depends on distance, the PU/DO zones' congestion that month, hour and noise, plus a
    few outliers. `corrupt=True` returns the same trips broken like a bad upstream export.
    """
    year, mon = parse_month(month)
    if n_trips < 0:
        raise ValueError("n_trips must be >= 0")
    rng = np.random.default_rng([seed, year, mon])
    n = n_trips

    # Pickups: uniform day of month, hour from a daily profile, sorted like the TLC files.
    start = np.datetime64(f"{year:04d}-{mon:02d}-01T00:00:00", "s")
    end = np.datetime64(pd.Timestamp(start) + pd.offsets.MonthBegin(1), "s")
    n_days = int((end - start) // np.timedelta64(1, "D"))
    day = rng.integers(0, n_days, size=n)
    hour = rng.choice(24, size=n, p=_HOUR_SHARE)
    second_of_hour = rng.integers(0, 3600, size=n)
    offset_s = np.sort(day * 86_400 + hour * 3600 + second_of_hour)
    hour = (offset_s // 3600) % 24
    pickup = start + offset_s.astype("timedelta64[s]")

    pu_idx = rng.choice(len(ZONE_IDS), size=n, p=_ZONE_WEIGHT)
    do_idx = rng.choice(len(ZONE_IDS), size=n, p=_ZONE_WEIGHT)
    gap = np.linalg.norm(_ZONE_XY[pu_idx] - _ZONE_XY[do_idx], axis=1)
    # Street distance is longer than the straight line; intra-zone trips are short but not zero.
    trip_distance = np.round(
        np.maximum(1.3 * gap + rng.gamma(2.0, 0.6, size=n), 0.1) * rng.lognormal(0, 0.2, n), 2
    )

    by_zone = zone_congestion(month)
    congestion = np.array([by_zone[zone] for zone in ZONE_IDS])
    trip_congestion = (congestion[pu_idx] + congestion[do_idx]) / 2.0
    # Slow citywide slowdown on top of the per-zone drift: 2% a month from 2024-01 (where the
    # zones' drift starts too), capped so far-off months keep plausible durations.
    global_factor = 1.0 + 0.02 * min(max((year - 2024) * 12 + mon - 1, 0), 24)
    minutes = (
        2.0
        + trip_distance * _MINUTES_PER_MILE * trip_congestion * _HOUR_FACTOR[hour] * global_factor
    ) * rng.lognormal(0.0, 0.08, size=n) + rng.normal(0.0, 0.8, size=n)

    # Outliers outside the usual 1..60 minute window, as in the real exports.
    kind = rng.random(n)
    short = kind < _SHARE_SHORT_OUTLIERS
    long = (kind >= _SHARE_SHORT_OUTLIERS) & (kind < _SHARE_SHORT_OUTLIERS + _SHARE_LONG_OUTLIERS)
    minutes = np.where(short, rng.uniform(0.0, 0.95, size=n), minutes)
    minutes = np.where(long, rng.uniform(61.0, 600.0, size=n), np.clip(minutes, 0.0, None))
    dropoff = pickup + np.round(minutes * 60.0).astype("timedelta64[s]")

    payment_type = rng.choice([1, 2, 3, 4], size=n, p=[0.62, 0.35, 0.02, 0.01])
    fare_amount = np.round(3.0 + 2.5 * trip_distance + 0.5 * np.minimum(minutes, 120.0), 2)
    tip_amount = np.where(
        payment_type == 1, np.round(fare_amount * rng.uniform(0.0, 0.25, size=n), 2), 0.0
    )
    # 0.5 MTA tax + 1.0 improvement surcharge, plus the rush-hour (1.0) and overnight (0.5) extras.
    extra = np.select([(hour >= 16) & (hour < 20), (hour >= 20) | (hour < 6)], [1.0, 0.5], 0.0)
    total_amount = np.round(fare_amount + tip_amount + 1.5 + extra, 2)

    frame = pd.DataFrame(
        {
            "VendorID": rng.choice([1, 2], size=n, p=[0.15, 0.85]).astype(np.int64),
            "lpep_pickup_datetime": pickup.astype("datetime64[us]"),
            "lpep_dropoff_datetime": dropoff.astype("datetime64[us]"),
            "store_and_fwd_flag": np.where(rng.random(n) < 0.005, "Y", "N"),
            "RatecodeID": rng.choice([1, 2, 5], size=n, p=[0.95, 0.01, 0.04]).astype(np.int64),
            "PULocationID": _ZONES[pu_idx],
            "DOLocationID": _ZONES[do_idx],
            "passenger_count": rng.choice(
                [1, 2, 3, 4, 5, 6], size=n, p=[0.82, 0.09, 0.03, 0.02, 0.025, 0.015]
            ).astype(np.int64),
            "trip_distance": trip_distance,
            "fare_amount": fare_amount,
            "tip_amount": tip_amount,
            "total_amount": total_amount,
            "payment_type": payment_type.astype(np.int64),
            "trip_type": np.where(rng.random(n) < 0.03, 2, 1).astype(np.int64),
        },
        columns=list(COLUMNS),
    )
    if corrupt:
        frame = _corrupt(frame, rng)
    return frame


def _corrupt(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Break `frame` like a bad export: swapped/shifted timestamps, missing and negative miles."""
    n = len(frame)
    pickup = frame["lpep_pickup_datetime"].to_numpy()
    dropoff = frame["lpep_dropoff_datetime"].to_numpy()
    kind = rng.random(n)
    swapped = kind < 0.35  # dropoff written into the pickup column and vice versa
    shifted = (kind >= 0.35) & (kind < 0.65)  # dropoff in the wrong timezone / day: hours long
    hours = rng.integers(3, 30, size=n).astype("timedelta64[h]").astype("timedelta64[us]")
    frame["lpep_pickup_datetime"] = np.where(swapped, dropoff, pickup)
    frame["lpep_dropoff_datetime"] = np.where(
        swapped, pickup, np.where(shifted, dropoff + hours, dropoff)
    )
    distance = frame["trip_distance"].to_numpy(copy=True)
    broken = rng.random(n)
    distance[broken < 0.05] = np.nan
    negative = (broken >= 0.05) & (broken < 0.10)
    distance[negative] = -distance[negative]
    frame["trip_distance"] = distance
    return frame


def _sql_type(dtype: object) -> sa.types.TypeEngine:
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return sa.DateTime()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float()
    return sa.Text()


def load_months(db_url: str, frames: dict[str, pd.DataFrame]) -> None:
    """Write each month's frame to its `table_name(month)` table, replacing what was there.

    SQLAlchemy Core rather than `DataFrame.to_sql`: pandas 3 only accepts SQLAlchemy >= 2.0.36,
    and Prefect 2.x pins an older one.
    """
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                # Readers must be blocked by writers' exclusive locks (rollback journal), so undo a
                # WAL mode some other tool may have left behind in an existing file.
                conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
        for month, frame in frames.items():
            table = sa.Table(
                table_name(month),
                sa.MetaData(),
                *(sa.Column(name, _sql_type(dtype)) for name, dtype in frame.dtypes.items()),
            )
            rows = frame.astype(object).where(frame.notna(), None)  # NaN/NaT as SQL NULL
            with engine.begin() as conn:
                table.drop(conn, checkfirst=True)
                table.create(conn)
                if engine.dialect.name == "postgresql":
                    _copy_rows(conn, table, rows)
                elif len(rows):
                    conn.execute(table.insert(), rows.to_dict(orient="records"))
    finally:
        engine.dispose()


def drop_months(db_url: str, months: tuple[str, ...]) -> None:
    """Drop each month's table if it is there: data that has not arrived yet."""
    if not months:
        return
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            for month in months:
                sa.Table(table_name(month), sa.MetaData()).drop(conn, checkfirst=True)
    finally:
        engine.dispose()


def _copy_rows(conn: sa.Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    """PostgreSQL's COPY (through psycopg): about 4x faster than INSERTs for a month of trips."""
    columns = ", ".join(f'"{name}"' for name in rows.columns)
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
        for row in rows.itertuples(index=False, name=None):
            copy.write_row(row)


def _read_only_sqlite_url(url: URL) -> URL:
    """Same database opened read-only through a SQLite URI, so a missing file is an error."""
    database = url.database
    if (
        url.get_driver_name() != "pysqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
        or "uri" in url.query
    ):
        return url  # in-memory or already a URI: nothing safe to rewrite
    # as_uri() percent-quotes the path, so names with '?', '#' or spaces stay one file name.
    uri = Path(os.path.abspath(database)).as_uri()
    return url.set(database=uri, query={**url.query, "mode": "ro", "uri": "true"})


def read_month_sql(
    db_url: str,
    month: str,
    *,
    timeout_s: float = 0.2,
    lock_wait: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> pd.DataFrame:
    """SELECT * from `month`'s table; the reader gives up on a locked table after `timeout_s`.

    `lock_wait()` wraps the part that timeout guards: the query's start, until the database lets
    it read (SQLite's first row; PostgreSQL's cursor declared, its table lock granted).
    """
    url = make_url(db_url)
    connect_args: dict[str, object] = {}
    if url.get_backend_name() == "sqlite":
        url = _read_only_sqlite_url(url)
        # Fail with "database is locked" after timeout_s instead of waiting 5 s for a writer.
        connect_args["timeout"] = timeout_s
    elif url.get_backend_name() == "postgresql":
        # "canceling statement due to lock timeout" instead of waiting for the maintenance.
        connect_args["options"] = f"-c lock_timeout={max(int(timeout_s * 1000), 1)}"
        connect_args["connect_timeout"] = 5
    engine = sa.create_engine(url, connect_args=connect_args)
    query = sa.select(sa.literal_column("*")).select_from(sa.table(table_name(month)))
    try:
        # Executed here rather than by pd.read_sql, which would wrap SQLAlchemy's OperationalError
        # ("database is locked", "no such table") in its own DatabaseError.
        with engine.connect() as conn:
            if url.get_backend_name() == "postgresql":
                # A server-side cursor: execute() returns once the lock is granted, rows follow.
                conn = conn.execution_options(stream_results=True, max_row_buffer=10_000)
            with lock_wait():
                result = conn.execute(query)
            # Plain tuples: from_records probes each SQLAlchemy Row for keys (an exception per row).
            frame = pd.DataFrame.from_records(
                [tuple(row) for row in result], columns=list(result.keys()), coerce_float=True
            )
    finally:
        engine.dispose()
    for column in DATETIME_COLUMNS:
        if column in frame.columns:
            # SQLite keeps timestamps as text; other backends return datetime objects already.
            frame[column] = pd.to_datetime(frame[column])
    return frame
