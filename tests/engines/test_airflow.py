"""Airflow-only checks (run inside the airflow nox session), asserted on the conformance runs' own
records: native task-instance states, try numbers, map indexes, the cleared-and-resumed DAG run.
Plus: a run writes nothing outside its output directory and leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_isolation import repo_state, user_environment

from shared_pipeline.cli import engine_module
from shared_pipeline.records import FlowRunRecord
from shared_pipeline.scenarios import CANDIDATES, TRAIN, VALID, train_tasks
from shared_pipeline.settings import Settings
from shared_pipeline.vocabulary import FlowOutcome, StepState

adapter_module = engine_module("airflow")


def _by_task(run: FlowRunRecord) -> dict[str, object]:
    return {t.task: t for t in run.tasks}


def test_state_mapping_is_explicit() -> None:
    task_state, flow_outcome = adapter_module.task_state, adapter_module.flow_outcome
    assert task_state("success", 1) is StepState.COMPLETED
    assert task_state("success", 3) is StepState.COMPLETED_AFTER_RETRY
    assert task_state("success", 0) is StepState.CACHED  # kept from before a resume
    assert task_state("upstream_failed", 0) is StepState.NOT_RUN_UPSTREAM_FAILED
    assert task_state("skipped", 0) is StepState.SKIPPED
    assert flow_outcome("failed") is FlowOutcome.FAILED
    for unfinished in ("running", "up_for_retry", "queued"):
        with pytest.raises(ValueError, match=unfinished):
            task_state(unfinished, 1)
    with pytest.raises(ValueError, match="running"):
        flow_outcome("running")


def test_retries_are_try_numbers(scenario_run) -> None:
    run = scenario_run("db_maintenance").runs[0]
    for month in (TRAIN, VALID):
        extract = run.task(f"extract[{month}]")
        assert extract is not None and extract.native_id == f"{month}.extract"
        assert extract.attempts == 3
        # Earlier tries live in task_instance_history, archived with the state the try ended in.
        assert [(s.name, s.message) for s in extract.native_history] == [
            ("failed", "try 1"),
            ("failed", "try 2"),
            ("success", "try 3"),
        ]


def test_dead_database_leaves_upstream_failed(scenario_run) -> None:
    run = scenario_run("db_down").runs[0]
    tasks = _by_task(run)
    assert run.native_state == "failed"
    retries = Settings().extract_retries
    assert tasks[f"extract[{TRAIN}]"].native_state == "failed"
    assert tasks[f"extract[{TRAIN}]"].attempts == retries + 1
    for task in (f"read[{TRAIN}]", "features", "candidates", "evaluate", "gate", "register"):
        assert tasks[task].native_state == "upstream_failed", task
        assert tasks[task].attempts == 0
    # The mapped task was never expanded: one placeholder instance, no instance per candidate.
    assert tasks["train"].native_id == "train"
    assert tasks["train"].native_state == "upstream_failed"
    assert all(tasks[t].native_state is None for t in train_tasks(*CANDIDATES))


def test_failed_mapped_instance_beside_its_siblings(scenario_run) -> None:
    run = scenario_run("fanout_partial").runs[0]
    trains = sorted((t for t in run.tasks if t.step == "train"), key=lambda t: t.native_id)
    assert [(t.native_id, t.task, t.native_state) for t in trains] == [
        ("train map_index=0", "train[linear]", "success"),
        ("train map_index=1", "train[ridge]", "success"),
        ("train map_index=2", "train[ridge_heavy]", "failed"),
    ]
    # The join ran on the two that trained, and the run succeeded on purpose (its leaf did).
    assert run.task("trained_models").native_state == "success"
    assert run.task("register").native_state == "success"
    assert run.native_state == "success"


def test_resume_clears_and_reruns_only_what_failed(scenario_run) -> None:
    first, second = scenario_run("resume_after_fix").runs
    # One DAG run, resumed: the same run id before and after the fix.
    assert first.native_state == "failed" and second.native_state == "success"
    assert first.native_message == second.native_message
    rerun = {"trained_models", "evaluate", "gate", "register", *train_tasks(*CANDIDATES)}
    for task in second.tasks:
        history = [s.name for s in task.native_history]
        if task.task in rerun:
            assert task.attempts == 1, task.task
            before = first.task(task.task).native_state
            assert history == [before, "success"] if before == "failed" else ["success"]
        else:
            # Kept its success (and XCom) from before the fix: no new try.
            assert (task.native_state, task.attempts, history) == ("success", 0, ["success"])
            assert task.state is StepState.CACHED
    assert {entry.step for entry in second.attempt_log} == {"train", "evaluate", "gate", "register"}


@pytest.mark.parametrize("scenario", ["train_hangs", "train_blocks"])
def test_execution_timeout_interrupts_the_hanging_training(scenario_run, scenario: str) -> None:
    # SIGALRM in the task's process: it gets in between Python statements and into a blocked
    # recv() alike (the system call returns EINTR and the handler raises).
    run = scenario_run(scenario).runs[0]
    trains = [t for t in run.tasks if t.step == "train"]
    assert {t.native_state for t in trains} == {"failed"}
    attempts = [a for a in run.attempt_log if a.step == "train"]
    assert len(attempts) == len(CANDIDATES)
    # Stopped by the timeout, not left to run to the fault's own cap ("hang_cap_reached").
    assert {a.outcome for a in attempts} == {"failed"}
    assert all(a.error.startswith("AirflowTaskTimeout") for a in attempts)
    failed = [n for n in run.notifications if n.event == "task_failed"]
    assert all(n.message.startswith("AirflowTaskTimeout") for n in failed)


def test_retrain_loop_is_declared_up_front(scenario_run) -> None:
    run = scenario_run("retrain_until_good").runs[0]
    max_rounds = Settings().retrain_max_rounds
    assert run.graph_kind == "declared"
    declared = {edge.upstream for edge in run.graph} | {edge.downstream for edge in run.graph}
    assert {f"round-{n}.train" for n in range(1, max_rounds + 1)} <= declared
    ran = [t for t in run.tasks if t.step == "train" and t.native_state == "success"]
    skipped = [t for t in run.tasks if t.step == "train" and t.native_state == "skipped"]
    assert len(ran) + len(skipped) == max_rounds and ran and skipped
    # Each check feeds every later round, so the first "stop" skips them all at once.
    edges = {(e.upstream, e.downstream) for e in run.graph}
    assert ("round-1.keep_going", f"round-{max_rounds}.train") in edges


def test_graph_is_the_declared_dag(scenario_run) -> None:
    edges = {(e.upstream, e.downstream) for e in scenario_run("happy_path").runs[0].graph}
    assert {
        (f"{TRAIN}.extract", f"{TRAIN}.read"),
        ("enrich", "enrichment_or_none"),
        ("enrichment_or_none", "features"),
        ("candidates", "train"),
        ("train", "trained_models"),
        ("gate", "register"),
    } <= edges


# A failing scenario in a child process of its own session, as a user would run it.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from shared_pipeline.cli import load_adapter
    from shared_pipeline.harness import run_scenario
    from shared_pipeline.scenarios import get_scenario
    from shared_pipeline.settings import Settings

    out = Path(sys.argv[1])
    adapter = load_adapter("airflow", out)
    try:
        record = run_scenario(adapter, get_scenario("db_down"), out,
                              base_settings=Settings(trips_per_month=2000))
    finally:
        adapter.close()
    print(record.runs[0].native_state, flush=True)
    """
)


