"""A terminal table of run records: what the engine did in each scenario, in its own state names."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared_pipeline.conformance import check_record
from shared_pipeline.records import RunRecord
from shared_pipeline.vocabulary import StepState

_SHORT = {
    StepState.COMPLETED: "",
    StepState.COMPLETED_AFTER_RETRY: "retried",
    StepState.FAILED: "FAILED",
    StepState.TIMED_OUT: "TIMED OUT",
    StepState.NOT_RUN_UPSTREAM_FAILED: "not run",
    StepState.SKIPPED: "skipped",
    StepState.CACHED: "cached",
}


def _steps_cell(record: RunRecord) -> str:
    lines = []
    for run in record.runs:
        notable = [
            f"{t.task}: {t.native_state or '(none)'}"
            + (f" x{t.attempts}" if t.attempts > 1 else "")
            for t in run.tasks
            if t.state is not StepState.COMPLETED
        ]
        prefix = f"run {run.run}: " if len(record.runs) > 1 else ""
        lines.append(prefix + (", ".join(notable) or f"all {len(run.tasks)} tasks completed"))
    return "\n".join(lines)


def summary_table(records: Iterable[RunRecord]) -> Table:
    table = Table(title="Scenario results (native state names; ✓ = matches the shared spec)")
    table.add_column("scenario", no_wrap=True)
    for column in ("engine", "flow", "steps not plainly completed", "notified", "registry"):
        table.add_column(column, overflow="fold")
    table.add_column("s", justify="right")
    table.add_column("spec", no_wrap=True)
    for record in records:
        problems = check_record(record)
        table.add_row(
            record.scenario,
            f"{record.engine} {record.engine_version}",
            escape("\n".join(f"{r.native_state}" for r in record.runs)),
            escape(_steps_cell(record)),
            "\n".join(str(len(r.notifications)) for r in record.runs),
            "\n".join(r.registry_effect.value for r in record.runs),
            f"{record.wall_seconds:.1f}",
            "[green]✓[/]" if not problems else f"[red]✗ {len(problems)}[/]",
        )
    return table


def print_summary(records: list[RunRecord], console: Console | None = None) -> int:
    """Print the table and any spec mismatches; returns how many records do not conform."""
    console = console or Console()
    console.print(summary_table(records))
    failing = 0
    for record in records:
        problems = check_record(record)
        failing += bool(problems)
        for problem in problems:
            console.print(f"[red]{record.engine}/{record.scenario}:[/] {escape(problem)}")
    return failing
