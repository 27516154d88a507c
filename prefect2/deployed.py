"""Prefect 2.x and 3.x as deployed: `prefect server start` on loopback, a process work pool served
by `prefect worker start`, the project's flows deployed from this checkout, and each flow run
started through the API (`run_deployment`) and read back from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect2.adapter import FINAL_TYPES, migrated_database, prefect_env, read_engine_run
from prefect2.compat import MAJOR, VERSION
from shared_pipeline import schedule, steps
from shared_pipeline.harness import EngineRun
from shared_pipeline.headroom import over
from shared_pipeline.notifications import wait_for_flow_failed
from shared_pipeline.records import Limitation
from shared_pipeline.services import Service, free_port
from shared_pipeline.session_services import SessionServices
from shared_pipeline.vocabulary import FlowOutcome
from shared_pipeline.workdirs import engine_home

ROOT = Path(__file__).resolve().parents[1]
POOL = "pipeline"
DEPLOYMENT = "deployed"
# Each of the project's flows, as deployed: its name in Prefect and its entrypoint here.
FLOWS = {
    "train": ("train-pipeline", "prefect2/flows.py:train_pipeline"),
    "retrain": ("retrain-until-good", "prefect2/flows.py:retrain_until_good"),
}
FLOWS["monthly"] = FLOWS["train"]  # the same flow, deployed again with its schedule
# Measured beside a busy core: the 3.x server healthy in 16-18 s (2.x sooner), `work-pool
# create` 2.2 s, a worker registered in 2.4 s (2.x 4.9 s), a deployment 0.4 s.
SERVER_START_S = 18.0
CLI_S = 5.0
# The slowest scenario's flow run under the worker took about 30 s (most of it timeouts and
# retry delays it waits on purpose, and the flow's own process starting).
FLOW_RUN_S = 30.0
# After a kill, 3.x's worker ran the flow's on_crashed hooks in a process of their own (imports
# first) within about 5 s (4.2 s in a deployed session beside a busy core).
CRASH_HOOKS_S = 5.0


def _monthly() -> dict[str, Any]:
    """The flow's monthly deployment, as flows.py declares it (imported once Prefect may be)."""
    from prefect2.flows import MONTHLY

    return MONTHLY


def _cli() -> str:
    # The CLI beside this interpreter: Prefect 2.x has no `python -m prefect`.
    return str(Path(sys.executable).with_name("prefect"))


