"""Checks of an engine as deployed (its servers, workers, schedulers), run in the `deployed` nox
session: none of their processes outlives the run that started them, also when it is
interrupted midway (Ctrl-C), and none writes outside the output directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from process_support import interrupted_midway, processes_mentioning, wait_gone, wait_gone_all

from shared_pipeline.faults import read_attempt_log
from shared_pipeline.headroom import over


def _wait_for_attempt(
    process: subprocess.Popen[bytes], out: Path, engine: str, step: str, limit_s: float
) -> None:
    """Until the scenario's flow run has begun `step` (the steps' own attempt log says so)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before {step}")
        for run_dir in (out / "runs" / engine).glob("train_hangs-*"):
            if (run_dir / "attempts.db").exists() and any(
                entry["step"] == step for entry in read_attempt_log(run_dir)
            ):
                return
        time.sleep(0.2)
    raise AssertionError(f"the flow run never began {step} within {limit_s:.0f} s")


def test_an_interrupted_run_leaves_no_service_behind(
    tmp_path: Path, pipeline_out: Path, engine_name: str
) -> None:
    out, home = tmp_path / "out", tmp_path / "home"
    home.mkdir()
    cache = pipeline_out / "runs" / ".cache"
    if cache.exists():  # the session's templates (source data, migrated databases)
        shutil.copytree(cache, out / "runs" / ".cache")
    # Services up (about 20 s beside a busy core), the flow run's process started, and its first
    # task running (in a process of its own on Airflow) when Ctrl-C comes.
    process, _, text = interrupted_midway(
        [sys.executable, "-m", "shared_pipeline", "run", "--engine", engine_name]
        + ["--scenario", "train_hangs", "--out", str(out)],
        tmp_path,
        {**os.environ, "HOME": str(home), "COLUMNS": "200"},
        lambda process: _wait_for_attempt(process, out, engine_name, "extract", over(40)),
        over(10),
    )

    assert process.returncode != 0, f"the run was not interrupted:\n{text[-3000:]}"
    pids = {p: int(p.read_text()) for p in out.rglob(".services/*.pid")}
    assert pids, f"no service was started:\n{text[-3000:]}"
    for path, pid in pids.items():
        assert wait_gone(pid), f"{path.stem} ({pid}) outlived the interrupted run"
    services = next(out.rglob(".services"))
    assert wait_gone_all(services), (
        f"processes of {services} remain: {processes_mentioning(services)}"
    )
    assert list(home.iterdir()) == [], "the run wrote into HOME"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out", "run.log"]


def test_a_failed_run_is_told_once_by_the_engines_own_mechanism(scenario_run) -> None:
    run = scenario_run("db_down").runs[0]

    assert run.outcome.value == "failed"
    assert len(run.engine_notifications) == 1, run.engine_notifications
    told = run.engine_notifications[0]
    # One of the session's services sent it (Prefect's server, Airflow's dag-processor), not the
    # flow's own process.
    assert told.sender in ("server", "dag-processor"), told
    assert "failed" in str(told.payload).lower()
    assert run.notifications, "the flow's own failure hook wrote nothing"
