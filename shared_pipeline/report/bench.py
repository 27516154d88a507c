"""The overhead benchmark's section of the report, from results/bench/*.json (if any)."""

from __future__ import annotations

from pathlib import Path


def section(
    bench_dir: Path, figures: Path, engines: list[str]
) -> tuple[list[str], dict[str, str], dict[Path, bytes]]:
    """(Markdown lines, a one-line figure per engine for the trade-offs, PNGs by path)."""
    if not any(bench_dir.glob("*.json")):
        return [], {}, {}
    return [], {}, {}
