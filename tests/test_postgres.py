"""PostgreSQL as the source database: a throw-away server per process that never outlives it, and
the database faults as PostgreSQL's own errors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from process_support import wait_gone
from sqlalchemy.engine import URL, make_url

from shared_pipeline import postgres

# Starts this process's server under OUT/runs/, prints its URL and pid, waits for a line on stdin,
# then fails (or, if told "sleep", waits to be killed).
SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shared_pipeline.postgres import server_pids, server_url

    import sqlalchemy as sa

    url = server_url(Path(sys.argv[1]) / "runs")
    with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.exec_driver_sql("CREATE ROLE reader LOGIN")  # may read, may not create tables
    print(url.render_as_string(hide_password=False), server_pids()[0], flush=True)
    if sys.stdin.readline().strip() == "sleep":
        time.sleep(120)
    raise RuntimeError("the process fails with its server running")
    """
)


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], str, int]:
    home = tmp_path / "home"
    home.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "out")],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(home)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.communicate()[1]
    url, pid = line.split()
    return process, url, int(pid)


def _assert_nothing_left(tmp_path: Path, pid: int) -> None:
    assert wait_gone(pid), f"PostgreSQL server {pid} outlived its process"
    # Data directory, socket and lock files were all under OUT/runs/, and are gone with it.
    assert list((tmp_path / "out" / "runs" / ".postgres").iterdir()) == []
    assert list((tmp_path / "home").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]


def _cli_run(tmp_path: Path, db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared_pipeline", "run", "--engine", "python"]
        + ["--scenario", "happy_path", "--out", str(tmp_path / "cli"), "--db-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    for text in mentions:
        assert text in result.stderr


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp folder with a short name: a unix socket's path may not exceed 107 bytes, and the
    server's socket sits inside the output folder (a test's own tmp_path is named after it)."""
    return tmp_path_factory.mktemp("pg")


@pytest.mark.timeout(180)
def test_server_stops_when_its_process_fails_and_refuses_bad_roles(short_tmp: Path) -> None:
    tmp_path = short_tmp
    process, url, pid = _start(tmp_path)
    try:
        socket_dir = Path(make_url(url).query["host"])
        assert socket_dir.is_relative_to(tmp_path / "out" / "runs" / ".postgres")
        unknown = _cli_run(tmp_path, url.replace("postgres:@", "nobody:guess@", 1))
        read_only = _cli_run(tmp_path, url.replace("postgres:@", "reader@", 1))
    finally:
        _, stderr = process.communicate("fail\n", timeout=60)

    _assert_one_line(unknown, "cannot reach database", 'role "nobody" does not exist')
    assert "guess" not in unknown.stderr
    _assert_one_line(read_only, "cannot load the months", "permission denied for schema public")
    assert not (tmp_path / "cli").exists()
    assert process.returncode == 1 and "RuntimeError" in stderr
    _assert_nothing_left(tmp_path, pid)


@pytest.mark.timeout(120)
def test_server_stops_when_its_process_gets_sigterm(short_tmp: Path) -> None:
    tmp_path = short_tmp
    process, _, pid = _start(tmp_path)
    assert process.stdin is not None
    process.stdin.write("sleep\n")
    process.stdin.flush()
    time.sleep(0.5)

    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)

    assert process.returncode == 128 + signal.SIGTERM
    _assert_nothing_left(tmp_path, pid)


def test_servers_start_on_a_copy_of_one_seeded_data_directory(short_tmp: Path) -> None:
    runs = short_tmp / "runs"
    seeds: list[str] = []

    def seed(server: URL) -> None:
        seeds.append(postgres.create_database(server, "template_db"))

    seeded = postgres.seeded_data(runs, runs / ".cache" / "pg-seeded", seed)
    assert postgres.seeded_data(runs, runs / ".cache" / "pg-seeded", seed) == seeded
    assert len(seeds) == 1  # made once, then reused
    assert not (seeded / "postmaster.pid").exists()  # a stopped server's, safe to copy

    server = postgres.server_url(runs, seeded)
    assert postgres.database_exists(server, "template_db")
    assert make_url(server).query["host"].startswith(str(runs / ".postgres"))  # not the seed's


# The control's conformance runs on PostgreSQL (tests/test_conformance.py), read again here.


def test_maintenance_is_postgresql_lock_timeout_and_retries_recover(scenario_run) -> None:
    record = scenario_run("db_maintenance", "postgres")
    (run,) = record.runs
    assert record.db_backend == "postgresql"
    failed = [e for e in run.attempt_log if e.step == "extract" and e.outcome == "failed"]
    assert [(e.key, e.attempt) for e in failed] == [
        ("2024-02", 1),
        ("2024-02", 2),
        ("2024-03", 1),
        ("2024-03", 2),
    ]
    for entry in failed:
        assert entry.error is not None
        assert "LockNotAvailable" in entry.error
        assert "canceling statement due to lock timeout" in entry.error
    assert {t.attempts for t in run.tasks if t.step == "extract"} == {3}


def test_outage_is_a_socket_nobody_listens_on(scenario_run) -> None:
    (run,) = scenario_run("db_down", "postgres").runs
    errors = {e.error for e in run.attempt_log if e.step == "extract"}
    assert len(run.attempt_log) == 4
    for error in errors:
        assert error is not None
        assert "Is the server running locally and accepting connections on that socket?" in error
