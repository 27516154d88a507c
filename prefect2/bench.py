"""Trivial Prefect tasks for the overhead benchmark (same code on 2.x and 3.x)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from prefect2.compat import MAJOR, VERSION, ApiServer, drain_events, use_prefect_home

__all__ = ["VERSION", "chain", "fanout", "pids", "start", "stop"]

_server = ApiServer()
_flows: dict[str, Any] = {}
_settings = contextlib.ExitStack()


def start(workdir: Path) -> None:
    """A fresh Prefect home in `workdir`, then import Prefect and start its API (3.x)."""
    use_prefect_home(workdir)
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
    _server.start()


def chain(n: int) -> None:
    _flows["chain"](n)
    drain_events()  # 3.x: until the client has sent its events (the server stores them later)


def fanout(n: int) -> None:
    _flows["fanout"](n)
    drain_events()


def stop() -> None:
    _server.stop()
    _settings.close()


def pids() -> list[int]:
    return [_server.pid] if _server.pid else []
