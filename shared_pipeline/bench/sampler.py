"""Where the time goes: samples every busy thread's innermost frame, files it under a category.

A thread whose innermost frame is a wait (a lock, a queue, a selector, a sleep) is idle and not
counted: engines keep background threads that mostly wait.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

# First match wins, on the innermost frame's file (or function name, for waiting).
CATEGORIES = (
    ("database (SQL)", ("sqlalchemy", "sqlite3", "aiosqlite", "alembic", "psycopg")),
    ("API calls (HTTP client/server)", ("httpx", "httpcore", "h11", "starlette", "fastapi")),
    ("serialization and validation", ("pydantic", "json", "pickle", "orjson", "marshmallow")),
    ("event loop and threads", ("asyncio", "anyio", "concurrent", "sniffio")),
    ("logging", ("logging",)),
    ("the engine's own code", ("prefect", "airflow", "dask", "distributed")),
)
OTHER = "other"
IDLE = ("threading.py", "selectors.py", "queue.py", "socket.py", "ssl.py")


def category(filename: str) -> str:
    for name, needles in CATEGORIES:
        if any(needle in filename for needle in needles):
            return name
    return OTHER


class Sampler:
    """A daemon thread that samples all other threads every `interval_s` while running."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.is_set():
            for ident, frame in sys._current_frames().items():
                filename = frame.f_code.co_filename
                if ident != me and not filename.endswith(IDLE):
                    self.counts[category(filename)] += 1
            time.sleep(self.interval_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values()) or 1
        return {name: round(count / total, 3) for name, count in self.counts.most_common()}
