"""The overhead benchmark in the report, from results/bench/<engine>.json (if any): the engines
ranked by overhead per task in the cost lesson, the full tables on their own page.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from shared_pipeline.report.bench_regimes import regime_lines
from shared_pipeline.report.engines import engine
from shared_pipeline.report.figures import overhead_plot

BASELINE = "python"
RANKED_AT = ("chain", "100")  # the size every engine ran within its budget


@dataclass(frozen=True)
class Bench:
    lines: list[str] = field(default_factory=list)  # the cost lesson's part
    page: list[str] = field(default_factory=list)  # docs/report/bench.md's tables
    brief: dict[str, str] = field(default_factory=dict)  # engine -> a few words
    pngs: dict[Path, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Series:
    """One engine's runs in one regime: `data` is its record with that regime's `runs`."""

    key: str
    regime: str
    about: str
    data: dict
    label: str
    first: bool  # the engine's first regime: its start-up, profile and summary figure


def _load(bench_dir: Path, order: list[str]) -> list[Series]:
    records = {path.stem: json.loads(path.read_text()) for path in bench_dir.glob("*.json")}
    series = []
    for key in [k for k in order if k in records] + sorted(k for k in records if k not in order):
        record = records[key]
        # A record from before regimes were measured apart holds one regime's runs.
        regimes = record.get("regimes") or {"back to back": {"about": "", "runs": record["runs"]}}
        for index, (name, regime) in enumerate(regimes.items()):
            label = engine(key).label + (f", {name}" if len(regimes) > 1 else "")
            data = {**record, "runs": regime["runs"]}
            series.append(Series(key, name, regime["about"], data, label, index == 0))
    return series


def _cell(data: dict, shape: str, n: str) -> dict:
    cell = data["runs"].get(shape, {}).get(n, {})
    return {} if cell.get("skipped") or "median_s" not in cell else cell


def _median(data: dict, shape: str, n: str) -> float | None:
    return _cell(data, shape, n).get("median_s")


def overhead_ms(data: dict, base: dict | None, shape: str, n: str, of: str = "median_s"):
    """Per task, what the engine added to the same trivial work done by plain Python."""
    mine = _cell(data, shape, n).get(of)
    theirs = _median(base, shape, n) if base else None
    if mine is None or theirs is None:
        return None
    return (mine - theirs) / int(n) * 1000


def slope(data: dict, shape: str) -> float | None:
    """Exponent k in time ~ N^k between the two largest measured N (fixed costs fade there)."""
    points = [(int(n), _median(data, shape, n)) for n in data["runs"].get(shape, {})]
    points = sorted((n, t) for n, t in points if t)
    if len(points) < 2:
        return None
    (n0, t0), (n1, t1) = points[-2], points[-1]
    return math.log(t1 / t0) / math.log(n1 / n0)


def duration(seconds: float) -> str:
    """Seconds in a unit that shows their digits: 1.29 s, 12.3 ms, 4.5 µs, 43 ns."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e9:.0f} ns"


def _figure(data: dict, shape: str, n: str) -> str:
    cell = data["runs"].get(shape, {}).get(n)
    if cell is None:
        return "not run"
    if cell.get("skipped"):
        return f"skipped (one run predicted {cell['predicted_s']:.0f} s, over the budget)"
    return (
        f"{duration(cell['median_s'])} ({duration(cell['min_s'])}–{duration(cell['max_s'])}, "
        f"×{len(cell['samples_s'])})"
    )


