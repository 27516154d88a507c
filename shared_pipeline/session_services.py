"""A deployed session's services (servers, workers, schedulers) in one folder, shared by the
session's processes, with the webhook sink the engine notifies.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared_pipeline.records import EngineNotification
from shared_pipeline.services import Service, service_of
from shared_pipeline.webhook_sink import WebhookSink, wait_for
from shared_pipeline.workdirs import SharedService


class SessionServices:
    """One session's services in a folder of their own (`runs/<engine>/.services`), with the
    webhook sink they notify: started by the session's first process, shared by the others
    (`pytest -n 2`), stopped by the first once the others have left.
    """

    def __init__(self, runs: Path, mechanism: str) -> None:
        self.folder = runs / ".services"
        self.mechanism = mechanism  # how the engine tells of a failure, in the records
        self.sink_log = self.folder / "webhooks.jsonl"
        self._running: list[Service] = []
        self._sink: WebhookSink | None = None
        self._shared = SharedService(runs / ".shared")

    def join(self, start: Callable[[], str]) -> str:
        """The session's address: `start()`'s in a fresh folder if nobody has started them."""

        def fresh_start() -> str:
            # A new session starts afresh: no database, log or pid file of an old one (an old
            # SQLite WAL beside a new copy of a database is replayed into it).
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            return start()

        return self._shared.join(fresh_start)

    def start(self, service: Service, ready_s: float) -> Service:
        self._running.append(service.start(ready_s))
        return service

    def start_sink(self) -> str:
        """The sink's URL, to give the engine's notification mechanism."""
        self._sink = WebhookSink(self.sink_log).start()
        return self._sink.url

    def leave(self) -> None:
        self._shared.leave(self._stop)

    def _stop(self) -> None:
        while self._running:
            self._running.pop().stop()  # the last started first (a worker before its server)
        if self._sink is not None:
            self._sink.stop()

    def told(
        self, about: Callable[[dict[str, Any]], bool], limit_s: float
    ) -> list[EngineNotification]:
        """What the sink received about a run (waiting at most `limit_s` for the first), with
        which service sent it.
        """
        return [
            EngineNotification(
                mechanism=self.mechanism,
                received_at=r["received_at"],
                sender_pid=r["sender_pid"],
                sender=service_of(self.folder, r.get("sender_group")),
                payload=r["payload"],
            )
            for r in wait_for(self.sink_log, about, limit_s)
        ]