class DeployedAdapter:
    """`prefect2-deployed` / `prefect3-deployed`: one server and one worker per session, shared by
    its processes (`pytest -n 2`); each flow run is a process the worker starts, as in production.
    """

    limitations: list[Limitation] = []
    runtime = "deployed: prefect server, a process work pool and its worker"
    kind = "deployed"  # the engine's name: prefect3-deployed

    def __init__(self, out: Path) -> None:
        self.name = f"prefect{MAJOR}-{self.kind}"
        self.version = VERSION
        runs = (out / "runs" / self.name).resolve()
        self.cache = (out / "runs" / ".cache").resolve()
        self.services = SessionServices(runs, MECHANISM)
        os.environ.pop("PREFECT_API_URL", None)  # never somebody's real server
        # This process is a client of the session's server, with a home of its own.
        engine_home(runs / ".client-home", ("prefect",), prefect_env)
        os.environ["PREFECT_API_URL"] = self.services.join(self._start_services)

    def _start_services(self) -> str:
        """Server, work pool, worker and deployments: once per session, by the first process."""
        home = self.services.folder
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        server_home = home / "server"
        server_home.mkdir(exist_ok=True)
        (server_home / "prefect.db").write_bytes(migrated_database(self.cache).read_bytes())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            **prefect_env(server_home),
            "HOME": str(home),  # a CLI without it writes ~/.prefect
            "PREFECT_SERVER_UI_API_URL": api_url,  # else the UI asks port 4200
        }
        server = Service(
            "prefect server",
            [_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env,
            home / "server.log",
            health=f"{api_url}/health",
        )
        self.services.start(server, over(SERVER_START_S))
        client = {**env, "PREFECT_API_URL": api_url}
        subprocess.run(
            [_cli(), "work-pool", "create", POOL, "--type", "process"],
            env=client,
            cwd=home,
            check=True,
            capture_output=True,
            timeout=over(CLI_S),
        )
        # The worker asks for due runs every 10 s by default: every second here, so a flow run
        # starts about as soon as it is created.
        worker = Service(
            "prefect worker",
            [_cli(), "worker", "start", "--pool", POOL],
            {**client, "PREFECT_WORKER_QUERY_SECONDS": "1"},
            home / "worker.log",
        )
        self.services.start(worker, over(CLI_S))
        os.environ["PREFECT_API_URL"] = api_url
        from prefect import flow

        deployments = [(FLOWS[f][1], dict(name=DEPLOYMENT)) for f in ("train", "retrain")]
        deployments.append((FLOWS["monthly"][1], _monthly()))  # the flow on its monthly schedule
        for entrypoint, options in deployments:
            deployable = flow.from_source(source=str(ROOT), entrypoint=entrypoint)
            with contextlib.redirect_stdout(io.StringIO()):  # its table of what it deployed
                deployable.deploy(
                    **options,
                    work_pool_name=POOL,
                    ignore_warnings=True,
                    print_next_steps=False,
                )
        notify_on_failure(self.services.start_sink())
        return api_url

    def close(self) -> None:
        self.services.leave()

    def run_flow(
        self, run_dir: str, flow: str, resume: bool = False, scheduled: datetime | None = None
    ) -> EngineRun:
        # A resumed run needs nothing else: the cache keys find the results the last one left.
        from prefect.deployments import run_deployment

        name, _ = FLOWS[flow]
        flow_run = run_deployment(
            name=f"{name}/{_monthly()['name'] if scheduled else DEPLOYMENT}",
            parameters={"run_dir": run_dir},
            # Results in the run directory: each flow run is a process of its own here, so a
            # setting per run costs nothing (the test mode keeps them in its engine home).
            job_variables={"env": {"PREFECT_LOCAL_STORAGE_PATH": f"{run_dir}/prefect-results"}},
            scheduled_time=scheduled,
            timeout=over(FLOW_RUN_S),
            poll_interval=1,  # each answer costs the server CPU the flow run needs
        )
        return self._read(run_dir, flow_run, monthly=scheduled is not None)

    # report: begin schedule
    def backfill(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """Prefect has no backfill command: a backfill is a flow run of the monthly deployment
        for each past time it was due (the run is late, and starts at once), one at a time.
        """
        return [self.run_flow(run_dir, flow, scheduled=schedule.due_at(m)) for m in months]

    def rerun(self, run_dir: str, flow: str, months: list[str]) -> list[EngineRun]:
        """Each failed month's flow run again, the same run with its scheduled time kept: 3.x's
        `prefect flow-run retry`; 2.x has no such command, its client sets the run Scheduled.
        """
        runs = []
        for month in months:
            flow_run = self._month_run(run_dir, schedule.due_at(month))
            since = datetime.now(UTC)
            if MAJOR >= 3:
                subprocess.run(
                    [_cli(), "flow-run", "retry", str(flow_run.id)],
                    check=True,
                    capture_output=True,
                    timeout=over(CLI_S),
                )
            else:
                from prefect import get_client
                from prefect.states import Scheduled

                with get_client(sync_client=True) as client:
                    client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
            runs.append(self._read(run_dir, _settled_run(flow_run.id, since), since, monthly=True))
        return runs

    # report: end schedule

    def _month_run(self, run_dir: str, due: datetime) -> Any:
        """The monthly deployment's flow run of `run_dir` scheduled for `due`."""
        from prefect import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=[_monthly()["name"]])
                ),
                limit=200,
            )
        return next(
            r
            for r in runs
            if r.parameters.get("run_dir") == run_dir and r.expected_start_time == due
        )

    def _read(
        self, run_dir: str, flow_run: Any, since: datetime | None = None, monthly: bool = False
    ) -> EngineRun:
        """The flow run as the API stored it (`since`: its task runs from then, a retry's)."""
        run = read_engine_run(flow_run.id, since=since)
        if monthly:
            due = flow_run.expected_start_time
            run.month = steps.run_months(run_dir, due)[0]
            run.native_schedule = {
                "flow_run": flow_run.name,
                "scheduled_start_time": due.isoformat(),
                "deployment": f"{FLOWS['train'][0]}/{_monthly()['name']}",
                "made_by": (
                    "`prefect flow-run retry`"
                    if since and MAJOR >= 3
                    else "set_flow_run_state(Scheduled)"
                    if since
                    else "run_deployment(scheduled_time=...) for each due time"
                ),
            }
        if MAJOR >= 3 and run.native_state == "Crashed":
            # 3.x's worker runs on_crashed hooks after it reported the crash, in a process it
            # starts for them (CRASH_HOOKS_S): wait for what they write.
            wait_for_flow_failed(run_dir, over(CRASH_HOOKS_S))
        if run.outcome is FlowOutcome.FAILED:
            # The notification follows the Failed state (0.1 s on 3.x, 1.5 s on 2.x, measured).
            run.engine_notifications = self.services.told(lambda r: _about(r, flow_run), over(2))
        return run


