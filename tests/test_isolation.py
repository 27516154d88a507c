"""A scenario run writes only its run directory and its results file: not HOME, not the current
directory, not the temp directory, not the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_pipeline.conformance import check_record
from shared_pipeline.records import read_record

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("happy_path", "resume_after_fix")

# The control (engine "python") through two scenarios, the second one with two flow runs.
RUN_SCENARIOS = """
import sys
from shared_pipeline.cli import main

out, scenarios = sys.argv[1], sys.argv[2:]
args = ["run", "--engine", "python", "--out", out, "--trips", "2000", "--scenario"]
sys.exit(max(main([*args, scenario]) for scenario in scenarios))
"""

RepoState = dict[str, tuple[str, int | None, int | None]]


def repo_state() -> RepoState:
    """Every untracked, ignored or modified path in the checkout, with its mtime and size."""
    listing = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--no-renames"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    state: RepoState = {}
    for line in listing.splitlines():
        status, path = line[:2], line[3:]
        if "__pycache__" in path:  # bytecode the interpreter may write next to imported modules
            continue
        if Path(path).parts[0] in ("runs", "results"):
            # The nox sessions' own output (PIPELINE_OUT is the checkout): the other test worker
            # writes its runs and records there at any time. The run under test has an output
            # folder of its own, which the test checks.
            continue
        try:
            stat = (REPO / path).stat()
        except OSError:
            state[path] = (status, None, None)
        else:
            state[path] = (status, stat.st_mtime_ns, stat.st_size)
    return state


def user_environment(home: Path, tmp: Path) -> dict[str, str]:
    """The environment of a user whose HOME and TMPDIR are the given empty directories.

    Per-user locations are left to default to HOME. A user's shell has none of the test run's
    own variables: PYTEST_* (MLflow, for one, behaves differently when it sees
    PYTEST_CURRENT_TEST), nor the nox sessions' PIPELINE_* (PIPELINE_OUT is the checkout).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("XDG_", "PYTEST_", "PIPELINE_"))
    }
    return env | {"HOME": str(home), "TMPDIR": str(tmp)}


@pytest.mark.own_process
@pytest.mark.timeout(300)
def test_a_scenario_run_writes_only_under_its_run_dir_and_results(tmp_path: Path) -> None:
    home, cwd, tmp, out = (tmp_path / name for name in ("home", "cwd", "tmp", "out"))
    for folder in (home, cwd, tmp):
        folder.mkdir()
    repo_before = repo_state()

    result = subprocess.run(
        [sys.executable, "-c", RUN_SCENARIOS, str(out), *SCENARIOS],
        cwd=cwd,
        env=user_environment(home, tmp),
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert list(home.rglob("*")) == [], "the run wrote into HOME"
    assert list(cwd.rglob("*")) == [], "the run wrote into the current directory"
    assert list(tmp.rglob("*")) == [], "the run left files in the temp directory"
    records = [read_record(out / "results" / "python" / f"{s}.json") for s in SCENARIOS]
    run_dirs = [out / record.run_dir for record in records]
    for scenario, record, run_dir in zip(SCENARIOS, records, run_dirs, strict=True):
        assert run_dir.parent == out / "runs" / "python"
        assert run_dir.name.startswith(scenario)
        assert check_record(record) == []
    allowed = [
        *(run_dir.relative_to(out) for run_dir in run_dirs),
        Path("runs", ".cache"),
        Path("results", "python"),
    ]
    files = [p.relative_to(out) for p in out.rglob("*") if not p.is_dir()]
    assert files
    assert [f for f in files if not any(f.is_relative_to(a) for a in allowed)] == []
    assert sorted(f for f in files if f.is_relative_to("results")) == [
        Path("results", "python", f"{scenario}.json") for scenario in sorted(SCENARIOS)
    ]

    repo_after = repo_state()
    changed = {
        path: (repo_before.get(path), repo_after.get(path))
        for path in repo_before.keys() | repo_after.keys()
        if repo_before.get(path) != repo_after.get(path)
    }
    assert changed == {}, "the run wrote into the repository"
