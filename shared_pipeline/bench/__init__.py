"""Orchestration overhead: trivial tasks in a chain and a fan-out, per engine, against plain Python.

An engine joins the benchmark with one module (one line in BENCH below) that provides:
`VERSION: str`, `start(workdir: Path)` (imports and configures the engine; it may return the
seconds of its parts, {"import": s, "<part of the first flow run's cost>": s, ...}, e.g. a
database migration or a server start), `chain(n) -> None` (one flow run: n trivial tasks, each
fed by the previous), `fanout(n) -> None` (one flow run: n trivial tasks mapped over a list,
then one join task), `stop() -> None`, and `pids() -> list[int]` (processes it started, e.g. an
API server, whose peak memory counts too). Optionally `REGIMES: {name: (what it is, sizes,
shapes)}`, each measured on its own, with `before(regime)` (sets up the next measured run's
start, not timed) and `after() -> dict` (what the engine's server shows of the run just
measured: kept beside its time). Each engine runs in its own virtualenv (`nox -s bench`).
"""

from __future__ import annotations

# Engine name -> module implementing the interface above (shared_pipeline.loading.load_module).
BENCH = {
    "python": "shared_pipeline.bench.plain",
    "prefect2": "prefect2.bench",
    "prefect3": "prefect2.bench",
    "prefect1": "prefect1.bench",
    "prefect1-dask": "prefect1.bench_dask",
    "airflow": "airflow/bench.py",  # a file: airflow/ is a DAGs folder, not a package
}
SIZES = (10, 100, 1000)
SHAPES = ("chain", "fanout")
REPEATS = 5
REPEATS_LARGEST = 3  # at the largest size: a run of 1,000 tasks takes minutes on some engines
