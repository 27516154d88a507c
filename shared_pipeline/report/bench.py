"""The overhead benchmark in the report, from results/bench/<engine>.json (if any): the engines
ranked by overhead per task in the cost lesson, the full tables on their own page.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from shared_pipeline.report.cells import wrap
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


def _load(bench_dir: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(bench_dir.glob("*.json"))}


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


def _ranking(runs: dict, base: dict | None, keys: list[str]) -> list[str]:
    shape, n = RANKED_AT
    measured = [k for k in keys if k != BASELINE and overhead_ms(runs[k], base, shape, n)]
    measured.sort(key=lambda k: overhead_ms(runs[k], base, shape, n))
    largest = max((n for d in runs.values() for n in d["runs"].get(shape, {})), key=int)
    lines = [
        f"| rank | engine | overhead per task, chain of {n} (min–max) | fan-out of {n} | chain "
        f"of {largest} | why |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rank, key in enumerate(measured, start=1):
        d = runs[key]
        low, high = (overhead_ms(d, base, shape, n, of) for of in ("min_s", "max_s"))
        fan = overhead_ms(d, base, "fanout", n)
        fanned = f"{fan:.1f} ms" if fan is not None else "not measured"
        big = overhead_ms(d, base, shape, largest)
        bigger = f"{big:.1f} ms" if big is not None else "not run (over its budget)"
        e = engine(key)
        lines.append(
            f"| {rank} | {e.label} | {overhead_ms(d, base, shape, n):.1f} ms ({low:.1f}–"
            f"{high:.1f}) | {fanned} | {bigger} | {e.bench_why} |"
        )
    regimes = [f"{engine(k).label}: {engine(k).bench_regime}" for k in measured]
    regimes = [r for k, r in zip(measured, regimes, strict=True) if engine(k).bench_regime]
    if regimes:
        lines += ["", "**Where a range is wide**, the figure holds in one regime only:", ""]
        lines += [line for regime in regimes for line in wrap(regime, bullet=True)]
    return lines


def section(bench_dir: Path, figures: Path, order: list[str]) -> Bench:
    runs = _load(bench_dir) if bench_dir.is_dir() else {}
    if not runs:
        return Bench()
    keys = [k for k in order if k in runs] + sorted(k for k in runs if k not in order)
    base = runs.get(BASELINE)
    sizes = sorted({n for d in runs.values() for s in d["runs"].values() for n in s}, key=int)
    shapes = sorted({s for d in runs.values() for s in d["runs"]})
    image = figures / "bench-overhead.png"
    baseline = (
        f" Plain Python did the same work in {duration(_median(base, *RANKED_AT))}."
        if base and _median(base, *RANKED_AT)
        else ""
    )
    lines = [
        "",
        "**In time**: trivial tasks (`x + 1`) in a chain (each fed by the previous one) and in a "
        "fan-out (mapped over a list, then one join), one flow run per measurement, back to "
        "back in one process after a first warm-up run, each engine in its own virtualenv "
        "(`nox -s bench`).",
        "Overhead per task = (engine − plain Python) / N, from the median run; the range is "
        f"the fastest and the slowest run.{baseline} Ranked at N = {RANKED_AT[1]}, the size "
        "every engine ran within its budget, fastest first (the order changes with N):",
        "",
        *_ranking(runs, base, keys),
        "",
        f"![Overhead per task against N, log-log, with each size's fastest and slowest run]"
        f"({image.as_posix()})",
        "",
        "Every size, start-up costs, memory and where the time goes (sampled): "
        "[the benchmark's figures](docs/report/bench.md).",
    ]
    page = [
        "",
        "| engine | version | import | first flow run | peak memory (MiB) | recorded | machine |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in keys:
        d = runs[key]
        startup = d["startup"]
        page.append(
            f"| {engine(key).label} | {d['engine_version']} | {duration(startup['import_s'])} | "
            f"{duration(startup['first_flow_s'])} | {d['peak_rss_mb']:.0f} | "
            f"{d['created_at'][:10]} | {d['machine']} |"
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
    for key in keys:
        for shape in shapes:
            k = slope(runs[key], shape)
            cells = []
            for n in sizes:
                over = overhead_ms(runs[key], base, shape, n) if key != BASELINE else None
                extra = f"<br>{over:.2f} ms/task overhead" if over is not None else ""
                cells.append(_figure(runs[key], shape, n) + extra)
            growth = f"k = {k:.2f}" if k is not None else "—"
            page.append(
                f"| {engine(key).label} | {shape} | " + " | ".join(cells) + f" | {growth} |"
            )
    page += ["", "Where the time goes, and why each engine's line has its slope:", ""]
    brief: dict[str, str] = {}
    for key in keys:
        d = runs[key]
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
        page.append(f"- **{engine(key).label}**: {growth}.{sampled} {engine(key).bench_note}")
        over = overhead_ms(d, base, *RANKED_AT)
        if key != BASELINE and over is not None:
            brief[key] = f"{over:.0f} ms overhead"
        elif key == BASELINE and _median(d, *RANKED_AT):
            brief[key] = f"{duration(_median(d, *RANKED_AT) / int(RANKED_AT[1]))} of work"
    series = {
        (engine(key).label, shape): [
            (
                int(n),
                overhead_ms(runs[key], base, shape, n),
                overhead_ms(runs[key], base, shape, n, "min_s"),
                overhead_ms(runs[key], base, shape, n, "max_s"),
            )
            for n in sizes
        ]
        for key in keys
        if key != BASELINE
        for shape in shapes
    }
    return Bench(lines, page, brief, {image: overhead_plot(series)})
