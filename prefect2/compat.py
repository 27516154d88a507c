"""Everything that differs between Prefect 2.x and 3.x, in one place.

Flows and tasks are written once; futures, the API server and a few settings differ by major.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared_pipeline.headroom import over
from shared_pipeline.processes import exit_on_sigterm

VERSION = version("prefect")
MAJOR = int(VERSION.split(".")[0])
# 3.x's API server subprocess started in 10.1 s beside a busy core and an Airflow test session
# (8-10 s idle), rounded up; Prefect's own wait for it
# (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS) is 20 s, two slow starts from a failure.
SERVER_START_S = 12.0


def use_prefect_home(workdir: Path) -> None:
    """Point Prefect, before it is imported, at a fresh home in `workdir`, never at somebody's
    real server (PREFECT_API_URL unset: an ephemeral API on 2.x, our ApiServer on 3.x).
    """
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.update(
        PREFECT_HOME=str(workdir),
        PREFECT_PROFILES_PATH=str(workdir / "profiles.toml"),
        PREFECT_LOCAL_STORAGE_PATH=str(workdir / "storage"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )


def final_states(futures: Iterable[Any]) -> list[Any]:
    """Wait for futures and return their final states (2.x: `wait()` returns it; 3.x: `.state`)."""
    states = []
    for future in futures:
        waited = future.wait()
        states.append(waited if MAJOR == 2 else future.state)
    return states


class ApiServer:
    """The API the flows report to, one per process.

    2.x serves it in-process from SQLite in PREFECT_HOME: nothing to start or stop. 3.x starts a
    uvicorn subprocess; we start it ourselves on the main thread, so we can stop it for sure:
    at close(), at interpreter exit, and on SIGTERM.
    """

    def __init__(self) -> None:
        self._server: Any = None

    def start(self) -> None:
        if MAJOR == 2 or self._server is not None:
            return
        # Private in 3.x, but it is the instance get_client() reuses for the ephemeral API.
        from prefect.server.api.server import SubprocessASGIServer

        self._server = SubprocessASGIServer()
        self._server.start(timeout=int(over(SERVER_START_S)))
        atexit.register(self.stop)
        exit_on_sigterm()

    def stop(self) -> None:
        if self._server is None:
            return
        # Send the events still in flight before the server goes away, or task runs are lost.
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all()
        self._server.stop()
        self._server = None

    @property
    def api_url(self) -> str:
        if self._server is None:
            raise RuntimeError("3.x only, once started")
        return str(self._server.api_url)

    @property
    def pid(self) -> int | None:
        process = getattr(self._server, "server_process", None)
        return process.pid if process is not None else None


@contextlib.contextmanager
def flow_run_settings() -> Iterator[None]:
    """Settings for a flow run: 3.x's flow heartbeat off (2.x has none).

    Results go to PREFECT_LOCAL_STORAGE_PATH, set once per process in its engine home: 2.x
    keeps one in-process API app per distinct settings (`create_app`'s cache), so a result
    directory per run would build and start a new app for every flow run (0.37 s of CPU each,
    measured with py-spy).
    """
    if MAJOR < 3:
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    # 3.x waits ~1 s per flow run for a heartbeat thread we do not need.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def drain_events() -> None:
    """3.x records task runs from events, asynchronously: push out what is queued."""
    if MAJOR >= 3:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all()