@pytest.mark.own_process
@pytest.mark.timeout(300)
def test_a_run_writes_only_its_output_dir_and_leaves_no_process(
    tmp_path: Path, pipeline_out: Path
) -> None:
    home, cwd, tmp, out = (tmp_path / name for name in ("home", "cwd", "tmp", "out"))
    for folder in (home, cwd, tmp):
        folder.mkdir()
    cache = pipeline_out / "runs" / ".cache"
    if cache.exists():
        # The session's source-data and MLflow templates save seconds here; the Airflow metadata
        # database is migrated afresh, because that runs the `airflow` CLI, which is what writes
        # ~/airflow when AIRFLOW_HOME is not set.
        shutil.copytree(cache, out / "runs" / ".cache", ignore=shutil.ignore_patterns("airflow-*"))
    repo_before = repo_state()

    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(out)],
        cwd=cwd,
        # A user's shell: no AIRFLOW_* settings (this session's adapter exported its own).
        env={k: v for k, v in user_environment(home, tmp).items() if not k.startswith("AIRFLOW")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: whatever it started is in it
    )
    stdout, stderr = process.communicate(timeout=240)

    assert process.returncode == 0, stdout + stderr
    assert stdout.split()[-1] == "failed"
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # signal 0: does any process of the group remain?
    assert not (home / "airflow").exists(), "Airflow created ~/airflow"
    assert list(home.rglob("*")) == [], "the run wrote into HOME"
    assert list(cwd.rglob("*")) == [], "the run wrote into the current directory"
    assert list(tmp.rglob("*")) == [], "the run left files in the temp directory"
    written = {p.relative_to(out).parts[:2] for p in out.rglob("*") if not p.is_dir()}
    assert written <= {("runs", ".cache"), ("runs", "airflow"), ("results", "airflow")}
    homes = list((out / "runs" / "airflow" / ".airflow-home").glob("*/airflow.db"))
    assert len(homes) == 1, homes  # the home of the one process that ran
    assert repo_state() == repo_before, "the run wrote into the repository"


def test_import_airflow_is_the_installed_airflow_even_from_the_checkout() -> None:
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", "import airflow.sdk, sys; print(sys.modules['airflow'].__file__)"],
        cwd=repo,  # the DAGs folder `airflow/` is right here, on sys.path[0]
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert Path(result.stdout.strip()).parent.parent.name == "site-packages"
