"""Trivial Prefect 1 tasks for the overhead benchmark: static `with Flow(...)` graphs, flow.run().

`prefect1`: the default LocalExecutor (tasks one by one on the main thread); `prefect1.bench_dask`
runs the same flows on a DaskExecutor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

__all__ = ["VERSION", "chain", "fanout", "pids", "start", "stop"]

VERSION = version("prefect")

_tasks: dict[str, Any] = {}
_executor: list[Callable[[], Any]] = []


def configure(workdir: Path) -> None:
    """The pipeline's Prefect 1 settings (prefect1/adapter.py), with every path in `workdir`.

    Prefect 1 reads its configuration once, at `import prefect`. Results are not checkpointed
    (no engine persists the benchmark's results).
    """
    os.environ.update(
        PREFECT__HOME_DIR=str(workdir),
        PREFECT__USER_CONFIG_PATH=str(workdir / "config.toml"),  # not a user's ~/.prefect config
        PREFECT__BACKEND="server",  # never Prefect Cloud (flow.run() talks to no backend)
        PREFECT__LOGGING__LEVEL="WARNING",
        DASK_CONFIG=str(workdir / "dask-config"),  # not ~/.config/dask
        DASK_TEMPORARY_DIRECTORY=str(workdir / "dask-scratch"),  # not the temp directory
    )


def start(workdir: Path) -> None:
    """Configure, then import Prefect 1 and declare the two tasks; flows run on LocalExecutor."""
    configure(workdir)
    from prefect import task
    from prefect.executors import LocalExecutor

    @task
    def step(x: int) -> int:
        return x + 1

    @task
    def join(values: list[int]) -> int:
        return sum(values)

    _tasks.update(step=step, join=join)
    use_executor(LocalExecutor)


def use_executor(make: Callable[[], Any]) -> None:
    """The executor each flow run gets (`flow.run(executor=make())`)."""
    _executor[:] = [make]


def _flow(shape: str, n: int) -> Any:
    """The static graph for (shape, n), declared afresh for every run.

    As in a flow-run process, which loads the flow and runs it once: Prefect 1 caches the
    graph's topological sort on the Flow object, so a second run of the same object skips it.
    """
    from prefect import Flow

    step, join = _tasks["step"], _tasks["join"]
    with Flow(f"bench-{shape}-{n}") as flow:
        if shape == "chain":
            x: Any = 0
            for _ in range(n):
                x = step(x)
        else:
            join(step.map(list(range(n))))
    return flow


def _run(shape: str, n: int) -> None:
    state = _flow(shape, n).run(executor=_executor[0]())
    if not state.is_successful():
        raise RuntimeError(f"the {shape} flow of {n} tasks ended {state!r}")


def chain(n: int) -> None:
    _run("chain", n)


def fanout(n: int) -> None:
    _run("fanout", n)


def stop() -> None:
    """Nothing runs between flow runs."""


def pids() -> list[int]:
    return []
