"""The command line, as a user runs it: `python -m shared_pipeline ...` in a fresh directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_pipeline.conformance import check_record
from shared_pipeline.records import read_record
from shared_pipeline.scenarios import CATALOGUE
from shared_pipeline.vocabulary import FlowOutcome, RegistryEffect

# One test worker runs them all: `quick_runs` (15 processes at once) is then started once.
pytestmark = [pytest.mark.xdist_group("cli")]

UNREACHABLE_DB = "sqlite:////nonexistent/dir/x.db"
RUN = ("run", "--engine", "python", "--scenario", "happy_path")
# Quick invocations (about 2 s each, mostly imports), started together by `quick_runs`.
QUICK: dict[str, list[str]] = {
    "help": ["--help"],
    "list": ["list-scenarios"],
    "unknown-scenario": ["run", "--engine", "python", "--scenario", "nope", "--out", "out"],
    "unknown-engine": ["run", "--engine", "nope", "--scenario", "happy_path", "--out", "out"],
    "unreachable-db": [
        *("run", "--engine", "python", "--scenario", "happy_path", "--out", "out"),
        *("--db-url", UNREACHABLE_DB),
    ],
    "show-nothing": ["show", "--engine", "python", "--out", "empty"],
    "few-trips": [*RUN, "--out", "out", "--trips", "10"],
    "out-under-a-file": [*RUN, "--out", "blocker/out"],
    "read-only-out": [*RUN, "--out", "read-only"],
    # Folders root may not make either, though os.access says it may.
    "out-in-proc": [*RUN, "--out", "/proc/nope"],
    "out-in-sys": [*RUN, "--out", "/sys/nope"],
    # Creatable, but the PostgreSQL server's unix socket under it would pass 107 bytes.
    "socket-too-long": [*RUN, "--db", "postgres", "--out", "long/" + "d" * 90],
    "no-driver": [*RUN, "--out", "out", "--db-url", "postgresql+pg8000://me@localhost/trips"],
    "postgres-refused": [*RUN, "--out", "out", "--db-url", "postgresql://me:secret@127.0.0.1:1/db"],
    "not-a-url": [*RUN, "--out", "out", "--db-url", "trips.db"],
}


def make_read_only(folder: Path, read_only: bool = True) -> None:
    """A folder nobody can write in, root included (root ignores mode bits: chattr +i)."""
    if read_only:
        folder.chmod(0o555)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if read_only else "-i", str(folder)], check=True)
    if not read_only:
        folder.chmod(0o755)


CLI = ("-m", "shared_pipeline")


def command(*args: str) -> list[str]:
    return [sys.executable, *CLI, *args]


# A wide terminal, so rich does not fold scenario ids across table lines.
ENV = {**os.environ, "COLUMNS": "250"}


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120
    )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return python(*CLI, *args, cwd=cwd)


Quick = tuple[Path, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Quick]:
    """Each QUICK invocation in its own fresh working directory, all running at once."""
    started = {}
    read_only = []
    for name, args in QUICK.items():
        cwd = tmp_path_factory.mktemp(name)
        if name == "show-nothing":
            (cwd / "empty").mkdir()
        if name == "out-under-a-file":
            (cwd / "blocker").write_text("a file where the output folder would go")
        if name == "read-only-out":
            (cwd / "read-only").mkdir()
            make_read_only(cwd / "read-only")
            read_only.append(cwd / "read-only")
        process = subprocess.Popen(
            command(*args),
            cwd=cwd,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[name] = (cwd, process)
    finished = {}
    try:
        for name, (cwd, process) in started.items():
            stdout, stderr = process.communicate(timeout=120)
            finished[name] = (
                cwd,
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
            )
    finally:
        for _, process in started.values():
            if process.poll() is None:  # only after a timeout: do not leave it running
                process.kill()
                process.communicate()
        for folder in read_only:
            make_read_only(folder, False)  # pytest must be able to remove its temp folders
    return finished


def everything_under(path: Path) -> list[Path]:
    return sorted(p.relative_to(path) for p in path.rglob("*"))


def assert_one_line_error(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in mentions:
        assert text in lines[0]


def test_help_names_the_commands(quick_runs: dict[str, Quick]) -> None:
    cwd, result = quick_runs["help"]

    assert result.returncode == 0, result.stderr
    for name in ("list-scenarios", "run", "show"):
        assert name in result.stdout
    assert everything_under(cwd) == []


def test_list_scenarios_lists_every_scenario_id(quick_runs: dict[str, Quick]) -> None:
    cwd, result = quick_runs["list"]

    assert result.returncode == 0, result.stderr
    first_cells = {line.split("│")[1].strip() for line in result.stdout.splitlines() if "│" in line}
    assert {scenario.id for scenario in CATALOGUE} <= first_cells
    assert everything_under(cwd) == []


@pytest.mark.parametrize(
    ("name", "mentions"),
    [
        ("unknown-scenario", ["'nope'", "happy_path"]),
        ("unknown-engine", ["'nope'", "python"]),
        ("unreachable-db", ["cannot reach database", "/nonexistent/dir/x.db"]),
        ("few-trips", ["--trips 10", "at least 1000"]),
        ("out-under-a-file", ["--out blocker/out", "is not a directory"]),
        ("read-only-out", ["--out read-only", "cannot write", "read-only here"]),
        ("out-in-proc", ["--out /proc/nope", "cannot write", "/proc refuses it"]),
        ("out-in-sys", ["--out /sys/nope", "cannot write", "/sys"]),
        ("socket-too-long", ["--out long/ddd", "too long for a unix socket", "at most 107"]),
        ("no-driver", ["no driver", "'pg8000' is not installed", "postgresql+psycopg"]),
        ("postgres-refused", ["cannot reach database", "127.0.0.1", "refused", "me:***@"]),
        ("not-a-url", ["'trips.db' is not a database URL"]),
    ],
)
def test_run_refuses_bad_arguments_in_one_line_and_writes_nothing(
    quick_runs: dict[str, Quick], name: str, mentions: list[str]
) -> None:
    cwd, result = quick_runs[name]

    assert_one_line_error(result, *mentions)
    assert "secret" not in result.stderr
    assert not (cwd / "out").exists()
    assert everything_under(cwd) in (
        [],
        [Path("blocker")],
        [Path("read-only")],
    )
    assert not Path("/nonexistent").exists()
    assert not Path("/proc/nope").exists() and not Path("/sys/nope").exists()


@pytest.mark.parametrize("name", ["unknown-scenario", "few-trips", "out-in-proc", "not-a-url"])
def test_bad_arguments_are_refused_before_the_pipeline_is_imported(
    tmp_path: Path, name: str
) -> None:
    # pandas, scikit-learn and MLflow take over a second to import: an error needs none of them.
    check = (
        "import sys; from shared_pipeline.cli import main; code = main(sys.argv[1:]); "
        "print(*sorted(m for m in ('pandas', 'sklearn', 'mlflow') if m in sys.modules)); "
        "sys.exit(code)"
    )
    result = python("-c", check, *QUICK[name], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == ""


def test_show_without_records_is_an_error(quick_runs: dict[str, Quick]) -> None:
    cwd, result = quick_runs["show-nothing"]

    assert_one_line_error(result, "no records", "python")
    assert everything_under(cwd) == [Path("empty")]


@pytest.mark.timeout(180)
def test_run_happy_path_writes_a_conforming_record_that_show_reads(tmp_path: Path) -> None:
    run = cli(
        "run",
        *("--engine", "python", "--scenario", "happy_path", "--out", "tmp", "--trips", "2000"),
        cwd=tmp_path,
    )

    assert run.returncode == 0, run.stderr
    record = read_record(tmp_path / "tmp" / "results" / "python" / "happy_path.json")
    assert (record.engine, record.scenario) == ("python", "happy_path")
    run_dir = tmp_path / "tmp" / record.run_dir
    assert run_dir.parent == tmp_path / "tmp" / "runs" / "python"
    assert run_dir.name.startswith("happy_path") and (run_dir / "context.json").is_file()
    (flow_run,) = record.runs
    assert flow_run.outcome is FlowOutcome.COMPLETED
    assert flow_run.registry_effect is RegistryEffect.PROMOTED
    assert check_record(record) == []

    show = cli("show", "--engine", "python", "--out", "tmp", cwd=tmp_path)

    assert show.returncode == 0, show.stderr
    rows = [line.split("│") for line in show.stdout.splitlines() if "│" in line]
    assert [cells[1].strip() for cells in rows] == ["happy_path"]
    assert "promoted" in rows[0][6]


def test_an_engine_not_installed_here_is_a_one_line_error(tmp_path: Path) -> None:
    # From the checkout, where the DAGs folder `airflow/` sits on sys.path[0] (the current
    # directory) without being a package: it must not pass for an installed Airflow.
    repo = Path(__file__).resolve().parents[1]
    assert not (repo / "airflow" / "__init__.py").exists()
    out = tmp_path / "out"
    result = subprocess.run(
        command("run", "--engine", "airflow", "--scenario", "happy_path", "--out", str(out)),
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert_one_line_error(result, "'airflow' is not installed here", "nox session")
    assert list(out.rglob("*")) == []  # --out may have been created, nothing written in it
