"""Prefect-1-only checks (run inside the prefect1 nox session, for its executor).

Asserted on the records the conformance suite made (one run, two uses), plus: no Dask process
outlives a failed run, nothing is written outside the output directory, and the state mapping
refuses state names it does not know.
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

from prefect1.adapter import FLOW_STATES, TASK_STATES, flow_outcome, task_state
from shared_pipeline.timeouts import record_verdicts
from shared_pipeline.vocabulary import FlowOutcome, StepState

# Runs one failing scenario, prints the Dask worker pids, then fails itself.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from shared_pipeline.cli import load_adapter
    from shared_pipeline.harness import run_scenario
    from shared_pipeline.scenarios import get_scenario
    from shared_pipeline.settings import Settings

    out, engine = Path(sys.argv[1]), sys.argv[2]
    adapter = load_adapter(engine, out)
    record = run_scenario(adapter, get_scenario("db_down"), out,
                          base_settings=Settings(trips_per_month=2000))
    pids = getattr(adapter, "worker_pids", [])
    print("PIDS", ",".join(map(str, pids)) or "-", record.runs[0].native_state, flush=True)
    raise RuntimeError("the test harness itself fails after a failed run")
    """
)


@pytest.mark.own_process
@pytest.mark.timeout(240)
def test_no_dask_process_outlives_a_failed_run(
    tmp_path: Path, pipeline_out: Path, engine_name: str
) -> None:
    home, tmp, out = tmp_path / "home", tmp_path / "tmp", tmp_path / "out"
    home.mkdir()
    tmp.mkdir()
    cache = pipeline_out / "runs" / ".cache"
    if cache.exists():
        shutil.copytree(cache, out / "runs" / ".cache")  # the session's data/MLflow templates
    process = subprocess.Popen(  # a process of its own, so its exit and children are its own
        [sys.executable, "-c", SCRIPT, str(out), engine_name],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(home), "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stdout, _ = process.communicate(timeout=180)  # Prefect 1 logs task errors to stdout

    line = next((line for line in stdout.splitlines() if line.startswith("PIDS")), "")
    _, pids, state = line.split()
    assert state == "Failed"
    assert process.returncode != 0
    if engine_name == "prefect1":
        assert pids == "-"  # the local executor starts no process
    else:
        workers = [int(pid) for pid in pids.split(",")]
        assert len(workers) == 2
        assert [pid for pid in workers if not wait_gone(pid)] == [], "Dask workers outlived"
    # Nothing written to HOME, the temp directory (Dask's scratch space defaults there) or the
    # current directory: all under the output directory.
    assert list(home.rglob("*")) == []
    assert list(tmp.rglob("*")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out", "tmp"]
    assert sorted(p.name for p in out.iterdir()) == ["results", "runs"]


def test_importing_the_wiring_writes_nothing(tmp_path: Path) -> None:
    """`import prefect` writes nothing; neither may our flows module (its LocalResult)."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    subprocess.run(
        [sys.executable, "-c", "import prefect1.flows"],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(home), "TMPDIR": str(tmp)},
        check=True,
        capture_output=True,
    )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [
        Path("home"),
        Path("tmp"),
    ]


def test_state_mapping_is_explicit(adapter) -> None:  # the adapter configures Prefect first
    assert task_state("Success", 1) is StepState.COMPLETED
    assert task_state("Success", 3) is StepState.COMPLETED_AFTER_RETRY
    assert task_state("TriggerFailed", 0) is StepState.NOT_RUN_UPSTREAM_FAILED
    assert task_state("TimedOut", 1) is StepState.TIMED_OUT
    assert task_state("Cached", 0) is StepState.CACHED
    assert flow_outcome("Degraded") is FlowOutcome.DEGRADED
    for unfinished in ("Running", "Pending", "Retrying", "Looped", "Scheduled"):
        with pytest.raises(ValueError, match=unfinished):
            task_state(unfinished, 1)
    with pytest.raises(ValueError, match="TimedOut"):
        flow_outcome("TimedOut")
    # Every name in the tables is a real Prefect 1 state class (or our Degraded).
    from prefect.engine import state as prefect_states

    from prefect1.flows import Degraded

    for name in TASK_STATES | FLOW_STATES:
        cls = Degraded if name == "Degraded" else getattr(prefect_states, name)
        assert issubclass(cls, prefect_states.State)


# What Prefect 1 itself reported in the conformance runs.


def test_downstream_of_the_dead_database_is_trigger_failed(scenario_run) -> None:
    run = scenario_run("db_down").runs[0]
    assert run.native_state == "Failed"
    for task in ("read[2024-02]", "features", "plan_candidates", "evaluate", "register"):
        record = run.task(task)
        assert record is not None and record.native_state == "TriggerFailed", task
    # The mapped parent fails before its trigger is checked, and so never has children.
    train = run.task("train")
    assert train is not None and train.native_state == "Failed"
    assert train.native_history[-1].message == "No upstream states can be mapped over."
    assert all(t.native_state is None for t in run.tasks if t.task.startswith("train["))


def test_retries_are_recorded_as_prefect_retry_states(scenario_run) -> None:
    run = scenario_run("db_maintenance").runs[0]
    for month in ("2024-02", "2024-03"):
        extract = run.task(f"extract[{month}]")
        assert extract is not None and extract.attempts == 3
        assert [s.name for s in extract.native_history] == [
            "Pending",
            "Running",
            "Failed",
            "Retrying",
            "Running",
            "Failed",
            "Retrying",
            "Running",
            "Success",
        ]


@pytest.mark.parametrize("scenario_id", ["train_hangs", "train_blocks"])
def test_timeout_marks_training_timed_out_and_the_log_says_if_it_stopped(
    scenario_run, engine_name, scenario_id
) -> None:
    record = scenario_run(scenario_id)
    (run,) = record.runs
    trains = [t for t in run.tasks if t.task.startswith("train[")]
    assert {t.native_state for t in trains} == {"TimedOut"}
    attempts = [a for a in run.attempt_log if a.step == "train"]
    assert len(attempts) == 3
    (verdicts,) = record_verdicts(record)
    if engine_name == "prefect1":
        # SIGALRM on the main thread stops the body: between two sleeps, and inside recv() too.
        assert {a.outcome for a in attempts} == {"failed"}
        assert all((a.error or "").startswith("TaskTimeoutSignal") for a in attempts)
        assert [v.label for v in verdicts] == ["interrupted"] * 3
    else:
        # A daemonic Dask worker gets a soft timeout: TimedOut, while the body ran on to the cap.
        # (How soon after the budget it is declared depends on how busy the cluster is: beside
        # a busy core and another session it came 0.8 s late.)
        assert {a.outcome for a in attempts} == {"hang_cap_reached"}
        for verdict in verdicts:
            assert not verdict.interrupted
            assert verdict.declared_s is not None and verdict.declared_s < verdict.work_s


def test_a_handled_failure_ends_in_a_custom_degraded_state(scenario_run) -> None:
    run = scenario_run("api_down").runs[0]
    assert run.native_state == "Degraded"
    enrich = run.task("enrich")
    assert enrich is not None and enrich.attempts == 3 and enrich.native_state == "Failed"
    fallback = run.task("optional_enrichment")
    assert fallback is not None and fallback.native_state == "Success"


def test_the_failing_branch_is_filtered_out_and_the_join_runs(scenario_run) -> None:
    run = scenario_run("fanout_partial").runs[0]
    train = run.task("train")
    assert train is not None and train.native_state == "Mapped"
    children = {t.task: t for t in run.tasks if t.task.startswith("train[")}
    assert {k: t.native_id for k, t in children.items()} == {
        "train[linear]": "train[0]",
        "train[ridge]": "train[1]",
        "train[ridge_heavy]": "train[2]",
    }
    assert children["train[ridge_heavy]"].native_state == "Failed"
    keep = run.task("keep_trained")
    assert keep is not None and keep.native_state == "Success"


def test_a_resumed_run_reports_checkpointed_tasks_cached(scenario_run) -> None:
    first, second = scenario_run("resume_after_fix").runs
    cached = sorted(t.task for t in second.tasks if t.native_state == "Cached")
    assert cached == sorted(
        t.task for t in first.tasks if t.step in {"extract", "read", "enrich", "features"}
    )
    for task in cached:
        record = second.task(task)
        assert record is not None and record.attempts == 0
        assert [s.name for s in record.native_history] == ["Pending", "Cached"]


def test_the_retrain_loop_is_one_task_with_looped_iterations(scenario_run) -> None:
    run = scenario_run("retrain_until_good").runs[0]
    loop = run.task("train_until_good")
    assert loop is not None and loop.native_state == "Success" and loop.attempts == 1
    looped = [s for s in loop.native_history if s.name == "Looped"]
    rounds = sorted({a.key for a in run.attempt_log if a.step == "train"})
    assert len(looped) == len(rounds) - 1 >= 1  # the last round ends in Success, not Looped
    assert not any(t.task.startswith(("train[", "evaluate[")) for t in run.tasks)


def test_records_carry_the_declared_graph(scenario_run) -> None:
    run = scenario_run("happy_path").runs[0]
    assert run.graph_kind == "declared"
    edges = {(e.upstream, e.downstream) for e in run.graph}
    assert ("enrich", "optional_enrichment") in edges
    assert ("optional_enrichment", "features") in edges
    assert ("plan_candidates", "train") in edges
    assert ("train", "keep_trained") in edges
    assert ("case(True)", "register") in edges
    assert ("run_dir", "extract[2024-02]") in edges


def test_tasks_ran_where_the_executor_puts_them(scenario_run, engine_name) -> None:
    record = scenario_run("happy_path")
    pids = {entry.pid for entry in record.runs[0].attempt_log}
    if engine_name == "prefect1":
        # The local executor runs every task in the process that called flow.run().
        assert pids == {record.runner_pid}
    else:
        # Dask ran them in its worker processes (state handlers too: they wrote to files).
        assert pids and record.runner_pid not in pids and len(pids) <= 2
