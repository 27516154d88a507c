"""Mermaid flowcharts of the graph each engine recorded (declared before, or observed in, a run)."""

from __future__ import annotations

from graphlib import TopologicalSorter

from shared_pipeline.records import FlowRunRecord, GraphEdge, TaskRecord
from shared_pipeline.vocabulary import StepState

# One style per shared state, so every engine's graph reads the same way.
STYLES = {
    StepState.COMPLETED: ("done", "fill:#d8f0d8,stroke:#2e7d32", "green"),
    StepState.COMPLETED_AFTER_RETRY: ("retried", "fill:#fff3c4,stroke:#b28704", "yellow"),
    StepState.FAILED: ("failed", "fill:#f8d0d0,stroke:#c62828", "red"),
    StepState.TIMED_OUT: ("timedout", "fill:#ffd8b0,stroke:#e65100", "orange"),
    StepState.NOT_RUN_UPSTREAM_FAILED: ("notrun", "fill:#eeeeee,stroke:#9e9e9e", "grey"),
    StepState.SKIPPED: ("skipped", "fill:#f5f5f5,stroke:#bdbdbd,stroke-dasharray: 4 2", "dashed"),
    StepState.CACHED: ("cached", "fill:#d6e6fa,stroke:#1565c0", "blue"),
    StepState.LOST: ("lost", "fill:#e8d8f0,stroke:#6a1b9a,stroke-dasharray: 2 2", "purple"),
}


def native_name(task: TaskRecord) -> str:
    """The name the engine's graph uses for this task (its own id, before any "reuses" note)."""
    return (task.native_id or task.task).split(" (reuses ")[0]


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def _levels(graph: list[GraphEdge]) -> list[str]:
    """Tasks level by level from the sources, by name within a level: the same chart whatever
    order the engine listed its tasks in (Prefect 1's sort and start times differ run to run).
    """
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for edge in graph:
        sorter.add(edge.downstream, edge.upstream)
    sorter.prepare()
    names: list[str] = []
    while sorter.is_active():
        level = sorted(sorter.get_ready())
        names += level
        sorter.done(*level)
    return names


def flowchart(run: FlowRunRecord) -> str | None:
    """The run's graph as a mermaid flowchart, nodes coloured by shared state; None if no graph."""
    if not run.graph:
        return None
    by_name: dict[str, TaskRecord] = {}
    for task in run.tasks:
        by_name.setdefault(native_name(task), task)
        by_name.setdefault(task.task, task)
    names = _levels(run.graph)
    ids = {name: f"n{index}" for index, name in enumerate(names)}
    order = {name: index for index, name in enumerate(names)}
    edges = sorted(run.graph, key=lambda e: (order[e.upstream], order[e.downstream]))
    lines = ["flowchart LR"]
    used: dict[str, list[str]] = {}
    for name in names:
        task = by_name.get(name)
        state = f"<br/>{task.native_state}" if task is not None and task.native_state else ""
        lines.append(f'  {ids[name]}["{_label(name)}{state}"]')
        if task is not None:
            used.setdefault(STYLES[task.state][0], []).append(ids[name])
    for edge in edges:
        lines.append(f"  {ids[edge.upstream]} --> {ids[edge.downstream]}")
    for css, style, _ in STYLES.values():
        if css in used:
            lines.append(f"  classDef {css} {style}")
            lines.append(f"  class {','.join(used[css])} {css}")
    return "\n".join(lines)


LEGEND = ", ".join(f"{colour} `{state.value}`" for state, (_, _, colour) in STYLES.items())
