"""The MLflow model registry of one run directory: SQLite store, artifacts, `production` alias."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

MODEL_NAME = "nyc-green-taxi-duration"
ALIAS = "production"
EXPERIMENT = "trip-duration"
# Naming requirements explicitly skips MLflow's slow environment inference (about 2 s a model).
PIP_REQUIREMENTS = ["scikit-learn", "numpy", "scipy"]

# MLflow 3, when imported outside CI, writes ~/.config/mlflow/telemetry.json and sends usage
# telemetry: a run must write nothing outside its run directory. Set before mlflow is imported
# (only this module imports it); an explicit setting by the user still wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def store_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "mlflow"


def tracking_uri(run_dir: str | Path) -> str:
    return f"sqlite:///{store_dir(run_dir) / 'mlflow.db'}"


def _mlflow(run_dir: str | Path) -> Any:
    import mlflow

    # uv venvs have no pip; MLflow warns about it on every model it logs.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

    mlflow.set_tracking_uri(tracking_uri(run_dir))
    mlflow.set_registry_uri(tracking_uri(run_dir))
    return mlflow


def _client(run_dir: str | Path) -> Any:
    from mlflow import MlflowClient

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    uri = tracking_uri(run_dir)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def create_store(run_dir: str | Path, template: Path | None = None) -> None:
    """Create the run's MLflow store; copying a migrated empty database skips ~1 s of migrations."""
    store_dir(run_dir).mkdir(parents=True, exist_ok=True)
    db = store_dir(run_dir) / "mlflow.db"
    if template is not None and template.exists():
        shutil.copyfile(template, db)
    client = _client(run_dir)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        # Without an explicit artifact location MLflow writes ./mlruns in the current directory.
        client.create_experiment(
            EXPERIMENT, artifact_location=(store_dir(run_dir) / "artifacts").as_uri()
        )
    if template is not None and not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        empty = Path(run_dir) / "mlflow-template.tmp"
        _migrated_empty_copy(db, empty)
        empty.replace(template)


def _migrated_empty_copy(db: Path, target: Path) -> None:
    import sqlite3

    shutil.copyfile(db, target)
    conn = sqlite3.connect(target)
    with conn:
        # Keep the schema and the default experiment; drop what names this run's paths.
        conn.execute("DELETE FROM experiment_tags")
        conn.execute("DELETE FROM experiments WHERE name != 'Default'")
    conn.close()


def log_and_register(
    run_dir: str | Path, model: Any, *, metrics: dict[str, float], tags: dict[str, str]
) -> int:
    """Log `model` as an MLflow run and register it as a new version; returns the version."""
    from mlflow.exceptions import MlflowException

    mlflow, client = _mlflow(run_dir), _client(run_dir)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=PIP_REQUIREMENTS)
    try:
        client.get_registered_model(MODEL_NAME)
    except MlflowException:
        client.create_registered_model(MODEL_NAME)
    # The version carries the run's tags too (the month it was trained on), for the registry's
    # own account of what production was.
    version = client.create_model_version(
        MODEL_NAME, info.model_uri, run_id=run.info.run_id, tags=tags
    )
    return int(version.version)


def tag_version(run_dir: str | Path, version: int, tags: dict[str, Any]) -> None:
    client = _client(run_dir)
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, str(version), key, str(value))


def versions(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every registered version, oldest first: its number, when it was created (ms since the
    epoch), its tags and its MLflow run's rmse.
    """
    from mlflow.exceptions import MlflowException

    client = _client(run_dir)
    try:
        found = client.search_model_versions(f"name='{MODEL_NAME}'")
    except MlflowException:
        return []
    rows = []
    for v in sorted(found, key=lambda v: int(v.version)):
        metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
        rows.append(
            {
                "version": int(v.version),
                "created_ms": int(v.creation_timestamp),
                "tags": dict(v.tags),
                "rmse": metrics.get("rmse"),
            }
        )
    return rows


def load_version(run_dir: str | Path, version: int) -> Any:
    return _mlflow(run_dir).sklearn.load_model(f"models:/{MODEL_NAME}/{version}")


def promote(run_dir: str | Path, version: int) -> None:
    _client(run_dir).set_registered_model_alias(MODEL_NAME, ALIAS, str(version))


def production_version(run_dir: str | Path) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(_client(run_dir).get_model_version_by_alias(MODEL_NAME, ALIAS).version)
    except MlflowException:
        return None


def production_tags(run_dir: str | Path) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(_client(run_dir).get_model_version_by_alias(MODEL_NAME, ALIAS).tags)
    except MlflowException:
        return {}


def load_production(run_dir: str | Path) -> Any:
    return _mlflow(run_dir).sklearn.load_model(f"models:/{MODEL_NAME}@{ALIAS}")


def snapshot(run_dir: str | Path) -> dict[str, Any]:
    """Versions in the registry and which one is production, for the run record."""
    from mlflow.exceptions import MlflowException

    client = _client(run_dir)
    try:
        versions = sorted(
            int(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")
        )
    except MlflowException:
        versions = []
    return {"versions": versions, "production_version": production_version(run_dir)}
