"""Embedded defaults for every run: sizes, months, retry and timeout budgets, thresholds.

Wirings read retry and timeout budgets from these defaults when they declare their tasks.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Knobs shared by every wiring. Short delays keep the whole catalogue fast; all are real."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trips_per_month: int = Field(30_000, ge=1_000)
    production_month: str = "2024-01"  # the month the seeded production model was trained on
    train_month: str = "2024-02"
    valid_month: str = "2024-03"
    # The monthly schedule (monthly_backfill, late_month): the months its runs train on, each
    # validated on the month after, and the month whose table arrives late.
    schedule_months: tuple[str, ...] = (
        "2024-02", "2024-03", "2024-04", "2024-05", "2024-06", "2024-07"
    )  # fmt: skip
    late_month: str = "2024-05"

    # Extract: the database may be under maintenance for a while.
    extract_retries: int = 3
    extract_retry_delay_s: float = 0.2
    # How long a reader waits for a locked table (SQLite's busy timeout, PostgreSQL's
    # lock_timeout). A healthy read waited at most 0.021 s for its table (the statement's start,
    # parse and plan included) in a full run: 0.5 s keeps 10x over it.
    db_busy_timeout_s: float = 0.5
    # Enrichment API: a client timeout turns a silent hang into an error the engine can retry.
    enrich_retries: int = 2
    enrich_retry_delay_s: float = 0.1
    # A healthy request took up to 0.063 s, in a deployed flow run beside a busy core (0.5 s kept
    # 8x): 1 s keeps 16x.
    api_timeout_s: float = 1.0
    # Training: a candidate that runs longer than this is stopped by the engine. A healthy fit
    # (the regressor on the features' matrix) took up to 0.291 s in test mode on 2 cores, where
    # 3 s keeps 10x, and 0.263 s in a deployed flow run (8x at 2 s) but 0.402 s in a deployed
    # task beside a busy core (7x at 3 s: still short, see REPORT.md's clocks); whole
    # seconds, as some engines take only ints.
    train_timeout_s: float = 3.0
    # A planned hang gives up after this long, so an engine that cannot interrupt still ends
    # (2 s after the training timeout, as before it was raised).
    hang_cap_s: float = 5.0

    # Quality gate.
    min_kept_fraction: float = 0.8  # rows surviving the 1..60 min filter
    max_rmse: float = 12.0

    # retrain_until_good: grow the training sample until RMSE is below target.
    retrain_target_rmse: float = 3.0
    retrain_max_rounds: int = 8
    retrain_first_fraction: float = 0.005
