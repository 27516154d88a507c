"""Prefect-only checks (run inside the prefect2 nox session, for the installed major).

The API server is stopped when a failed run ends its process, nothing is written outside the output
directory, and the state mapping refuses state names it does not know.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from process_support import wait_gone

from prefect2.adapter import flow_outcome, task_state
from shared_pipeline.timeouts import record_verdicts
from shared_pipeline.vocabulary import FlowOutcome, StepState

# Runs one failing scenario, prints the API server's pid, then fails itself.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from prefect2.compat import MAJOR
    from shared_pipeline.cli import load_adapter
    from shared_pipeline.harness import run_scenario
    from shared_pipeline.scenarios import get_scenario
    from shared_pipeline.settings import Settings

    out = Path(sys.argv[1])
    adapter = load_adapter(f"prefect{MAJOR}", out)
    record = run_scenario(adapter, get_scenario("db_down"), out,
                          base_settings=Settings(trips_per_month=2000))
    print("PID", adapter.server.pid, record.runs[0].native_state, flush=True)
    raise RuntimeError("the test harness itself fails after a failed run")
    """
)


def _run(tmp_path: Path, cache: Path) -> tuple[subprocess.Popen[str], int | None, str]:
    home = tmp_path / "home"
    home.mkdir()
    if cache.exists():
        # The session's templates (source data, migrated Prefect database) save ~10 s here.
        shutil.copytree(cache, tmp_path / "out" / "runs" / ".cache")
    env = {**os.environ, "HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("PID"), line
    _, pid, state = line.split()
    return process, None if pid == "None" else int(pid), state


@pytest.mark.own_process
@pytest.mark.timeout(240)
def test_no_server_outlives_a_failed_run(
    tmp_path: Path, pipeline_out: Path, engine_name: str
) -> None:
    process, pid, state = _run(tmp_path, pipeline_out / "runs" / ".cache")
    process.wait(timeout=60)

    assert state == "Failed"
    assert process.returncode != 0
    if engine_name == "prefect2":
        # 2.x serves its API in-process: there is no server process at all.
        assert pid is None
    else:
        assert pid is not None
        assert wait_gone(pid), f"Prefect server {pid} outlived its parent"
    # Nothing written to HOME or the current directory: all under the output directory.
    assert list((tmp_path / "home").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]


def test_state_mapping_is_explicit() -> None:
    assert task_state("Completed", 1) is StepState.COMPLETED
    assert task_state("Completed", 3) is StepState.COMPLETED_AFTER_RETRY
    assert task_state("TimedOut", 1) is StepState.TIMED_OUT
    assert task_state("NotReady", 0) is StepState.NOT_RUN_UPSTREAM_FAILED
    assert flow_outcome("COMPLETED", "Degraded") is FlowOutcome.DEGRADED
    assert flow_outcome("CRASHED", "Crashed") is FlowOutcome.FAILED
    with pytest.raises(ValueError, match="Running"):
        task_state("Running", 1)


# What Prefect itself recorded in the conformance runs, per major (documented behaviour).


def test_retries_are_recorded_as_prefect_retry_states(scenario_run) -> None:
    run = scenario_run("db_maintenance").runs[0]
    for month in ("2024-02", "2024-03"):
        extract = run.task(f"extract[{month}]")
        assert extract is not None and extract.attempts == 3
        # A nonzero retry_delay_seconds parks the run in AwaitingRetry before each Retrying.
        assert [s.name for s in extract.native_history] == [
            "Pending",
            "Running",
            "AwaitingRetry",
            "Retrying",
            "AwaitingRetry",
            "Retrying",
            "Completed",
        ]


def test_timeout_interrupts_the_hanging_training(scenario_run) -> None:
    run = scenario_run("train_hangs").runs[0]
    trains = [t for t in run.tasks if t.step == "train"]
    assert {t.native_state for t in trains} == {"TimedOut"}
    attempts = [a for a in run.attempt_log if a.step == "train"]
    assert len(attempts) == 3
    # Interrupted inside the loop, not left to run to the fault's cap ("hang_cap_reached").
    assert {a.outcome for a in attempts} == {"failed"}


def test_a_timeout_in_a_mapped_task_only_labels_a_blocked_call_late(scenario_run) -> None:
    record = scenario_run("train_blocks")
    run = record.runs[0]
    assert {t.native_state for t in run.tasks if t.step == "train"} == {"TimedOut"}
    attempts = [a for a in run.attempt_log if a.step == "train"]
    # Prefect's CancelledError reached each thread only once the read had given up by itself.
    assert {(a.outcome, a.error) for a in attempts} == {("hang_cap_reached", "CancelledError: ")}
    (verdicts,) = record_verdicts(record)
    assert [v.interrupted for v in verdicts] == [False, False, False]
    assert all(v.label.startswith("labelled late by ") for v in verdicts)


def test_a_handled_failure_ends_in_a_custom_degraded_state(scenario_run, engine_name) -> None:
    run = scenario_run("api_down").runs[0]
    assert run.native_state == "Degraded"
    enrich = run.task("enrich")
    assert enrich is not None and enrich.attempts == 3
    # The last attempt met a hanging API; 3.x calls the client's TimeoutError a timeout.
    assert enrich.native_state == {"prefect2": "Failed", "prefect3": "TimedOut"}[engine_name]


def test_a_resumed_run_reuses_results_by_cache_key(scenario_run, engine_name) -> None:
    first, second = scenario_run("resume_after_fix").runs
    cached = [t for t in second.tasks if t.native_state == "Cached"]
    assert sorted(t.task for t in cached) == sorted(
        t.task for t in first.tasks if t.step in {"extract", "read", "enrich", "features"}
    )
    for task in cached:
        if engine_name == "prefect2":
            # 2.x renders task_run_name only for runs that start running: a cached run keeps
            # its default name, linked to the run it reuses by the shared cache key.
            assert task.native_id is not None and f"(reuses {task.task})" in task.native_id
        else:
            assert task.native_id == task.task
