"""Command line: list the scenarios, run them through an engine, show the results."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from shared_pipeline.engine_table import ENGINES
from shared_pipeline.loading import load_module
from shared_pipeline.records import DATABASES
from shared_pipeline.scenarios import CATALOGUE, SCENARIOS, ScenarioError
from shared_pipeline.settings import Settings

MIN_TRIPS = Settings.model_fields["trips_per_month"].metadata[0].ge

if TYPE_CHECKING:
    from shared_pipeline.harness import EngineAdapter


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def engine_module(engine: str) -> ModuleType:
    """The module that holds `engine`'s adapter, imported by name or loaded from its file."""
    return load_module(ENGINES[engine].split(":")[0])


def load_adapter(engine: str, out: Path) -> EngineAdapter:
    """The adapter of `engine`; engines keep their own state store under OUT/runs/<engine>/."""
    if engine not in ENGINES:
        raise CLIError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    factory = ENGINES[engine].split(":")[1]
    try:
        module = engine_module(engine)
    except ImportError as exc:
        raise CLIError(
            f"engine {engine!r} is not installed here ({exc}); run it in its nox session"
        ) from exc
    adapter = getattr(module, factory)(out)
    if adapter.name != engine:
        raise CLIError(f"engine {engine!r} asked for, but this environment has {adapter.name!r}")
    return adapter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared_pipeline",
        description="Run the NYC green-taxi pipeline through failure scenarios and record what "
        "the engine did.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list-scenarios", help="list the scenario catalogue")

    run = commands.add_parser("run", help="run scenarios through an engine and record them")
    run.add_argument("--engine", required=True, help=f"one of: {', '.join(ENGINES)}")
    run.add_argument("--scenario", required=True, help="a scenario id, or 'all'")
    run.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="writes OUT/results/<engine>/<scenario>.json and OUT/runs/ (default: .)",
    )
    run.add_argument(
        "--db",
        choices=list(DATABASES),
        default=os.environ.get("PIPELINE_DB", "sqlite"),
        help="source database made for each run: a SQLite file in the run directory, or a "
        "database on a throw-away PostgreSQL server this process starts under OUT/runs/ "
        "(default: $PIPELINE_DB, else sqlite)",
    )
    run.add_argument(
        "--db-url",
        default=None,
        help="use a database server you run instead (a SQLAlchemy URL, e.g. "
        "postgresql://user:pass@host/db); the scenario months' tables are (re)loaded into it",
    )
    run.add_argument(
        "--trips",
        type=int,
        default=None,
        help=f"trips per month (default {Settings().trips_per_month}, at least {MIN_TRIPS})",
    )

    show = commands.add_parser("show", help="print the table of recorded results")
    show.add_argument("--engine", action="append", required=True, help="engine (repeatable)")
    show.add_argument("--out", type=Path, default=Path("."))
    return parser


def _list_scenarios(console: Console) -> int:
    table = Table(title="Failure scenarios")
    table.add_column("id")
    table.add_column("title")
    table.add_column("flow runs")
    table.add_column("what it teaches", overflow="fold")
    for scenario in CATALOGUE:
        table.add_row(scenario.id, scenario.title, str(len(scenario.runs)), scenario.description)
    console.print(table)
    return 0


def _make_out(out: Path) -> Path | None:
    """Create OUT for real and prove it writable (root passes `os.access` for folders `mkdir`
    then refuses); returns the outermost folder this made, for `_discard`, or None.
    """
    target = out.absolute()
    made = None
    try:
        made = next((p for p in (*reversed(target.parents), target) if not p.exists()), None)
        target.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=target).close()
    except OSError as exc:
        existing = next((p for p in (target, *target.parents) if p.exists()), target)
        _discard(made if made is not None and made.exists() else None)
        if isinstance(exc, NotADirectoryError | FileExistsError) or not existing.is_dir():
            reason = f"{existing} is not a directory"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = f"{existing} is read-only here"
        else:
            reason = f"{existing} refuses it: {exc.strerror or type(exc).__name__}"
        raise CLIError(f"--out {out}: cannot write there ({reason})") from exc
    return made


def _discard(made: Path | None) -> None:
    """Remove what `_make_out` made, when the run cannot start after all."""
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def _run(args: argparse.Namespace, console: Console) -> int:
    from shared_pipeline.summary import print_summary

    if args.scenario != "all" and args.scenario not in SCENARIOS:
        raise CLIError(f"unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)}, all)")
    if args.engine not in ENGINES:
        raise CLIError(f"unknown engine {args.engine!r} (known: {', '.join(ENGINES)})")
    if args.trips is not None and args.trips < MIN_TRIPS:
        raise CLIError(f"--trips {args.trips}: need at least {MIN_TRIPS} trips per month")
    settings = Settings() if args.trips is None else Settings(trips_per_month=args.trips)
    db_url = None
    if args.db_url:
        from shared_pipeline.user_database import check_database  # SQLAlchemy: 0.14 s

        db_url = check_database(args.db_url)
    made = _make_out(args.out)
    records: list = []
    try:
        if args.db == "postgres" and db_url is None:
            from shared_pipeline.postgres import socket_path_problem

            if problem := socket_path_problem(args.out.absolute() / "runs"):
                raise CLIError(f"--out {args.out}: {problem}")
        # Imported once the arguments hold: pandas, scikit-learn and the engines take seconds
        # (1.2 s for the harness alone), a one-line error or --help should not.
        from shared_pipeline.harness import run_scenario

        adapter = load_adapter(args.engine, args.out)
        scenarios = CATALOGUE if args.scenario == "all" else (SCENARIOS[args.scenario],)
        with contextlib.closing(adapter), console.status("") as status:
            for index, scenario in enumerate(scenarios, start=1):
                label = f"[{index}/{len(scenarios)}] {adapter.name} {scenario.id}"

                def progress(message: str, label: str = label) -> None:
                    status.update(f"{label}: {message}")

                progress("starting")
                records.append(
                    run_scenario(
                        adapter,
                        scenario,
                        args.out,
                        base_settings=settings,
                        db=args.db,
                        db_url=db_url,
                        on_progress=progress,
                    )
                )
                last = records[-1]
                console.log(f"{label}: {last.runs[-1].native_state} ({last.wall_seconds:.1f} s)")
    except (CLIError, ScenarioError):
        if not records:  # the run could not start: leave no folder it made behind
            _discard(made)
        raise
    return 1 if print_summary(records, console) else 0


def _show(args: argparse.Namespace, console: Console) -> int:
    from shared_pipeline.records import read_record, record_path
    from shared_pipeline.summary import print_summary

    records = []
    for engine in args.engine:
        for backend in ("sqlite", "postgresql"):  # the SQLite runs, then the PostgreSQL ones
            for scenario in CATALOGUE:
                path = record_path(args.out / "results", engine, scenario.id, backend)
                if path.exists():
                    records.append(read_record(path))
    if not records:
        raise CLIError(f"no records for {', '.join(args.engine)} under {args.out / 'results'}")
    return 1 if print_summary(records, console) else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Logs and CI: rich would assume 80 columns and fold the results table into a ribbon.
        console = Console(width=160)
    try:
        if args.command == "list-scenarios":
            return _list_scenarios(console)
        if args.command == "show":
            return _show(args, console)
        return _run(args, console)
    except (CLIError, ScenarioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
