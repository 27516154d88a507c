"""An Airflow notifier (`BaseNotifier`) that POSTs a failed DAG run to the HTTP endpoint of the
`notification_sink` connection: where the deployment defines that connection, its failures are
told there; where it does not (dag.test()), there is nobody to tell.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from airflow.sdk import BaseHook, BaseNotifier
from airflow.sdk.exceptions import AirflowNotFoundException

SINK = "notification_sink"


class WebhookNotifier(BaseNotifier):
    """POST {dag_id, run_id, state, reason} to the connection's http://host:port/notify."""

    template_fields = ()

    def __init__(self, conn_id: str = SINK) -> None:
        super().__init__()
        self.conn_id = conn_id

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        # Nothing to render. (Under dag.test() a DAG callback gets a SerializedDAG, which has no
        # get_template_env: BaseNotifier's own rendering raises AttributeError there.)
        return None

    def notify(self, context: Any) -> None:
        try:
            conn = BaseHook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            return  # no sink in this deployment
        run = context["dag_run"]
        body = {
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "state": str(run.state),
            "reason": str(context.get("reason") or ""),
        }
        request = urllib.request.Request(
            f"{conn.schema or 'http'}://{conn.host}:{conn.port}/notify",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass
