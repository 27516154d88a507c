"""Prefect's own UI (2.x and 3.x) over the server database a deployed session left, and the pages
where it shows one flow run and its task runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from prefect2.adapter import prefect_env
from prefect2.compat import MAJOR, VERSION
from prefect2.deployed import SERVER_START_S
from shared_pipeline.headroom import over
from shared_pipeline.services import HOST, Service, free_port
from shared_pipeline.ui import Page, RunPages, call

if MAJOR >= 3:
    # Its v2 UI (shipped beside the default one): the default one hides a run's Task Runs tab
    # until the run has loaded, then falls back to Logs, so no URL opens that tab.
    LABEL = f"Prefect {VERSION} server UI (its v2 UI)"
    # Only the webserver: nothing acts on the finished session's runs while they are shot.
    QUIET = ["--no-services"]
    UI_API_URL = "PREFECT_SERVER_UI_API_URL"  # else the UI asks port 4200
else:
    LABEL = f"Prefect {VERSION} server UI"
    QUIET = ["--no-scheduler", "--no-late-runs"]
    UI_API_URL = "PREFECT_UI_API_URL"


class PrefectUI:
    """`prefect server start` on a fresh loopback port, with the deployed server's home."""

    def __init__(self, engine: str) -> None:
        self.engine, self.version, self.label = engine, VERSION, LABEL
        self.server: Service | None = None

    def state(self, services: Path) -> Path:
        return services / "server" / "prefect.db"

    def start(self, services: Path, scratch: Path) -> str:
        base = f"http://{HOST}:{free_port()}"
        env = {
            # As prefect2/deployed.py started the server, minus its port.
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            **prefect_env(services / "server"),
            "HOME": str(scratch / "home"),  # a CLI without it writes ~/.prefect
            UI_API_URL: f"{base}/api",
            # 2.x would send what its notification queue still holds to the session's sink.
            "PREFECT_API_SERVICES_FLOW_RUN_NOTIFICATIONS_ENABLED": "false",
        }
        cli = str(Path(sys.executable).with_name("prefect"))  # 2.x has no `python -m prefect`
        port = base.rsplit(":", 1)[1]
        self.server = Service(
            "prefect server",
            [cli, "server", "start", "--host", HOST, "--port", port, *QUIET],
            env,
            scratch / "server.log",
            health=f"{base}/api/health",
        )
        self.server.start(over(SERVER_START_S))  # stop() stops it also if it never got healthy
        return base

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def find(self, base: str, record: dict[str, Any], run: int) -> RunPages:
        """The record's `run`-th flow run: the one of its run directory (the flow's parameter)
        that the server created `run`-th.
        """
        name = Path(record["run_dir"]).name
        mine = sorted(
            (r for r in _flow_runs(base) if Path(r["parameters"].get("run_dir", "")).name == name),
            key=lambda r: r["created"],
        )
        if not mine:
            raise LookupError(f"no flow run of {name} in the left state: another session's record")
        if len(mine) != len(record["runs"]):
            raise LookupError(f"{len(mine)} flow runs of {name}, {len(record['runs'])} recorded")
        flow_run = mine[run]
        tasks = sorted(
            call(
                f"{base}/api/task_runs/filter",
                {"flow_runs": {"id": {"any_": [flow_run["id"]]}}, "limit": 200},
            ),
            key=lambda t: t["name"],
        )
        who, state = flow_run["name"], flow_run["state_name"]
        count = f"{len(tasks)} Task run{'' if len(tasks) == 1 else 's'}"
        if MAJOR >= 3:
            # Its Task Runs tab lists each task run under its flow run's name, with its state.
            texts = [who, state, count, *(f"{who} {t['name']} {t['state_name']}" for t in tasks)]
            page = Page(f"/v2/runs/flow-run/{flow_run['id']}?tab=TaskRuns", tuple(texts))
            return RunPages(flow_run["id"], who, page)
        # 2.x's run page draws its task runs on the graph's canvas and no URL opens its Task Runs
        # tab: each task run that did not simply complete is checked on its own page instead.
        page = Page(f"/flow-runs/flow-run/{flow_run['id']}", (f"{who} {state}", count))
        more = tuple(
            Page(f"/task-runs/task-run/{t['id']}", (f"{who} {t['name']} {t['state_name']}",))
            for t in tasks
            if t["state_name"] != "Completed"
        )
        return RunPages(flow_run["id"], who, page, more)


def _flow_runs(base: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = call(f"{base}/api/flow_runs/filter", {"limit": 200, "offset": len(found)})
        found += page
        if len(page) < 200:
            return found
