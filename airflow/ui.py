"""Airflow 3's own UI (its api-server) over the metadata database a deployed session left, and the
page where it shows one DAG run and its task instances.

Loaded by file path, as adapter.py is (this folder is a DAGs folder, not a package).
"""

from __future__ import annotations

import os
import re
import secrets
import urllib.error
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared_pipeline.headroom import over
from shared_pipeline.loading import load_module
from shared_pipeline.services import HOST, Service, free_port
from shared_pipeline.ui import Page, RunPages, call

HOME = load_module("airflow/airflow_home.py")  # light: no pipeline, no Airflow import
DAGS_FOLDER = Path(__file__).resolve().parent
VERSION = version("apache-airflow")
# Measured: the api-server alone healthy in 7 s on an existing database (the three services of
# the deployed session in about 10 s beside a busy core).
START_S = 10.0
RUN = re.compile(r"^DAG run (\S+) / (\S+)$")  # airflow/deployed.py's native_message


class AirflowUI:
    """`airflow api-server` on a fresh loopback port, with the deployed session's home."""

    def __init__(self, engine: str) -> None:
        self.engine, self.version = engine, VERSION
        self.label = f"Airflow {VERSION} UI (api-server)"
        self.server: Service | None = None

    def state(self, services: Path) -> Path:
        return services / "airflow-home" / "airflow.db"

    def start(self, services: Path, scratch: Path) -> str:
        port = free_port()
        base = f"http://{HOST}:{port}"
        env = {
            # As airflow/deployed.py started its api-server, minus what only running tasks need
            # (the executor, the execution API's address).
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            **HOME.airflow_env(services / "airflow-home", DAGS_FOLDER),
            "HOME": str(scratch / "home"),  # a CLI without AIRFLOW_HOME writes ~/airflow
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # no login on loopback
        }
        argv = [str(HOME.airflow_cli()), "api-server", "--host", HOST, "--port", str(port)]
        self.server = Service(
            "api-server",
            [*argv, "--workers", "1"],
            env,
            scratch / "api-server.log",
            health=f"{base}/api/v2/monitor/health",
        )
        self.server.start(over(START_S))  # stop() stops it also if it never got healthy
        return base

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def find(self, base: str, record: dict[str, Any], run: int) -> RunPages:
        """The DAG run the record's `run`-th flow run names (a resumed run keeps its run id)."""
        named = RUN.match(record["runs"][run]["native_message"] or "")
        if named is None:
            raise LookupError("the record names no DAG run")
        dag_id, run_id = named.groups()
        where = f"{base}/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
        try:
            dag_run = call(where)
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            raise LookupError(f"no DAG run {run_id} in the left state: another session's") from None
        ran_in = Path((dag_run.get("conf") or {}).get("run_dir", "")).name
        if ran_in != Path(record["run_dir"]).name:
            raise LookupError(f"DAG run {run_id} is of another run directory ({ran_in})")
        tis = call(f"{where}/taskInstances?limit=1000")["task_instances"]
        # The Task Instances tab: one row per instance, its id (and map index) then its state.
        rows = sorted(f"{_row_name(t)} {_shown(t['state'])}" for t in tis)
        texts = (f"{run_id} {_shown(dag_run['state'])}", f"{len(tis)} Task Instances", *rows)
        page = Page(f"/dags/{dag_id}/runs/{quote(run_id, safe='')}", texts)
        return RunPages(run_id, run_id, page)


def _row_name(ti: dict[str, Any]) -> str:
    """A task instance's id, and its map index as rendered (train ridge_heavy) if it is mapped."""
    if ti["map_index"] < 0:
        return ti["task_id"]
    return f"{ti['task_id']} {ti.get('rendered_map_index') or ti['map_index']}"


def _shown(state: str | None) -> str:
    """A state as the UI's badges spell it: upstream_failed -> "Upstream Failed"."""
    return str(state).replace("_", " ").title()
