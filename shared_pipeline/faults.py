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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from shared_pipeline.context import RunContext, current_run, load_context, run_path
from shared_pipeline.data import table_name
from shared_pipeline.enrichment_api import STALL_PATH, set_api_mode
from shared_pipeline.faults_plan import API_FAULTS, HANG_FAULTS, FaultKind, planned_fault

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
        " outcome TEXT, error TEXT, clocked REAL)"
    )
    return conn


def init_attempt_log(run_dir: str | Path) -> None:
    _connect(run_dir).close()


def read_attempt_log(run_dir: str | Path, run: int | None = None) -> list[dict]:
    conn = _connect(run_dir)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT run, step, key, attempt, fault, pid, started, ended, outcome, error, clocked"
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
    clocked: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def clock(self) -> Iterator[None]:
        """Time a part of this attempt that a clock of its own guards: a lock wait, one request."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.clocked.append(time.perf_counter() - began)

    @property
    def db_url(self) -> str:
        """The URL this attempt reaches the database at: a dead endpoint during an outage."""
        if self.fault is not FaultKind.DB_UNREACHABLE:
            return self.ctx.db_url
        url = make_url(self.ctx.db_url)
        if url.get_backend_name() == "sqlite":
            # The volume is gone: a read-only open of a file in a missing folder fails.
            return f"sqlite:///{self.ctx.path / 'unmounted-volume' / 'trips.db'}"
        if "host" in url.query:
            # A server reached through a unix socket: a folder beside its own where none listens
            # (beside it, as socket paths may not be longer than 107 bytes).
            gone = Path(str(url.query["host"])).parent / "no-server"
            gone.mkdir(exist_ok=True)
            url = url.update_query_dict({"host": str(gone)})
        else:
            url = url.set(host="127.0.0.1", port=_closed_port())
        return url.render_as_string(hide_password=False)

    def hang_if_planned(self) -> None:
        """HANG: a loop that stops making progress; BLOCK: one call that never returns; KILLED:
        midway, waiting for the kill (a process that outlives it gives up at the cap).
        """
        cap = self.ctx.settings.hang_cap_s
        if self.fault in (FaultKind.HANG, FaultKind.KILLED):
            deadline = time.monotonic() + cap
            # Short sleeps: an engine that interrupts (signal or thread exception) gets in
            # between two of them, as it would between any two Python statements.
            while time.monotonic() < deadline:
                time.sleep(0.05)
        elif self.fault is FaultKind.BLOCK:
            try:
                _blocking_read(self.ctx.api_url, cap)
            except TimeoutError:
                pass
        else:
            return
        raise HangCapReached(f"{self.step} hung for {cap:g} s and nothing interrupted it")

    def corrupt_if_planned(self, values: np.ndarray) -> np.ndarray:
        if self.fault is not FaultKind.CORRUPT_FEATURES:
            return values
        broken = np.array(values, dtype=float, copy=True)
        broken[:: max(len(broken) // 50, 1)] = np.nan
        return broken


def _blocking_read(api_url: str, deadline_s: float) -> None:
    """Send a request to a server that accepted it and never answers, then wait in ONE recv().

    A thread stuck in a C call runs no Python bytecode, so an exception injected into it (how
    thread-based timeouts cancel) waits until the call returns; a signal handler does not.
    """
    host, _, port = api_url.removeprefix("http://").rstrip("/").partition(":")
    with socket.create_connection((host, int(port)), timeout=deadline_s) as sock:
        sock.sendall(f"GET {STALL_PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.recv(1)  # raises TimeoutError at the deadline; never returns data
    raise ConnectionError(f"{api_url}{STALL_PATH} closed the connection without an answer")


@contextlib.contextmanager
def _db_lock(db_url: str, month: str | None) -> Iterator[None]:
    """Maintenance: another session holds the lock a reader needs, for this attempt only."""
    if make_url(db_url).get_backend_name() != "sqlite":
        with _table_lock(db_url, table_name(month or "")):
            yield
        return
    holder = sqlite3.connect(_sqlite_file(db_url), timeout=10, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


@contextlib.contextmanager
def _table_lock(db_url: str, table: str) -> Iterator[None]:
    # What an operator's ALTER TABLE or VACUUM FULL takes: readers wait, then their lock_timeout
    # cancels them with PostgreSQL's "canceling statement due to lock timeout".
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as holder, holder.begin():
            holder.exec_driver_sql(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
            yield
    finally:
        engine.dispose()


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
    attempt = Attempt(ctx=ctx, step=step, key=key, number=number, fault=fault)
    began = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            if fault is FaultKind.DB_LOCKED:
                stack.enter_context(_db_lock(ctx.db_url, key))
            elif fault in API_FAULTS:
                stack.enter_context(_api_mode(ctx, API_FAULTS[fault]))
            yield attempt
    except BaseException as exc:  # timeouts arrive as BaseException subclasses in some engines
        # A hang that ran to its cap was not interrupted, whatever exception the engine then
        # delivered: a thread-based cancel lands as soon as the blocked call returns at the cap.
        ran_to_cap = fault in HANG_FAULTS and time.monotonic() - began >= ctx.settings.hang_cap_s
        outcome = "hang_cap_reached" if ran_to_cap or isinstance(exc, HangCapReached) else "failed"
        error = f"{type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        conn = _connect(run_dir)
        try:
            conn.execute(
                "UPDATE attempts SET ended = ?, outcome = ?, error = ?, clocked = ? WHERE id = ?",
                (_now(), outcome, error, max(attempt.clocked, default=None), row_id),
            )
        finally:
            conn.close()
