"""The overhead benchmark's DAGs: N trivial TaskFlow tasks in a chain, or mapped then joined.

One DAG per shape and size (`bench_chain_100`, ...). A parse for one DAG id (Airflow's parsing
context) builds only that DAG, as Airflow's guide to dynamic DAG generation recommends.
"""

from __future__ import annotations

from airflow.sdk import DAG, dag, get_parsing_context, task

from shared_pipeline.bench import SHAPES, SIZES


@task
def step(x: int) -> int:
    return x + 1


@task
def join(values: list[int]) -> int:
    return sum(values)


def overhead_dag(shape: str, n: int) -> DAG:
    @dag(dag_id=f"bench_{shape}_{n}", schedule=None, catchup=False)
    def overhead() -> None:
        if shape == "chain":
            x = 0
            for _ in range(n):
                x = step(x)
        else:
            join(step.expand(x=list(range(n))))

    return overhead()


selected = get_parsing_context().dag_id
for shape in SHAPES:
    for n in (1, *SIZES):  # 1: the driver's first flow run
        if selected in (None, f"bench_{shape}_{n}"):
            overhead_dag(shape, n)
