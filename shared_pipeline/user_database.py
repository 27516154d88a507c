"""A database the user names with `--db-url`, checked before anything is written: a clear
one-line reason when it cannot be used (SQLAlchemy only, so the check comes at once).
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared_pipeline import postgres
from shared_pipeline.scenarios import ScenarioError


def check_database(db_url: str) -> str:
    """Fail early and clearly when a user-given database URL cannot be used; returns the URL the
    suite will use (plain `postgresql://` means the psycopg driver this project ships).
    """
    try:
        url = make_url(postgres.normalize_url(db_url))
    except Exception as exc:  # SQLAlchemy's ArgumentError for anything that is not a URL
        raise ScenarioError(f"--db-url {db_url!r} is not a database URL: {exc}") from exc
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url)
    except ModuleNotFoundError as exc:
        raise ScenarioError(
            f"no driver for {shown}: Python package {exc.name!r} is not installed"
            f" (for PostgreSQL use postgresql:// or postgresql+psycopg://, whose driver the"
            f" project installs)"
        ) from exc
    except Exception as exc:  # an unknown dialect
        raise ScenarioError(f"cannot use {shown}: {exc}") from exc
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver's error: its first line is what the user needs
        lines = [line.strip() for line in str(getattr(exc, "orig", exc)).splitlines()]
        first = next((line for line in lines if line), type(exc).__name__)
        raise ScenarioError(f"cannot reach database {shown}: {first}") from exc
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False)
