"""The engine table: each engine's adapter, and the wiring file that declares what it adds to or
does differently from the shared spec. The only place in shared_pipeline/ that names a wiring.
"""

from __future__ import annotations

# Engine name -> "module:factory", or "path/to/file.py:factory" (relative to the checkout) for a
# wiring folder that must not be importable by its name. Each engine needs its own venv.
ENGINES = {
    "python": "shared_pipeline.control:ControlAdapter",
    "prefect2": "prefect2.adapter:PrefectAdapter",
    "prefect3": "prefect2.adapter:PrefectAdapter",
    "prefect2-deployed": "prefect2.deployed:DeployedAdapter",
    "prefect3-deployed": "prefect2.deployed:DeployedAdapter",
    "prefect3-heartbeat": "prefect2.deployed:HeartbeatAdapter",
    "prefect1": "prefect1.adapter:LocalAdapter",
    "prefect1-dask": "prefect1.adapter:DaskAdapter",
    # airflow/ is a DAGs folder: as a package it would shadow the installed `airflow`.
    "airflow": "airflow/adapter.py:AirflowAdapter",
    "airflow-deployed": "airflow/deployed.py:DeployedAdapter",
    "airflow-supervisor": "airflow/deployed.py:SupervisorKilledAdapter",
}

# Engine name -> "module:name" or "file.py:name" of its Wiring (shared_pipeline/wiring.py), loaded
# with no engine installed: the report and the conformance checks read them anywhere.
WIRINGS = {
    "python": "shared_pipeline.wiring:DYNAMIC",
    "prefect2": "prefect2/expectations.py:PREFECT2",
    "prefect3": "prefect2/expectations.py:PREFECT3",
    "prefect2-deployed": "prefect2/expectations.py:PREFECT2_DEPLOYED",
    "prefect3-deployed": "prefect2/expectations.py:PREFECT3_DEPLOYED",
    "prefect3-heartbeat": "prefect2/expectations.py:PREFECT3_HEARTBEAT",
    "prefect1": "prefect1/expectations.py:LOCAL",
    "prefect1-dask": "prefect1/expectations.py:DASK",
    "airflow": "airflow/expectations.py:AIRFLOW",
    "airflow-deployed": "airflow/expectations.py:AIRFLOW_DEPLOYED",
    "airflow-supervisor": "airflow/expectations.py:AIRFLOW_SUPERVISOR",
}

# An engine's other runtimes beside its test mode -> that test-mode engine. The report gives
# them no column: they answer the lessons about the runtime.
RUNTIME_OF = {
    "prefect2-deployed": "prefect2",
    "prefect3-deployed": "prefect3",
    "prefect3-heartbeat": "prefect3",
    "airflow-deployed": "airflow",
    "airflow-supervisor": "airflow",
}

# Engine name -> module answering the semantics probes (shared_pipeline/probing.py). The plain-
# Python control and Prefect 1 on Dask answer none: the probes ask about engine semantics.
PROBE_MODULES = {
    "prefect2": "prefect2.probes",
    "prefect3": "prefect2.probes",
    "prefect1": "prefect1.probes",
    "airflow": "airflow/probes.py",
}

# Engine name -> "module:class" of its own UI served over the state its deployed session left,
# for shared_pipeline/ui.py to screenshot.
UIS = {
    "prefect2-deployed": "prefect2.ui:PrefectUI",
    "prefect3-deployed": "prefect2.ui:PrefectUI",
    "airflow-deployed": "airflow/ui.py:AirflowUI",
}
