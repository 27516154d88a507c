"""What the benchmark reads from Prefect's own server: the task-run states it has still to store
(its SQLite database against what the flows ran) and the lines of its log during a run.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

# A task run's states as the server stores them: Pending, Running, Completed.
STATES_PER_TASK_RUN = 3
# Server log lines that tell a request was refused for the client to retry (3.x, SQLite): the
# access log's status, the error the server logs for each (PREFECT_SERVER_LOG_RETRYABLE_ERRORS),
# and the cause its traceback ends with.
REFUSED = '" 503'  # ... "POST /api/flow_runs/ HTTP/1.1" 503
RETRYABLE = "Encountered retryable exception in request"
LOCKED = "database is locked"
EXCERPT_CHARS = 200


@contextlib.contextmanager
def stdio_to(log: Path) -> Iterator[None]:
    """This process's stdout and stderr go to `log` meanwhile: a child started here (3.x's API
    server subprocess inherits them) keeps writing there.
    """
    with log.open("ab") as sink:
        saved = [os.dup(fd) for fd in (1, 2)]
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


class ServerWatch:
    """Counts what the server has stored in its database and what its log says since a mark."""

    def __init__(self, database: Path, log: Path | None) -> None:
        self.database = database
        self.log = log
        self.task_runs = 0  # task runs the flows ran so far: each ends in STATES_PER_TASK_RUN
        self._mark = 0

    def stored(self) -> tuple[int, int]:
        """(task runs, task-run states) in the server's database now (read-only)."""
        with contextlib.closing(
            sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
        ) as db:
            runs = db.execute("SELECT count(*) FROM task_run").fetchone()[0]
            states = db.execute("SELECT count(*) FROM task_run_state").fetchone()[0]
        return runs, states

    def backlog(self) -> int:
        """Task-run states the flows reported that the server has not stored yet."""
        return self.task_runs * STATES_PER_TASK_RUN - self.stored()[1]

    def settle(self, timeout_s: float = 300.0) -> float:
        """Wait until the server has stored every task-run state; return how long that took."""
        started = time.perf_counter()
        while self.backlog() > 0:
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"the server still had {self.backlog()} states to store")
            time.sleep(0.1)
        return time.perf_counter() - started

    def mark(self) -> None:
        """Where the log's next lines start (see lines())."""
        self._mark = self.log.stat().st_size if self.log and self.log.exists() else 0

    def lines(self) -> list[str]:
        """The server's log lines since mark()."""
        if self.log is None or not self.log.exists():
            return []
        with self.log.open("rb") as text:
            text.seek(self._mark)
            return text.read().decode(errors="replace").splitlines()

    def log_evidence(self) -> dict:
        """Requests refused (503), the retryable errors behind them, and `database is locked` in
        the log since mark() (none without a log: 2.x's API runs in-process).
        """
        if self.log is None:
            return {}
        lines = self.lines()
        refused = [line for line in lines if REFUSED in line]
        locked = [line for line in lines if LOCKED in line]
        return {
            "http_503": len(refused),
            "retryable_errors": sum(RETRYABLE in line for line in lines),
            "database_locked_lines": len(locked),
            # The first of each, as logged: the refused request and the error behind it.
            "excerpt": {
                kind: found[0][:EXCERPT_CHARS]
                for kind, found in (("refused", refused), ("locked", locked))
                if found
            },
        }
