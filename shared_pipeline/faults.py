"""Real faults on cue: each step attempt is logged in SQLite and meets the fault its plan names.

The attempt log lives in the run directory, so counting works across processes (Dask, Airflow).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy.engine import make_url

from shared_pipeline.context import RunContext, current_run, load_context, run_path
from shared_pipeline.enrichment_api import set_api_mode
from shared_pipeline.faults_plan import API_FAULTS, FaultKind, planned_fault

ATTEMPTS_DB = "attempts.db"
FIXED_MARKER = "fault_fixed"


class HangCapReached(RuntimeError):
    """A planned hang ran to its cap: nothing interrupted it."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _connect(run_dir: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(run_path(run_dir, ATTEMPTS_DB), timeout=30, isolation_level=None)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS attempts (id INTEGER PRIMARY KEY, run INTEGER, step TEXT,"
        " key TEXT, attempt INTEGER, fault TEXT, pid INTEGER, started TEXT, ended TEXT,"
        " outcome TEXT, error TEXT)"
    )
    return conn


def init_attempt_log(run_dir: str | Path) -> None:
    _connect(run_dir).close()


def read_attempt_log(run_dir: str | Path, run: int | None = None) -> list[dict]:
    conn = _connect(run_dir)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT run, step, key, attempt, fault, pid, started, ended, outcome, error"
            " FROM attempts ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [dict(row) for row in rows if run is None or row["run"] == run]


def mark_fixed(run_dir: str | Path) -> None:
    """The operator's fix between two flow runs: faults planned `until_fixed` stop."""
    run_path(run_dir, FIXED_MARKER).write_text(_now())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sqlite_file(db_url: str) -> Path:
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ValueError(f"this fault needs a SQLite file database, not {url.render_as_string()}")
    return Path(url.database)


@dataclass(frozen=True)
class Attempt:
    ctx: RunContext
    step: str
    key: str | None
    number: int
    fault: FaultKind | None

    @property
    def db_url(self) -> str:
        """The URL this attempt reaches the database at: a dead endpoint during an outage."""
        if self.fault is not FaultKind.DB_UNREACHABLE:
            return self.ctx.db_url
        url = make_url(self.ctx.db_url)
        if url.get_backend_name() == "sqlite":
            # The volume is gone: a read-only open of a file in a missing folder fails.
            return f"sqlite:///{self.ctx.path / 'unmounted-volume' / 'trips.db'}"
        return url.set(host="127.0.0.1", port=_closed_port()).render_as_string(hide_password=False)

    def hang_if_planned(self) -> None:
        if self.fault is not FaultKind.HANG:
            return
        deadline = time.monotonic() + self.ctx.settings.hang_cap_s
        # Short sleeps: an engine that interrupts (signal or thread exception) gets in quickly.
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise HangCapReached(
            f"{self.step} hung for {self.ctx.settings.hang_cap_s:g} s and nothing interrupted it"
        )

    def corrupt_if_planned(self, values: np.ndarray) -> np.ndarray:
        if self.fault is not FaultKind.CORRUPT_FEATURES:
            return values
        broken = np.array(values, dtype=float, copy=True)
        broken[:: max(len(broken) // 50, 1)] = np.nan
        return broken


@contextlib.contextmanager
def _db_lock(db_url: str) -> Iterator[None]:
    holder = sqlite3.connect(_sqlite_file(db_url), timeout=10, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


@contextlib.contextmanager
def _api_mode(ctx: RunContext, mode: str) -> Iterator[None]:
    set_api_mode(ctx.api_control_url, mode)
    try:
        yield
    finally:
        set_api_mode(ctx.api_control_url, "ok")


@contextlib.contextmanager
def step_attempt(run_dir: str | Path, step: str, key: str | None = None) -> Iterator[Attempt]:
    """Log one attempt of `step`, put its planned fault in place, and log how it ended."""
    ctx = load_context(run_dir)
    run = current_run(run_dir)
    fixed = run_path(run_dir, FIXED_MARKER).exists()
    conn = _connect(run_dir)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (done,) = conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE step = ? AND key IS ?", (step, key)
        ).fetchone()
        number = done + 1
        fault = planned_fault(ctx.faults, step, key, number, fixed)
        cursor = conn.execute(
            "INSERT INTO attempts (run, step, key, attempt, fault, pid, started)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run, step, key, number, fault and str(fault), os.getpid(), _now()),
        )
        conn.execute("COMMIT")
        row_id = cursor.lastrowid
    finally:
        conn.close()

    outcome, error = "completed", None
    try:
        with contextlib.ExitStack() as stack:
            if fault is FaultKind.DB_LOCKED:
                stack.enter_context(_db_lock(ctx.db_url))
            elif fault in API_FAULTS:
                stack.enter_context(_api_mode(ctx, API_FAULTS[fault]))
            yield Attempt(ctx=ctx, step=step, key=key, number=number, fault=fault)
    except BaseException as exc:  # timeouts arrive as BaseException subclasses in some engines
        outcome = "hang_cap_reached" if isinstance(exc, HangCapReached) else "failed"
        error = f"{type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        conn = _connect(run_dir)
        try:
            conn.execute(
                "UPDATE attempts SET ended = ?, outcome = ?, error = ? WHERE id = ?",
                (_now(), outcome, error, row_id),
            )
        finally:
            conn.close()