class HeartbeatAdapter(DeployedAdapter):
    """`prefect3-heartbeat`: each flow run is a process of its own against the server, as a
    script is run (`python flows.py`), with no worker watching it. Its flow run sends a heartbeat
    every HEARTBEAT_S, and Prefect's documented automation marks a flow run Crashed once three
    are missing.
    """

    runtime = (
        "deployed: prefect server; each flow run a process of its own, no worker (heartbeats "
        "and an automation mark a silent flow run Crashed)"
    )
    kind = "heartbeat"
    HEARTBEAT_S = 30  # the least Prefect takes (180 s by default)

    def _start_services(self) -> str:
        api_url = super()._start_services()
        crash_silent_flow_runs(3 * self.HEARTBEAT_S)
        return api_url

    def run_flow(self, run_dir: str, flow: str, resume: bool = False) -> EngineRun:
        name, entrypoint = FLOWS[flow]
        env = {
            **os.environ,
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(self.HEARTBEAT_S),
            "PREFECT_LOCAL_STORAGE_PATH": f"{run_dir}/prefect-results",
        }
        script = str(ROOT / entrypoint.partition(":")[0])
        subprocess.run([sys.executable, script, flow, run_dir], env=env, timeout=over(FLOW_RUN_S))
        flow_run = _settled(name, run_dir, over(4 * self.HEARTBEAT_S))
        run = read_engine_run(flow_run.id)
        if run.outcome is FlowOutcome.FAILED:
            run.engine_notifications = self.services.told(lambda r: _about(r, flow_run), over(2))
        return run


def _settled_run(flow_run_id: Any, since: datetime) -> Any:
    """The flow run once it has run again after `since` and is in a final state."""
    from prefect import get_client

    deadline = time.monotonic() + over(FLOW_RUN_S)
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            ran_again = flow_run.state.timestamp > since
            if ran_again and flow_run.state_type.value in FINAL_TYPES:
                return flow_run
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run.name} is still {flow_run.state_name}")
            time.sleep(1)


def _settled(flow_name: str, run_dir: str, limit_s: float) -> Any:
    """The flow run of `flow_name` on `run_dir`, once it is in a final state."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    deadline = time.monotonic() + limit_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), limit=200
            )
            mine = [r for r in runs if r.parameters.get("run_dir") == run_dir]
            if mine and mine[0].state_type.value in FINAL_TYPES:
                return mine[0]
            if time.monotonic() > deadline:
                state = mine[0].state_name if mine else "not created"
                raise TimeoutError(f"the {flow_name} flow run of {run_dir} is still {state}")
            time.sleep(1)


def crash_silent_flow_runs(within_s: float) -> None:
    """Prefect's recipe for zombie flow runs: an automation that marks a flow run Crashed when no
    heartbeat (nor a final state) follows its last heartbeat within `within_s`.
    """
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    final = ("Completed", "Failed", "Cancelled", "Crashed")
    Automation(
        name="crash-zombie-flow-runs",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in final)},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message="Flow run marked as crashed due to missing heartbeats.",
            )
        ],
    ).create()


def _about(request: dict[str, Any], flow_run: Any) -> bool:
    """Whether a webhook request is about `flow_run` (3.x sends its id, 2.x its name in text)."""
    payload = request["payload"]
    if isinstance(payload, dict) and payload.get("flow_run_id") == str(flow_run.id):
        return True
    return str(flow_run.id) in json.dumps(payload)


if MAJOR >= 3:
    MECHANISM = "automation: CallWebhook when a flow run enters Failed or Crashed"

    def notify_on_failure(url: str) -> None:
        """An automation: on a flow run's Failed event, POST the run to `url` (a Webhook block)."""
        from prefect.automations import Automation
        from prefect.blocks.webhook import Webhook
        from prefect.events.actions import CallWebhook
        from prefect.events.schemas.automations import EventTrigger, Posture

        block = Webhook(method="POST", url=url).save("notification-sink", overwrite=True)
        Automation(
            name="notify-failed-flow-runs",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                posture=Posture.Reactive,
                threshold=1,
                within=0,
            ),
            actions=[
                CallWebhook(
                    block_document_id=block,
                    payload='{"flow_run_id": "{{ flow_run.id }}", "flow_run": '
                    '"{{ flow_run.name }}", "state": "{{ flow_run.state.name }}"}',
                )
            ],
        ).create()

else:
    MECHANISM = "flow run notification policy: a custom webhook on Failed or Crashed"

    def notify_on_failure(url: str) -> None:
        """2.x's flow-run notification policy: on Failed, the server calls a webhook block."""
        from prefect import get_client
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        block = CustomWebhookNotificationBlock(
            name="notification-sink",
            url=url,
            method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        )
        block_id = block.save("notification-sink", overwrite=True)

        async def create_policy() -> None:  # 2.x's sync client has no such method
            async with get_client() as client:
                await client.create_flow_run_notification_policy(
                    block_document_id=block_id,
                    is_active=True,
                    state_names=["Failed", "Crashed"],
                    tags=[],
                )

        asyncio.run(create_policy())
