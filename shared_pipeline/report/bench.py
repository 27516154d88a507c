"""The overhead benchmark's section of the report, from results/bench/<engine>.json (if any)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from shared_pipeline.report.engines import engine
from shared_pipeline.report.figures import overhead_plot

BASELINE = "python"


def _load(bench_dir: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(bench_dir.glob("*.json"))}


def _median(data: dict, shape: str, n: str) -> float | None:
    cell = data["runs"].get(shape, {}).get(n, {})
    return None if cell.get("skipped") or "median_s" not in cell else cell["median_s"]


def overhead_ms(data: dict, base: dict | None, shape: str, n: str) -> float | None:
    """Per task, what the engine added to the same trivial work done by plain Python."""
    mine = _median(data, shape, n)
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


def _cell(data: dict, shape: str, n: str) -> str:
    cell = data["runs"].get(shape, {}).get(n)
    if cell is None:
        return "not run"
    if cell.get("skipped"):
        return f"skipped (one run predicted {cell['predicted_s']:.0f} s, over the budget)"
    return (
        f"{duration(cell['median_s'])} ({duration(cell['min_s'])}–{duration(cell['max_s'])}, "
        f"×{len(cell['samples_s'])})"
    )


def section(
    bench_dir: Path, figures: Path, order: list[str]
) -> tuple[list[str], dict[str, str], dict[Path, bytes]]:
    """(Markdown lines, a one-line figure per engine for the trade-offs, PNGs by path)."""
    runs = _load(bench_dir) if bench_dir.is_dir() else {}
    if not runs:
        return [], {}, {}
    keys = [k for k in order if k in runs] + sorted(k for k in runs if k not in order)
    base = runs.get(BASELINE)
    sizes = sorted({n for d in runs.values() for s in d["runs"].values() for n in s}, key=int)
    shapes = sorted({s for d in runs.values() for s in d["runs"]})
    image = figures / "bench-overhead.png"
    lines = [
        "",
        '<a id="overhead-benchmark"></a>',
        "",
        "## Overhead benchmark",
        "",
        "Trivial tasks (`x + 1`) in a chain (each task fed by the previous one) and in a fan-out "
        "(mapped over a list, then one join), one flow run per measurement, each engine in its "
        "own virtualenv (`nox -s bench`). Times: median (min–max, ×repeats). Overhead per "
        "task = (engine median − plain-Python median) / N.",
        "",
        "| engine | version | import | first flow run | peak memory (MiB) | recorded | machine |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in keys:
        d = runs[key]
        startup = d["startup"]
        lines.append(
            f"| {engine(key).label} | {d['engine_version']} | {duration(startup['import_s'])} | "
            f"{duration(startup['first_flow_s'])} | {d['peak_rss_mb']:.0f} | "
            f"{d['created_at'][:10]} | {d['machine']} |"
        )
    lines += [
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
                cells.append(_cell(runs[key], shape, n) + extra)
            growth = f"k = {k:.2f}" if k is not None else "—"
            lines.append(
                f"| {engine(key).label} | {shape} | " + " | ".join(cells) + f" | {growth} |"
            )
    lines += ["", f"![Overhead per task against N, log-log]({image.as_posix()})", ""]
    lines += ["Where the time goes, and why each engine's line has its slope:", ""]
    brief: dict[str, str] = {}
    for key in keys:
        d = runs[key]
        shares = d.get("profile", {}).get("busy_shares", {})
        top = ", ".join(f"{name} {share:.0%}" for name, share in list(shares.items())[:4])
        profile = d.get("profile", {})
        sampled = (
            f" Busy-thread samples during one {profile['shape']} of N = {profile['n']}: {top}."
            if top
            else ""
        )
        k = slope(d, "chain")
        growth = f"its chain time grows as N^{k:.2f}" if k is not None else "no growth measured"
        note = engine(key).bench_note
        lines.append(f"- **{engine(key).label}**: {growth}.{sampled} {note}".rstrip())
        largest = next(
            (n for n in reversed(sizes) if overhead_ms(d, base, "chain", n) is not None), None
        )
        if largest is not None and key != BASELINE:
            brief[key] = (
                f"{overhead_ms(d, base, 'chain', largest):.2f} ms overhead per task "
                f"(chain, N = {largest})"
            )
        elif key == BASELINE and largest is not None:
            median = _median(d, "chain", largest)
            brief[key] = f"{duration(median / int(largest))} per task (chain, N = {largest})"
    series = {
        (engine(key).label, shape): [
            (int(n), overhead_ms(runs[key], base, shape, n)) for n in sizes
        ]
        for key in keys
        if key != BASELINE
        for shape in shapes
    }
    return lines, brief, {image: overhead_plot(series)}
