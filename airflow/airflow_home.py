"""An Airflow home for one process: the environment that points Airflow at it and at a DAGs
folder, and a fresh metadata database (`airflow db migrate`) before Airflow is imported.

Used by the harness's adapter, the overhead benchmark and the probes, each with its own DAGs
folder; light on purpose (no Airflow, no pipeline imports): the benchmark times what follows.
"""

from __future__ import annotations

import atexit
import gc
import os
import subprocess
import sys
from pathlib import Path


def airflow_cli() -> Path:
    return Path(sys.executable).with_name("airflow")


def airflow_env(home: Path, dags_folder: Path, log_level: str = "WARNING") -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
            "AIRFLOW__LOGGING__LOGGING_LEVEL", log_level
        ),
    }


def migrate(home: Path, dags_folder: Path, log_level: str = "WARNING") -> dict[str, str]:
    """`airflow db migrate` of a fresh metadata database in `home`; returns the environment that
    points Airflow at it (set it before importing Airflow).
    """
    if "airflow.settings" in sys.modules:
        raise RuntimeError("airflow was imported before AIRFLOW_HOME was set")
    env = airflow_env(home, dags_folder, log_level)
    subprocess.run(
        [airflow_cli(), "db", "migrate"],
        env={**os.environ, **env},
        cwd=home,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def import_airflow(env: dict[str, str]) -> None:
    """Airflow imported against the home `env` points at (from migrate())."""
    os.environ.update(env)
    import airflow.dag_processing.dagbag  # noqa: F401  (the import the callers time or need)

    # Airflow's object graph makes the interpreter's last garbage collection take seconds.
    atexit.register(gc.freeze)


def migrate_then_import(home: Path, dags_folder: Path, log_level: str = "WARNING") -> None:
    """A metadata database migrated in `home`, then Airflow imported against it."""
    import_airflow(migrate(home, dags_folder, log_level))
