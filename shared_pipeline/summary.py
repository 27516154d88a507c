"""A terminal table of run records: what the engine did in each scenario, in its own state names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared_pipeline.conformance import check_record
from shared_pipeline.headroom import MIN_HEADROOM, headrooms
from shared_pipeline.records import DEFAULT_BACKEND, RunRecord
from shared_pipeline.timeouts import record_verdicts
from shared_pipeline.timeouts import summary as timeout_summary
from shared_pipeline.vocabulary import StepState


def _steps_cell(record: RunRecord) -> str:
    """Per flow run: tasks grouped by native state; the unusual ones named, with attempts."""
    lines = []
    for run in record.runs:
        plain = Counter(t.native_state for t in run.tasks if t.state is StepState.COMPLETED)
        parts = [f"{name} ×{count}" for name, count in plain.items()]
        absent = sum(t.native_state is None for t in run.tasks)
        named: dict[str, list[str]] = {}
        for t in run.tasks:
            if t.state is not StepState.COMPLETED and t.native_state is not None:
                attempts = f" ({t.attempts} attempts)" if t.attempts > 1 else ""
                named.setdefault(t.native_state, []).append(t.task + attempts)
        parts += [f"{state}: {', '.join(tasks)}" for state, tasks in named.items()]
        parts += [f"never created ×{absent}"] if absent else []
        prefix = f"run {run.run}: " if len(record.runs) > 1 else ""
        lines.append(prefix + "; ".join(parts))
    return "\n".join(lines)


def summary_table(records: Iterable[RunRecord]) -> Table:
    table = Table(title="Scenario results (native state names; ✓ = matches the shared spec)")
    table.add_column("scenario", no_wrap=True)
    for column in ("engine", "flow", "tasks (native state)", "notified", "registry", "timeouts"):
        table.add_column(column, overflow="fold")
    table.add_column("s", justify="right")
    table.add_column("spec", no_wrap=True)
    for record in records:
        problems = check_record(record)
        table.add_row(
            record.scenario,
            f"{record.engine} {record.engine_version}"
            + ("" if record.db_backend == DEFAULT_BACKEND else f"\non {record.db_backend}"),
            escape("\n".join(f"{r.native_state}" for r in record.runs)),
            escape(_steps_cell(record)),
            "\n".join(str(len(r.notifications)) for r in record.runs),
            "\n".join(r.registry_effect.value for r in record.runs),
            "\n".join(timeout_summary(v) for v in record_verdicts(record)),
            f"{record.wall_seconds:.1f}",
            "[green]✓[/]" if not problems else f"[red]✗ {len(problems)}[/]",
        )
    return table


def print_summary(records: list[RunRecord], console: Console | None = None) -> int:
    """Print the table and any spec mismatches; returns how many records do not conform."""
    console = console or Console()
    console.print(summary_table(records))
    for headroom in headrooms(records):
        colour = "green" if headroom.enough else "red"
        console.print(f"[{colour}]clock[/] {escape(headroom.line())} (rule: ≥ {MIN_HEADROOM:g}×)")
    failing = 0
    for record in records:
        problems = check_record(record)
        failing += bool(problems)
        for problem in problems:
            console.print(f"[red]{record.engine}/{record.scenario}:[/] {escape(problem)}")
    return failing
