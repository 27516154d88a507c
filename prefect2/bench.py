"""Trivial Prefect tasks for the overhead benchmark (same code on 2.x and 3.x).

3.x runs in two regimes (REGIMES): its API server stores task runs from events after the flow
has returned, so a run costs what the server still has to do from the runs before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from prefect2.bench_server import ServerWatch, stdio_to
from prefect2.compat import MAJOR, VERSION, ApiServer, drain_events, use_prefect_home
from shared_pipeline.bench import SHAPES, SIZES

__all__ = ["REGIMES", "VERSION", "after", "before", "chain", "fanout", "pids", "start", "stop"]

LARGE_RUN = 1000  # the chain whose events the "after a large run" regime starts behind
# Regime -> what it is, the sizes and shapes it measures. 2.x writes every state through its
# in-process API before the task goes on (nothing is left behind a run): one regime. After a
# large run, every run waits on the same backlog whatever its shape: the chain alone, repeated.
REGIMES: dict[str, tuple[str, tuple[int, ...], tuple[str, ...]]] = (
    {
        "idle server": (
            "each run starts once the server has stored every task-run state of the runs before it",
            SIZES,
            SHAPES,
        ),
        "after a large run": (
            f"each run starts straight after a chain of {LARGE_RUN:,} tasks returned, while the "
            "server is still storing that chain's task-run states",
            (10, 100),
            ("chain",),
        ),
    }
    if MAJOR >= 3
    else {
        "in-process API": (
            "back to back: the in-process API has stored every state when a flow returns",
            SIZES,
            SHAPES,
        )
    }
)

_server = ApiServer()
_flows: dict[str, Any] = {}
_settings = contextlib.ExitStack()
_watch: list[ServerWatch] = []
_pending_at_start: list[int] = []  # before() counts, after() reports


def start(workdir: Path) -> dict[str, float]:
    """A fresh Prefect home in `workdir`, import Prefect, create and migrate its database, start
    its API (3.x: a server subprocess, its log in workdir/server.log); each part's seconds.
    """
    started = time.perf_counter()
    use_prefect_home(workdir)
    log = workdir / "server.log" if MAJOR >= 3 else None
    if log:
        # The server's access log (each request's status) and the errors it answers 503 for.
        os.environ.update(
            PREFECT_SERVER_LOGGING_LEVEL="INFO", PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true"
        )
    from prefect import flow, task

    if MAJOR >= 3:
        # As in the pipeline's runs: 3.x waits ~1 s per flow run for a heartbeat thread.
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        _settings.enter_context(temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))

    @task
    def step(x: int) -> int:
        return x + 1

    @task
    def join(values: list[int]) -> int:
        return sum(values)

    @flow
    def chain_flow(n: int) -> None:
        x = 0
        for _ in range(n):
            x = step(x)

    @flow
    def fanout_flow(n: int) -> None:
        join(step.map(range(n)))

    _flows.update(chain=chain_flow, fanout=fanout_flow)
    imported = time.perf_counter()
    _migrate()
    migrated = time.perf_counter()
    if log:
        with stdio_to(log):
            _server.start()
    else:
        asyncio.run(_healthcheck())
    _watch.append(ServerWatch(workdir / "prefect.db", log))
    return {
        "import": imported - started,
        "database creation and migration": migrated - imported,
        "API server start" if log else "in-process API start": time.perf_counter() - migrated,
    }


def _migrate() -> None:
    """What the API does at its start (then finds nothing to do): its database to Alembic head."""
    from prefect.server.database.dependencies import provide_database_interface

    asyncio.run(provide_database_interface().create_db())


async def _healthcheck() -> None:
    """2.x: the first client builds the in-process API app and runs its start-up."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.api_healthcheck()


def _run(shape: str, n: int) -> None:
    _flows[shape](n)
    _watch[0].task_runs += n if shape == "chain" else n + 1  # the fan-out's join too
    drain_events()  # 3.x: until the client has sent its events (the server stores them later)


def chain(n: int) -> None:
    _run("chain", n)


def fanout(n: int) -> None:
    _run("fanout", n)


def before(regime: str) -> None:
    """Set up the regime's start for the next measured run (not timed)."""
    watch = _watch[0]
    watch.settle()
    if regime == "after a large run":
        chain(LARGE_RUN)
    watch.mark()
    _pending_at_start[:] = [watch.backlog()]


def after() -> dict:
    """What the server shows of the run just measured (not timed): the task-run states it had
    still to store when the run started and when it returned, how long after that it had
    stored them all, and its log's refusals meanwhile.
    """
    watch = _watch[0]
    pending = watch.backlog()
    evidence = {
        "pending_states_at_start": _pending_at_start[0] if _pending_at_start else None,
        "pending_states_at_end": pending,
        "stored_all_after_s": round(watch.settle(), 2),
    }
    return {**evidence, **watch.log_evidence()}


def stop() -> None:
    _server.stop()
    _settings.close()


def pids() -> list[int]:
    return [_server.pid] if _server.pid else []
