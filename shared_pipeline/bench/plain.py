"""The baseline: the same trivial tasks as plain function calls (what the work itself costs)."""

from __future__ import annotations

import platform
from pathlib import Path

VERSION = platform.python_version()


def step(x: int) -> int:
    return x + 1


def join(values: list[int]) -> int:
    return sum(values)


def start(workdir: Path) -> None:
    """Nothing to import or configure."""


def chain(n: int) -> None:
    x = 0
    for _ in range(n):
        x = step(x)


def fanout(n: int) -> None:
    join([step(i) for i in range(n)])


def stop() -> None:
    """Nothing to stop."""


def pids() -> list[int]:
    return []
