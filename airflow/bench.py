"""Trivial Airflow 3 TaskFlow tasks for the overhead benchmark: one DAG run each, under dag.test().

The DAGs live in their own DAGs folder (bench_dags/): dag.test() re-parses the DAGs folder on
every call, so it holds nothing else (the pipeline's DAGs folder, airflow/, ignores both).
"""

from __future__ import annotations

import os
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared_pipeline.loading import load_module

__all__ = ["VERSION", "chain", "fanout", "pids", "start", "stop"]

VERSION = version("apache-airflow")
DAGS_FOLDER = Path(__file__).resolve().parent / "bench_dags"
DAG_FILE = DAGS_FOLDER / "overhead.py"


def start(workdir: Path) -> dict[str, float]:
    """A metadata database migrated in `workdir` (`airflow db migrate`), then import Airflow;
    returns each part's seconds.
    """
    home = load_module("airflow/airflow_home.py")
    started = time.perf_counter()
    env = home.migrate(workdir, DAGS_FOLDER)
    migrated = time.perf_counter()
    home.import_airflow(env)
    return {"import": time.perf_counter() - migrated, "airflow db migrate": migrated - started}


def _dag(shape: str, n: int) -> Any:
    """The DAG for (shape, n), parsed from its file afresh for every run.

    With dag.test()'s own parse of the DAGs folder, a run costs what `python dag_file.py`
    ending in `dag.test()` (Airflow's way to debug a DAG) costs.
    """
    from airflow.dag_processing.dagbag import DagBag

    dag_id = f"bench_{shape}_{n}"
    bag = DagBag(dag_folder=str(DAG_FILE))
    if bag.import_errors:
        raise RuntimeError(f"the benchmark's DAG file failed to import: {bag.import_errors}")
    return bag.dags[dag_id]


def _run(shape: str, n: int) -> None:
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    # The parsing context Airflow's own task runner sets: DAG files build only this DAG, here
    # and in dag.test()'s re-parse of the DAGs folder.
    os.environ[_AIRFLOW_PARSING_CONTEXT_DAG_ID] = f"bench_{shape}_{n}"
    try:
        run = _dag(shape, n).test()
    finally:
        del os.environ[_AIRFLOW_PARSING_CONTEXT_DAG_ID]
    if run.state != "success":
        raise RuntimeError(f"the {shape} DAG of {n} tasks ended {run.state}")


def chain(n: int) -> None:
    _run("chain", n)


def fanout(n: int) -> None:
    _run("fanout", n)


def stop() -> None:
    from airflow import settings

    if settings.engine is not None:
        settings.engine.dispose()


def pids() -> list[int]:
    return []
