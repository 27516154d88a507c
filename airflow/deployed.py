"""Airflow 3 as deployed: api-server, scheduler and dag-processor with the LocalExecutor on one
metadata database, the same DAG files, each DAG run triggered and read back through the public
REST API, and a failed run resumed with the REST API's clear (the UI's "Clear").

Loaded by file path, as adapter.py is.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared_pipeline import steps
from shared_pipeline.harness import EngineRun
from shared_pipeline.headroom import over
from shared_pipeline.killer import parent_of
from shared_pipeline.loading import load_module
from shared_pipeline.notifications import wait_for_flow_failed
from shared_pipeline.records import (
    EngineNotification,
    GraphEdge,
    Limitation,
    NativeState,
    TaskRecord,
)
from shared_pipeline.services import Service, free_port
from shared_pipeline.session_services import SessionServices

ADAPTER = load_module("airflow/adapter.py")
HOME = ADAPTER.HOME
# Measured beside a busy core: api-server, scheduler and dag-processor all healthy in about 7 s;
# the DAG files parsed and serialized within about 10 s of that.
START_S = 10.0
PARSE_S = 10.0
SINK = "notification_sink"  # the connection airflow/notifiers.py tells
MECHANISM = "notifier: WebhookNotifier (a BaseNotifier) as the DAG's on_failure_callback"
# A DAG's failure callback ran 1-4 s after its run failed, in a dag-processor child; one that
# comes while that DAG file's processor is busy waits for the file's next parse
# (`min_file_process_interval`, 30 s by default): apache/airflow#13662. With the interval at
# 3600 s such a callback waited 96 s, for the next failure's callback to queue the file.
DAG_CALLBACK_S = 40.0
# The slowest DAG run took 106 s beside a busy core (db_maintenance: its retry delays, and
# every task a process of its own that parses the DAG file first).
DAG_RUN_S = 110.0


# The api-server answers 500 when its SQLite write waits past the busy timeout while the
# scheduler holds the database (seen on POST dagRuns: `INSERT INTO log` locked). The request is
# sent again for 10x SQLite's own 5 s wait for a lock; a 409 to a retried POST says that an
# earlier try was stored after all.
LOCKED_S = 5.0


def _call(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    deadline = time.monotonic() + over(LOCKED_S)
    retried = False
    while True:
        request = urllib.request.Request(
            f"{base}/api/v2{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=over(2)) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code == 409 and retried:
                return None
            if error.code != 500 or time.monotonic() > deadline:
                raise
        retried = True
        time.sleep(0.5)


class DeployedAdapter:
    """`airflow-deployed`: the three services once per session, shared by its processes."""

    name = "airflow-deployed"
    runtime = "deployed: api-server, scheduler and dag-processor, LocalExecutor"
    version = ADAPTER.VERSION
    limitations: list[Limitation] = [
        Limitation(
            feature="schedule",
            reason="a DAG has one DAG run per data interval: two scenarios cannot each backfill "
            "the same months of monthly_training (the second backfill would create no run)",
            workaround="the schedule's scenarios run one after the other, and a backfill first "
            "deletes the DAG runs an earlier scenario left for its months (its record is written)",
            doc=f"{ADAPTER.DOCS}/core-concepts/backfill.html",
        )
    ]
    settings: dict[str, str] = {}  # Airflow settings beyond the defaults

    def __init__(self, out: Path) -> None:
        runs = (out / "runs" / self.name).resolve()
        self.cache = (out / "runs" / ".cache").resolve()
        self.services = SessionServices(runs, MECHANISM)
        self.base = self.services.join(self._start_services)

    def _start_services(self) -> str:
        folder = self.services.folder
        home = folder / "airflow-home"
        home.mkdir()
        (home / "airflow.db").write_bytes(ADAPTER._migrated_database(self.cache).read_bytes())
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            **ADAPTER._airflow_env(home),
            "HOME": str(folder),  # a CLI without AIRFLOW_HOME writes ~/airflow
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Tasks report to the execution API of the api-server, with tokens it signs.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # no login on loopback
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            **self.settings,
        }
        cli = str(HOME.airflow_cli())
        api = Service(
            "api-server",
            [cli, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env,
            folder / "api-server.log",
            health=f"{base}/api/v2/monitor/health",
        )
        self.services.start(api, over(START_S))
        for name in ("scheduler", "dag-processor"):
            self.services.start(
                Service(name, [cli, name], env, folder / f"{name}.log"), over(START_S)
            )
        deadline = time.monotonic() + over(PARSE_S)
        for dag_id in ADAPTER.DAG_IDS.values():
            while True:
                try:
                    _call(base, "GET", f"/dags/{dag_id}")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        # The DAGs' WebhookNotifier tells the connection `notification_sink`: the session's sink.
        port = int(self.services.start_sink().split(":")[2].split("/")[0])
        _call(
            base,
            "POST",
            "/connections",
            {"connection_id": SINK, "conn_type": "http", "host": "127.0.0.1", "port": port},
        )
        return base

    def close(self) -> None:
        self.services.leave()

    def run_flow(self, run_dir: str, flow: str, resume: bool = False) -> EngineRun:
        dag_id = ADAPTER.DAG_IDS[flow]
        started = datetime.now(UTC)  # a resumed run keeps its run id: newer only
        previous = self._last_run(dag_id, run_dir) if resume else None
        tries: dict[tuple[str, int], int] = {}
        if previous is not None and previous["state"] == "failed":
            # The operator fixed the cause: Clear the failed task instances, as in the UI.
            run_id = previous["dag_run_id"]
            tries = self._clear_failed(dag_id, run_id)
        else:
            # A run id of its own: if a 500 came after the run was stored, the retry is a 409.
            run_id = f"manual__{datetime.now(UTC).isoformat()}"
            body = {"dag_run_id": run_id, "logical_date": None, "conf": {"run_dir": run_dir}}
            _call(self.base, "POST", f"/dags/{dag_id}/dagRuns", body)
        return self._read(dag_id, self._wait(dag_id, run_id), run_dir, tries, started)

    # report: begin schedule
    def backfill(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """Airflow's own backfill: one request makes a DAG run for each data interval in the
        window (by logical date, its start), and the scheduler runs them one at a time.
        """
        dag_id = ADAPTER.DAG_IDS[flow]
        body = {
            "dag_id": dag_id,
            "from_date": f"{months[0]}-01T00:00:00Z",
            "to_date": f"{months[-1]}-01T00:00:00Z",
            "max_active_runs": 1,
            "reprocess_behavior": "none",
            "run_backwards": False,
            "dag_run_conf": {"run_dir": run_dir},
        }
        # A DAG has one run per data interval: the runs an earlier scenario's backfill left for
        # these months (its record written) go first, or this backfill would make none.
        for old in _call(self.base, "GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]:
            if (old.get("conf") or {}).get("run_dir") != run_dir:
                _call(self.base, "DELETE", f"/dags/{dag_id}/dagRuns/{old['dag_run_id']}")
        # A DAG has one running backfill at a time (409 for another): this one waits its turn
        # behind the session's other scenario, as an operator would.
        deadline = time.monotonic() + over(DAG_RUN_S) * len(months)
        while True:
            try:
                created = _call(self.base, "POST", "/backfills", body)
                break
            except urllib.error.HTTPError as error:
                if error.code != 409 or time.monotonic() > deadline:
                    raise
                time.sleep(2)
        self._wait_backfill(created["id"], len(months))
        runs = _call(self.base, "GET", f"/dags/{dag_id}/dagRuns?run_type=backfill&limit=100")[
            "dag_runs"
        ]
        mine = sorted(
            (r for r in runs if (r.get("conf") or {}).get("run_dir") == run_dir),
            key=lambda r: r["logical_date"],
        )
        failed = sum(r["state"] == "failed" for r in mine)
        # The DAG's failure callbacks run in the dag-processor, after their runs (see
        # DAG_CALLBACK_S): wait for what they write.
        wait_for_flow_failed(run_dir, over(DAG_CALLBACK_S), count=failed)
        return [self._read(dag_id, r, run_dir, {}, None) for r in mine]

    def rerun(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """Clear each failed month's DAG run, only what failed (the UI's Clear): the scheduler
        runs those task instances again, in the same DAG run.
        """
        dag_id = ADAPTER.DAG_IDS[flow]
        runs = []
        for month in months:
            run_id = next(
                r["dag_run_id"]
                for r in _call(self.base, "GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
                if (r.get("conf") or {}).get("run_dir") == run_dir
                and r["logical_date"].startswith(f"{month}-01")
            )
            started = datetime.now(UTC)
            tries = self._clear_failed(dag_id, run_id)
            runs.append(self._read(dag_id, self._wait(dag_id, run_id), run_dir, tries, started))
        return runs

    # report: end schedule

    def _wait_backfill(self, backfill_id: int, months: int) -> None:
        deadline = time.monotonic() + over(DAG_RUN_S) * months
        while not _call(self.base, "GET", f"/backfills/{backfill_id}").get("completed_at"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} of {months} months never completed")
            time.sleep(1)

    def _clear_failed(self, dag_id: str, run_id: str) -> dict[tuple[str, int], int]:
        """Clear the failed task instances of a DAG run; returns each one's tries before."""
        tries = {(t["task_id"], t["map_index"]): t["try_number"] for t in self._tis(dag_id, run_id)}
        _call(
            self.base,
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            {"dry_run": False, "only_failed": True, "dag_run_id": run_id, "reset_dag_runs": True},
        )
        return tries

    def _read(
        self,
        dag_id: str,
        dag_run: dict[str, Any],
        run_dir: str,
        tries: dict[tuple[str, int], int],
        started: datetime | None,
    ) -> EngineRun:
        """The DAG run as the REST API has it; `started`: when a run was resumed (a cleared run
        keeps its id: only what came after counts).
        """
        run_id, state = dag_run["dag_run_id"], dag_run["state"]
        told: list[EngineNotification] = []
        if state == "failed":
            if started is not None:
                # The DAG's on_failure_callback runs in the dag-processor after the run failed
                # (see DAG_CALLBACK_S): wait for what it writes, or it lands in the next flow run.
                wait_for_flow_failed(run_dir, over(DAG_CALLBACK_S))
            told = [
                n
                for n in self.services.told(
                    lambda r: (
                        isinstance(r["payload"], dict) and r["payload"].get("run_id") == run_id
                    ),
                    over(DAG_CALLBACK_S),
                )
                if started is None or n.received_at > started
            ]
        tis = self._tis(dag_id, run_id)
        months: tuple[str, ...] = ()
        run = EngineRun(
            native_state=state,
            native_message=f"DAG run {dag_id} / {run_id}",
            outcome=ADAPTER.flow_outcome(state),
            tasks=[],
            engine_notifications=told,
            native_ended_at=dag_run.get("end_date"),
            native_started_at=dag_run.get("start_date"),
            graph_kind="declared",
            graph=[
                GraphEdge(upstream=t["task_id"], downstream=d)
                for t in sorted(self._tasks(dag_id), key=lambda t: t["task_id"])
                for d in sorted(t["downstream_task_ids"])
            ],
        )
        if dag_run.get("run_type") == "backfill":
            months = tuple(steps.run_months(run_dir, dag_run["data_interval_end"]))
            run.month = months[0]
            run.native_schedule = {
                key: str(dag_run[key])
                for key in ("dag_run_id", "run_type", "data_interval_start", "data_interval_end")
            }
            run.native_schedule["made_by"] = (
                "POST clearTaskInstances (only failed)" if started else "POST /backfills"
            )
            if started is not None:  # cleared: its window is the tries that ran since
                begun = [
                    datetime.fromisoformat(t["start_date"]) for t in tis if t.get("start_date")
                ]
                run.native_started_at = min((b for b in begun if b >= started), default=None)
        run.tasks = [self._task_record(dag_id, run_id, ti, tries, months) for ti in tis]
        return run

    def _tasks(self, dag_id: str) -> list[dict[str, Any]]:
        return _call(self.base, "GET", f"/dags/{dag_id}/tasks")["tasks"]

    def _last_run(self, dag_id: str, run_dir: str) -> dict[str, Any] | None:
        runs = _call(self.base, "GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
        mine = [r for r in runs if (r.get("conf") or {}).get("run_dir") == run_dir]
        return max(mine, key=lambda r: r["run_after"]) if mine else None

    def _wait(self, dag_id: str, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + over(DAG_RUN_S)
        time.sleep(0.5)  # a cleared run is set back to queued by the call itself
        while True:
            dag_run = _call(self.base, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            state = dag_run["state"]
            if state in ("success", "failed"):
                return dag_run
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG run {dag_id}/{run_id} still {state}")
            time.sleep(1)  # each answer costs the api-server CPU the tasks need

    def _tis(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found = _call(self.base, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        return found["task_instances"]

    def _task_record(
        self,
        dag_id: str,
        run_id: str,
        ti: dict[str, Any],
        before: dict[tuple[str, int], int],
        months: tuple[str, ...] = (),
    ) -> TaskRecord:
        where = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}"
        if ti["map_index"] >= 0:
            where += f"/{ti['map_index']}"
        tries = _call(self.base, "GET", f"{where}/tries")["task_instances"]
        history = [
            NativeState(
                name=str(t["state"]), at=t.get("end_date"), message=f"try {t['try_number']}"
            )
            for t in sorted(tries, key=lambda t: t["try_number"])
        ]
        row = {
            "task_id": ti["task_id"],
            "map_index": ti["map_index"],
            "rendered_map_index": ti.get("rendered_map_index"),
            "state": ti["state"],
            "try_number": ti["try_number"],
            "start_date": ti.get("start_date"),
            "end_date": ti.get("end_date"),
            "history": history,
        }
        return ADAPTER._task_record(row, before, months)


class SupervisorKilledAdapter(DeployedAdapter):
    """`airflow-supervisor`: as deployed, but a kill takes the supervisor of the task's process
    (its parent, which reports its state and heartbeats), and the scheduler fails a task instance
    whose heartbeats stopped after HEARTBEAT_TIMEOUT_S.
    """

    name = "airflow-supervisor"
    runtime = (
        "deployed: api-server, scheduler and dag-processor, LocalExecutor; the kill takes the "
        "task's supervisor"
    )
    # A supervisor heartbeats every `min_heartbeat_interval` (5 s by default): every second here,
    # and a task instance fails 10x that, twice over, after its last one (not after 300 s).
    HEARTBEAT_S = 1
    HEARTBEAT_TIMEOUT_S = 20
    settings = {
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }

    @staticmethod
    def kill_target(pid: int) -> tuple[int, str]:
        return parent_of(pid), "its supervisor (the parent of the task's process)"
