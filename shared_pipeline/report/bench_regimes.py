"""What an engine's server showed during each benchmark regime (the runs' `evidence`), in words:
the backlog each run started with, the requests its log says it refused, how long it lagged.
"""

from __future__ import annotations

import statistics

from shared_pipeline.report.cells import wrap
from shared_pipeline.report.engines import engine


def _evidence(runs: dict) -> list[dict]:
    return [
        e for cells in runs.values() for cell in cells.values() for e in cell.get("evidence", [])
    ]


def _median_at(runs: dict, shape: str, n: str, field: str) -> float | None:
    values = [e[field] for e in runs.get(shape, {}).get(n, {}).get("evidence", []) if field in e]
    return statistics.median(values) if values else None


def regime_summary(runs: dict) -> str:
    """One regime's evidence in a sentence (empty without evidence)."""
    seen = _evidence(runs)
    if not seen:
        return ""
    smallest = min((n for cells in runs.values() for n in cells), key=int)
    cell = runs.get("chain", {}).get(smallest, {})
    took = (
        f"a chain of {smallest} took {cell['median_s']:.2f} s (median; {cell['min_s']:.2f}–"
        f"{cell['max_s']:.2f} s); "
        if "median_s" in cell
        else ""
    )
    start = [
        e["pending_states_at_start"] for e in seen if e.get("pending_states_at_start") is not None
    ]
    end = [e["pending_states_at_end"] for e in seen]
    text = took + (
        f"its {len(seen)} measured runs started with a median of {statistics.median(start):,.0f} "
        f"task-run states not yet in the API's database (at most {max(start):,}) and returned "
        f"with {statistics.median(end):,.0f} (at most {max(end):,})"
    )
    if any("http_503" in e for e in seen):
        refused = sum(e.get("http_503", 0) for e in seen)
        errors = sum(e.get("retryable_errors", 0) for e in seen)
        slowed = sum(e.get("http_503", 0) > 0 for e in seen)
        logged = "each logged as a retryable error" if errors == refused else f"{errors} errors"
        text += (
            f"; during them the server's log shows {refused} requests answered 503 (in "
            f"{slowed} of the runs), {logged}"
            if refused
            else "; during them the server's log shows no request answered 503"
        )
    largest = max((n for cells in runs.values() for n in cells), key=int)
    lag = _median_at(runs, "chain", largest, "stored_all_after_s")
    if lag is not None:
        text += (
            f"; after a chain of {int(largest):,} returned, its database held every state "
            f"{lag:.1f} s later (median)"
        )
    # A refused request and the error behind it, as the server logged them (time, level cut).
    quoted = [
        next((e["excerpt"][kind] for e in seen if kind in e.get("excerpt", {})), "")
        for kind in ("refused", "locked")
    ]
    quoted = [f"`{line.split(' | ')[-1].strip()}`" for line in quoted if line]
    if quoted:
        text += "; its log: " + ", and ".join(quoted)
    return text


def regime_lines(series: list) -> list[str]:
    """Each engine whose runs carry its server's evidence: why its regimes differ (or why it has
    one), then a bullet per regime with what its server showed.
    """
    lines: list[str] = []
    told: set[str] = set()
    for s in series:
        summary = regime_summary(s.data["runs"])
        if not summary:
            continue
        e = engine(s.key)
        if s.key not in told:
            told.add(s.key)
            lines += ["", *wrap(f"**{e.label}**: {e.bench_regime}"), ""]
        lines += wrap(f"*{s.regime}* ({s.about}): {summary}.", bullet=True)
    return lines