def _ranking(series: list[Series], base: dict | None) -> list[str]:
    shape, n = RANKED_AT
    measured = [s for s in series if s.key != BASELINE and overhead_ms(s.data, base, shape, n)]
    measured.sort(key=lambda s: overhead_ms(s.data, base, shape, n))
    largest = max((n for s in series for n in s.data["runs"].get(shape, {})), key=int)
    several = {s.key for s in series if not s.first}
    lines = [
        f"| rank | engine | overhead per task, chain of {n} (min–max) | fan-out of {n} | chain "
        f"of {largest} (×runs) | why |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rank, s in enumerate(measured, start=1):
        d = s.data
        low, high = (overhead_ms(d, base, shape, n, of) for of in ("min_s", "max_s"))
        fan = overhead_ms(d, base, "fanout", n)
        fanned = f"{fan:.1f} ms" if fan is not None else "not measured"
        big = overhead_ms(d, base, shape, largest)
        if big is not None:
            bigger = f"{big:.1f} ms (×{len(_cell(d, shape, largest)['samples_s'])})"
        elif largest in d["runs"].get(shape, {}):
            bigger = "not run (over its budget)"
        else:
            bigger = "not in this regime"
        why = engine(s.key).bench_why + (f" Here {s.about}." if s.key in several else "")
        lines.append(
            f"| {rank} | {s.label} | {overhead_ms(d, base, shape, n):.1f} ms ({low:.1f}–"
            f"{high:.1f}) | {fanned} | {bigger} | {why} |"
        )
    return lines


def _first_run(startup: dict) -> str:
    """The first flow run's cost, and what it is made of where the record splits it."""
    total = duration(startup["first_flow_s"])
    parts = startup.get("first_flow_parts_s", {})
    if len(parts) < 2:
        return total
    return f"{total}: " + " + ".join(f"{part} {duration(s)}" for part, s in parts.items())


def section(bench_dir: Path, figures: Path, order: list[str]) -> Bench:
    series = _load(bench_dir, order) if bench_dir.is_dir() else []
    if not series:
        return Bench()
    base = next((s.data for s in series if s.key == BASELINE), None)
    sizes = sorted({n for s in series for cells in s.data["runs"].values() for n in cells}, key=int)
    shapes = sorted({shape for s in series for shape in s.data["runs"]})
    image = figures / "bench-overhead.png"
    baseline = (
        f" Plain Python did the same work in {duration(_median(base, *RANKED_AT))}."
        if base and _median(base, *RANKED_AT)
        else ""
    )
    regimes = regime_lines(series)
    lines = [
        "",
        "**In time**: trivial tasks (`x + 1`) in a chain (each fed by the previous one) and in a "
        "fan-out (mapped over a list, then one join), one flow run per measurement, in one "
        "process after a first warm-up run, each engine in its own virtualenv "
        "(`nox -s bench`); an engine whose server goes on working after a run returns is "
        "measured in each regime apart.",
        "Overhead per task = (engine − plain Python) / N, from the median run; the range is "
        f"the fastest and the slowest run.{baseline} Ranked at N = {RANKED_AT[1]}, the size "
        "every engine ran within its budget, fastest first (the order changes with N):",
        "",
        *_ranking(series, base),
        *regimes,
        "",
        f"![Overhead per task against N, log-log, one line per engine, regime and shape, with "
        f"each size's fastest and slowest run]({image.as_posix()})",
        "",
        "Every size, start-up costs split into their parts, memory and where the time goes "
        "(sampled): [the benchmark's figures](docs/report/bench.md).",
    ]
    page = [
        "",
        "| engine | version | import | first flow run: its parts | peak memory (MiB) | recorded "
        "| machine |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in series:
        if not s.first:
            continue
        d = s.data
        page.append(
            f"| {engine(s.key).label} | {d['engine_version']} | "
            f"{duration(d['startup']['import_s'])} | {_first_run(d['startup'])} | "
            f"{d['peak_rss_mb']:.0f} | {d['created_at'][:10]} | {d['machine']} |"
        )
    page += [
        "",
        "Times: median (min–max, ×repeats); below each, the overhead per task of the median run.",
        "",
        "| engine | shape | "
        + " | ".join(f"N = {n}" for n in sizes)
        + " | growth N^k (two largest N) |",
        "| --- | --- |" + " --- |" * (len(sizes) + 1),
    ]
    for s in series:
        for shape in [shape for shape in shapes if shape in s.data["runs"]]:
            k = slope(s.data, shape)
            cells = []
            for n in sizes:
                over = overhead_ms(s.data, base, shape, n) if s.key != BASELINE else None
                extra = f"<br>{over:.2f} ms/task overhead" if over is not None else ""
                cells.append(_figure(s.data, shape, n) + extra)
            growth = f"k = {k:.2f}" if k is not None else "—"
            page.append(f"| {s.label} | {shape} | " + " | ".join(cells) + f" | {growth} |")
    if regimes:  # told once, in the lesson
        page += [
            "",
            "What each engine's server showed in each regime: "
            "[the cost](../../REPORT.md#lesson-cost).",
        ]
    page += ["", "Where the time goes, and why each engine's line has its slope:", ""]
    brief: dict[str, str] = {}
    for s in series:
        if not s.first:
            continue
        d = s.data
        profile = d.get("profile", {})
        shares = profile.get("busy_shares", {})
        top = ", ".join(f"{name} {share:.0%}" for name, share in list(shares.items())[:4])
        sampled = (
            f" Busy-thread samples during one {profile['shape']} of N = {profile['n']}: {top}."
            if top
            else ""
        )
        k = slope(d, "chain")
        growth = f"its chain time grows as N^{k:.2f}" if k is not None else "no growth measured"
        page.append(f"- **{s.label}**: {growth}.{sampled} {engine(s.key).bench_note}")
        over = overhead_ms(d, base, *RANKED_AT)
        several = any(other.key == s.key and not other.first for other in series)
        if s.key != BASELINE and over is not None:
            brief[s.key] = f"{over:.0f} ms overhead" + (f" ({s.regime})" if several else "")
        elif s.key == BASELINE and _median(d, *RANKED_AT):
            brief[s.key] = f"{duration(_median(d, *RANKED_AT) / int(RANKED_AT[1]))} of work"
    plotted = {
        (s.label, shape): [
            (
                int(n),
                overhead_ms(s.data, base, shape, n),
                overhead_ms(s.data, base, shape, n, "min_s"),
                overhead_ms(s.data, base, shape, n, "max_s"),
            )
            for n in sizes
        ]
        for s in series
        if s.key != BASELINE
        for shape in shapes
        if shape in s.data["runs"]
    }
    return Bench(lines, page, brief, {image: overhead_plot(plotted)})
